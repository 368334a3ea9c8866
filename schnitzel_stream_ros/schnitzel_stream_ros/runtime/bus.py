"""In-container topics: the zero-copy hand-off, and DDS only for listeners outside the container.

Every output port is a real rclpy publisher on its topic (so `ros2 topic list/echo` and other
processes see it), but the packets of an in-container edge never go through it: the output port
hands the Python `StreamPacket` object straight to the mailboxes of the in-container subscribers.
The DDS publish — and with it the only serialisation — happens only while a subscription outside
the container is matched.

How "outside" is known exactly: an in-container input never holds a DDS subscription to a topic
that has a publisher in the same container (the bus tells it to drop its DDS "bridge" subscription
the moment a local publisher appears, and to take it back when that publisher goes). So every
subscription matched to our publisher is someone else's, and `publisher.get_subscription_count()`
is the number of outside listeners. It is polled at most every `EXTERNAL_CHECK_NS` per port (the
call is ~1 µs; packets may come at 100 kHz), so a new listener gets packets within 50 ms of matching —
like any late-joining volatile subscriber.

Outputs of one call arrive together (docs/runtime.md): `OutputPort.many` hands all packets one
plugin call returned to each local inbox with one Mailbox.put_many, and publishes them for outside
listeners with a batch mark in meta (runtime/batch_mark.py) so the receiving container can put
them into its inbox together as well. One packet per call costs nothing extra.

Limitation (documented in docs/runtime.md): a topic has one publishing node per graph. If a process
outside the container also published on a topic that has a publisher inside, in-container
subscribers would only see the local one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.runtime.batch_mark import BatchMarker
from schnitzel_stream_ros.runtime.inbox import Inbox, Item
from schnitzel_stream_ros.runtime.mailbox import Mailbox, Token

#: How often an output port asks DDS how many outside subscriptions it has.
EXTERNAL_CHECK_NS = 50_000_000


class TransportCounters:
    """What crossed the container boundary (the evidence for "no serialisation in-container")."""

    __slots__ = (
        'batch_marks_invalid_total',
        'batches_incomplete_total',
        'dds_published_total',
        'dds_received_total',
        'decode_failed_total',
        'encode_failed_total',
        'lane_copied_total',
        'lane_missed_total',
        'lane_received_total',
        'local_deliveries_total',
    )

    def __init__(self) -> None:
        self.local_deliveries_total = 0  # packets handed over as objects to in-container inputs
        self.dds_published_total = 0  # packets serialised and published for outside listeners
        self.dds_received_total = 0  # packets that came in over DDS (from other processes)
        self.encode_failed_total = 0
        self.decode_failed_total = 0
        self.lane_copied_total = 0  # frames a reader copied out: it held its lease limit already
        self.lane_missed_total = 0  # frames a slow reader lost to the lane's keep-freshest overflow
        self.lane_received_total = 0  # frames that came in over a shared-memory frame lane (shm_lane/)
        # batches of one call that came in over DDS (runtime/batch_mark.py)
        self.batches_incomplete_total = 0  # held to the timeout, then put in with what arrived
        self.batch_marks_invalid_total = 0  # a malformed or contradictory mark: put in on its own

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class LocalSubscriber:
    """One input port of one node listening to one topic inside the container."""

    __slots__ = ('bridge', 'edge', 'inbox', 'mailbox', 'offer', 'offer_many', 'port', 'rewrap_kind', 'token',
                 'topic')

    def __init__(
        self,
        topic: str,
        mailbox: Mailbox,
        port: str,
        inbox: Inbox,
        edge: EdgeMetrics,
        rewrap_kind: str | None = None,
    ) -> None:
        self.topic = topic
        self.mailbox = mailbox
        self.port = port
        self.inbox = inbox
        self.edge = edge
        self.token: Token = (port, inbox)
        # ports of other ROS types get StreamPacket(kind, source_id=topic, payload=msg) (docs/wiring.md)
        self.rewrap_kind = rewrap_kind
        #: what the output port calls per packet: the mailbox itself, or a re-wrapping step first
        self.offer: Callable[[Token, Item], None] = mailbox.offer if rewrap_kind is None else self._rewrap
        #: what the output port calls with all outputs of one plugin call (one inbox operation)
        self.offer_many: Callable[[Token, list[Item]], None] = (
            mailbox.put_many if rewrap_kind is None else self._rewrap_many
        )
        # set by the node: switches its DDS subscription for this topic on (True) or off (False)
        self.bridge: Callable[[bool], None] | None = None

    def _rewrap(self, token: Token, item: Item) -> None:
        packet = StreamPacket.new(self.rewrap_kind or 'raw', self.topic, item[0].payload)
        self.mailbox.offer(token, (packet, item[1], item[2]))

    def _rewrap_many(self, token: Token, items: list[Item]) -> None:
        kind = self.rewrap_kind or 'raw'
        self.mailbox.put_many(token, [(StreamPacket.new(kind, self.topic, item[0].payload), item[1], item[2])
                                      for item in items])


#: (offer, token, edge) of one local subscriber, as the output port's loop wants it
Target = tuple[Callable[[Token, Item], None], Token, EdgeMetrics]
#: (offer_many, token, edge): the same for all outputs of one call
BatchTarget = tuple[Callable[[Token, list[Item]], None], Token, EdgeMetrics]


class Topic:
    """A topic as the container sees it: its local publishers and local subscribers."""

    __slots__ = ('batch_targets', 'name', 'publishers', 'subscribers', 'targets')

    def __init__(self, name: str) -> None:
        self.name = name
        self.publishers: tuple[OutputPort, ...] = ()
        # replaced, never mutated: output ports read them without a lock
        self.subscribers: tuple[LocalSubscriber, ...] = ()
        self.targets: tuple[Target, ...] = ()
        self.batch_targets: tuple[BatchTarget, ...] = ()

    def set_subscribers(self, subscribers: tuple[LocalSubscriber, ...]) -> None:
        self.subscribers = subscribers
        self.targets = tuple((s.offer, s.token, s.edge) for s in subscribers)
        self.batch_targets = tuple((s.offer_many, s.token, s.edge) for s in subscribers)


class OutputPort:
    """The route of one output port: local hand-off, plus DDS while outside listeners exist."""

    def __init__(
        self,
        node_id: str,
        port: str,
        topic: Topic,
        publisher: Any,
        encode: Callable[[StreamPacket], Any],
        transport: TransportCounters,
        on_encode_error: Callable[[str], None],
        marks_batches: bool = True,
    ) -> None:
        self.node_id = node_id
        # packets published with a batch mark in meta (StreamPacket messages only: other ROS types
        # carry no meta, their batches arrive packet by packet)
        self.marker = BatchMarker() if marks_batches else None
        self.port = port
        self.topic = topic
        self.publisher = publisher
        self.encode = encode
        self.transport = transport
        self.on_encode_error = on_encode_error
        self.dds_published = 0
        self.external_subscribers = 0
        self._next_check_ns = 0
        self._encode_errors = 0

    def refresh(self) -> int:
        """Ask DDS now how many subscriptions outside the container are matched."""
        self.external_subscribers = self.publisher.get_subscription_count()
        self._next_check_ns = time.perf_counter_ns() + EXTERNAL_CHECK_NS
        return self.external_subscribers

    def __call__(self, packet: StreamPacket) -> None:
        t = time.perf_counter_ns()
        targets = self.topic.targets
        if targets:
            for offer, token, edge in targets:
                offer(token, (packet, t, edge))
            self.transport.local_deliveries_total += len(targets)
        if t >= self._next_check_ns:
            self.external_subscribers = self.publisher.get_subscription_count()
            self._next_check_ns = t + EXTERNAL_CHECK_NS
        if self.external_subscribers:  # _publish, inlined: this runs for every packet that leaves
            try:
                msg = self.encode(packet)
            except (TypeError, ValueError) as exc:
                self._encode_failed(packet, exc)
                return
            self.publisher.publish(msg)
            self.dds_published += 1
            self.transport.dds_published_total += 1

    def many(self, packets: list[StreamPacket]) -> None:
        """All outputs of one plugin call (two or more): one inbox operation per local edge, and a
        batch mark on each for outside listeners (module docstring)."""
        t = time.perf_counter_ns()
        targets = self.topic.batch_targets
        for offer_many, token, edge in targets:
            offer_many(token, [(packet, t, edge) for packet in packets])
        if targets:
            self.transport.local_deliveries_total += len(targets) * len(packets)
        if t >= self._next_check_ns:
            self.external_subscribers = self.publisher.get_subscription_count()
            self._next_check_ns = t + EXTERNAL_CHECK_NS
        if self.external_subscribers:
            marker = self.marker
            marked = marker.mark(packets) if marker is not None else packets
            # encoded first, then published back to back: the receiver holds the batch meanwhile
            msgs = [msg for msg in map(self._encode, marked) if msg is not None]
            for msg in msgs:
                self.publisher.publish(msg)
            self.dds_published += len(msgs)
            self.transport.dds_published_total += len(msgs)

    def _encode(self, packet: StreamPacket) -> Any:
        """The message for `packet`, or None when it cannot be encoded (counted, reported once)."""
        try:
            return self.encode(packet)
        except (TypeError, ValueError) as exc:
            self._encode_failed(packet, exc)
            return None

    def _encode_failed(self, packet: StreamPacket, exc: Exception) -> None:
        self.transport.encode_failed_total += 1
        self._encode_errors += 1
        if self._encode_errors == 1:
            self.on_encode_error(
                f"node '{self.node_id}': port '{self.port}': packet {packet.packet_id} "
                f'(kind {packet.kind}) cannot be published on {self.topic.name} '
                f'for outside listeners: {exc}'
            )


class Bus:
    """Topic name -> Topic for one container; keeps DDS bridges off for topics published locally."""

    def __init__(self) -> None:
        self._topics: dict[str, Topic] = {}
        self._lock = threading.Lock()
        self.transport = TransportCounters()

    def topic(self, name: str) -> Topic:
        with self._lock:
            topic = self._topics.get(name)
            if topic is None:
                topic = self._topics[name] = Topic(name)
            return topic

    def topics(self) -> list[Topic]:
        with self._lock:
            return list(self._topics.values())

    def attach_publisher(self, port: OutputPort) -> None:
        topic = port.topic
        with self._lock:
            first = not topic.publishers
            topic.publishers = (*topic.publishers, port)
            subscribers = topic.subscribers
        if first:
            for sub in subscribers:
                if sub.bridge is not None:
                    sub.bridge(False)  # now served locally: no DDS subscription, no double delivery

    def detach_publisher(self, port: OutputPort) -> None:
        topic = port.topic
        with self._lock:
            topic.publishers = tuple(p for p in topic.publishers if p is not port)
            last = not topic.publishers
            subscribers = topic.subscribers
        if last:
            for sub in subscribers:
                if sub.bridge is not None:
                    sub.bridge(True)  # served from outside again

    def subscribe(self, sub: LocalSubscriber) -> bool:
        """Add a local subscriber; True when the topic is published in this container (no bridge)."""
        topic = self.topic(sub.topic)
        with self._lock:
            topic.set_subscribers((*topic.subscribers, sub))
            return bool(topic.publishers)

    def unsubscribe(self, sub: LocalSubscriber) -> None:
        topic = self.topic(sub.topic)
        with self._lock:
            topic.set_subscribers(tuple(s for s in topic.subscribers if s is not sub))
