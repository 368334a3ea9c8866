"""DurableEdgeSender: the producing host's end of a durable edge between hosts (docs/hosts.md).

Events must survive a network partition between hosts. This node accepts each event into its own
host's durable queue (process() returns after the commit: the event is accepted here, on the
producing host), then sends the queued rows over its `out` edge — a reliable DDS topic to the
DurableEdgeReceiver on the consuming host — and deletes a row only when the receiver acknowledges
its idempotency key on `ack_topic` (std_msgs/String, JSON `{"keys": [...]}`), i.e. after the
receiver committed it into *its* queue. A row without an acknowledgement within `resend_sec` is sent
again (the queue lease expires): at-least-once, and the key travels with the event so the receiver
(and the backend behind it) deduplicate. A link that is down for minutes costs nothing but a backlog
on disk here; when it returns, the backlog flows on the next tick.

Bounded: at most `window` rows wait for an acknowledgement at once (an overdue one is given back to
the queue and sent again); an acknowledgement for a key no longer waiting is ignored (the row is
sent again and acknowledged again). An acknowledgement is hostile input: its size
and key count are bounded and only keys this node sent settle rows.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict

from schnitzel_stream_ros.delivery.errors import NotJsonError, QueueFullError
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.shared import release_shared
from schnitzel_stream_ros.nodes.delivery.params import QUEUE_PARAMS, open_queue
from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import REQUIRED, Param, Plugin, Port, Role

STRING_MSG_TYPE = 'std_msgs/msg/String'
#: Largest acknowledgement text read (a well-formed one for `window` keys is far smaller).
MAX_ACK_CHARS = 1 << 20
#: meta key of a sent event: {sender, seq} (what the receiver echoes is only the idempotency key)
EDGE_META_KEY = 'durable_edge'
#: Lease of a sent row: only matters when this node stops holding it (rows given back on time otherwise).
LEASE_SAFETY_SEC = 30.0


def ack_keys(text: str, limit: int) -> list[str]:
    """The keys of one acknowledgement `{"keys": [str, ...]}`; ValueError naming what is wrong."""
    if len(text) > MAX_ACK_CHARS:
        raise ValueError(f'acknowledgement of {len(text)} characters is over the limit {MAX_ACK_CHARS}')
    data = json.loads(text)
    keys = data.get('keys') if isinstance(data, dict) else None
    if not isinstance(keys, list) or len(keys) > limit:
        raise ValueError(f'acknowledgement needs "keys": a list of at most {limit} strings')
    return [k for k in keys if isinstance(k, str) and 0 < len(k) <= 512]


class DurableEdgeSender(Plugin):
    """Accept events into this host's queue; send them to another host's DurableEdgeReceiver until acked."""

    ROLE = Role.NODE
    PASSTHROUGH = True
    DURABLE_EDGE = 'sender'
    PEER_TOPIC_PARAM = 'ack_topic'
    INPUTS = (
        Port('in', profile=PayloadProfile.JSON_PORTABLE, description='events to carry to the other host'),
        Port(
            'ack',
            frozenset({Kind.RAW}),
            PayloadProfile.INPROC_ANY,
            msg_type=STRING_MSG_TYPE,
            required=False,
            topic_param='ack_topic',
            description='acknowledgements of the receiver (no edge needed)',
        ),
    )
    OUTPUTS = (
        Port(
            'out',
            profile=PayloadProfile.JSON_PORTABLE,
            description='queued events, sent until acknowledged (an edge to a DurableEdgeReceiver)',
        ),
    )
    PARAMS = (
        *QUEUE_PARAMS,
        Param('ack_topic', str, REQUIRED, "absolute topic of the receiver's acknowledgements"),
        Param('resend_sec', float, 2.0, 'a sent event not acknowledged within this is sent again', min=0.1),
        Param('window', int, 256, 'events sent and not yet acknowledged, at most', min=1, max=10_000),
        Param('tick_sec', float, 0.2, 'how often the backlog is looked at when no event arrives', min=0.02),
    )

    queue: DurableQueue | None = None

    @classmethod
    def tick_period(cls, params):  # type: ignore[no-untyped-def]
        return params.get('tick_sec', 0.2)

    def setup(self) -> None:
        if not self.params['ack_topic'].startswith('/'):
            raise ValueError(f"node '{self.node_id}': parameter 'ack_topic' must be an absolute topic name")
        self.queue = open_queue(self.node_id, self.params)
        #: idempotency key -> (seq, monotonic time sent), oldest first
        self._sent: OrderedDict[str, tuple[int, float]] = OrderedDict()
        #: keys given back unacknowledged (to count their next sending as a resend), oldest first
        self._overdue: OrderedDict[str, int] = OrderedDict()
        backlog = self.queue.depth()
        if backlog:
            self.log.info(f"node '{self.node_id}': {backlog} events from before the start are being sent")

    def process(self, packet: StreamPacket, port: str = 'in') -> None:
        assert self.queue is not None, 'setup() was not called'
        if port == 'ack':
            self._settle(packet)
            return
        try:
            self.queue.enqueue(packet)  # returns after the commit: accepted on this host
        except (QueueFullError, NotJsonError):
            self.count('refused_total')
            raise
        self.count('accepted_total')
        self._pump()

    def on_tick(self) -> None:
        if self.queue is not None:
            self._pump()

    def _pump(self) -> None:
        """Give back the rows whose acknowledgement is overdue, then send due rows while fewer than
        `window` wait for one."""
        assert self.queue is not None
        now = time.monotonic()
        resend = self.params['resend_sec']
        overdue = [key for key, (_seq, sent) in self._sent.items() if now - sent >= resend]
        if overdue:  # due again at once (release, not a lease expiry: a partition is not an error)
            self.queue.release([self._sent[key][0] for key in overdue])
            for key in overdue:
                self._overdue[key] = self._sent.pop(key)[0]
            while len(self._overdue) > 8 * self.params['window']:
                self._overdue.popitem(last=False)
        room = self.params['window'] - len(self._sent)
        if room <= 0:
            return
        for row in self.queue.claim(room, lease_sec=max(LEASE_SAFETY_SEC, 10 * resend)):
            key = row.idempotency_key
            packet = row.packet().with_meta(
                **{MetaKey.IDEMPOTENCY_KEY: key, EDGE_META_KEY: {'sender': self.node_id, 'seq': row.seq}}
            )
            self._sent[key] = (row.seq, now)
            self.count('resent_total' if self._overdue.pop(key, None) is not None else 'sent_total')
            self.emit(packet, 'out')

    def _settle(self, packet: StreamPacket) -> None:
        text = getattr(packet.payload, 'data', None)
        try:
            if not isinstance(text, str):
                raise ValueError('acknowledgement is not a std_msgs/String')
            keys = ack_keys(text, 8 * self.params['window'])
        except ValueError as exc:
            self.count('ack_invalid_total')
            self.log.warning(f"node '{self.node_id}': acknowledgement ignored: {str(exc)[:200]}")
            return
        seqs = []
        for key in keys:  # a late acknowledgement of a row given back still settles it
            entry = self._sent.pop(key, None)
            seq = entry[0] if entry is not None else self._overdue.pop(key, None)
            if seq is not None:
                seqs.append(seq)
        if seqs:
            assert self.queue is not None
            self.count('acked_total', self.queue.ack(seqs))

    def backlog(self) -> int:
        """Accepted events the other host has not acknowledged: a finite run waits for them."""
        try:
            return self.queue.depth() if self.queue is not None else 0
        except Exception:
            return 0

    def close(self) -> None:
        if self.queue is not None:
            release_shared(self.queue)
            self.queue = None
