"""DurableForwarderSink: accept an event durably, deliver it to the backend in the background.

The node the issue asks for: process() returns only after the event's row is committed (the
event is *accepted*), and forwarder threads in the same process drain the queue to the HTTP
backend with retries, backoff, circuit breaker and dead letters. Placed in the same container as
the node that produces the events, the hand-off into it is a synchronous function call, so no
accepted event can be in flight on a topic when a process dies. A backlog left by a crash or an
outage is delivered automatically when the node starts again.

A queue that cannot take more (a full disk, the free-space reserve, a row/byte limit) is
back-pressure, never a drop, when `full_policy` is `block`: the sink keeps the packets it holds,
retries the commit with backoff and takes nothing else from its inbox meanwhile, so the edge's own
policy applies upstream (a blocking edge holds the producer back; a keep-freshest inbox sheds,
counted). It resumes by itself when room returns (delivery drained rows, the operator freed space);
only a stop of the node ends the wait, and what it still held is then counted as refused.
`full_policy: refuse` refuses at once instead (counted, raised).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.errors import (
    BatchTooLargeError,
    DiskFullError,
    LowDiskSpaceError,
    NotJsonError,
    QueueFullError,
)
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.queue import DurableQueue, FullPolicy
from schnitzel_stream_ros.delivery.shared import release_shared
from schnitzel_stream_ros.nodes.delivery.gauge_reporter import GaugeReporter
from schnitzel_stream_ros.nodes.delivery.params import (
    BACKOFF_PARAMS,
    HTTP_PARAMS,
    QUEUE_PARAMS,
    backoff_from_params,
    check_http_params,
    durable_meta,
    open_queue,
    target_from_params,
)
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

#: Retries of a commit the queue could not take: 0.1 s doubling to 2 s, ±20 % (many sinks on one
#: disk must not retry in lock-step, and a freed disk is noticed within 2 s).
STORAGE_RETRY_BACKOFF = dict(base_sec=0.1, factor=2.0, cap_sec=2.0, jitter='proportional', spread=0.2)
#: Longest wait inside one commit attempt for room under a row/byte limit (a stop is seen between).
ATTEMPT_WAIT_SEC = 0.5
#: Gauge `storage_blocked_code`: why the sink holds packets (0 = it does not).
BLOCKED_BY_LIMIT, BLOCKED_BY_RESERVE, BLOCKED_BY_DISK_FULL = 1, 2, 3


class DurableForwarderSink(Plugin):
    """Commit each event to a SQLite queue, then deliver it to an HTTP backend at least once."""

    ROLE = Role.SINK
    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.JSON_PORTABLE),)
    OUTPUTS = (
        Port('out', profile=PayloadProfile.JSON_PORTABLE, description='accepted packets (with forward)'),
    )
    PARAMS = (
        *QUEUE_PARAMS,
        *HTTP_PARAMS,
        *BACKOFF_PARAMS,
        Param('concurrency', int, 4, 'parallel connections to the backend; a knob: settable live (surplus '
              'workers end after their round)', min=1, max=64, dynamic=True),
        Param('batch_size', int, 128, 'rows claimed (and settled in one transaction) at a time; a knob: '
              'settable live', min=1, max=100_000, dynamic=True),
        Param('lease_sec', float, 60.0, 'a claimed row not settled within this is sent again', min=1.0),
        Param(
            'max_attempts', int, 0, 'failed attempts before an event becomes a dead letter (0 = never)', min=0
        ),
        Param(
            'max_age_sec',
            float,
            0.0,
            'a failing event older than this becomes a dead letter (0 = never)',
            min=0.0,
        ),
        Param('breaker_failure_threshold', int, 5, 'consecutive failures that open the circuit', min=1),
        Param('breaker_open_sec', float, 1.0, 'how long the circuit stays open before a probe', min=0.01),
        Param('forward', bool, False, 'emit accepted packets with meta[meta_key] = {queue, path, seq}'),
        Param(
            'drain_on_close_sec',
            float,
            0.0,
            'at the end of a run, wait up to this long for the queue to empty (undelivered rows stay)',
            min=0.0,
        ),
    )

    queue: DurableQueue | None = None
    forwarder: Forwarder | None = None
    _gauges: GaugeReporter | None = None
    _blocked_since: float | None = None

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        return check_http_params(params)

    def setup(self) -> None:
        p = self.params
        target = target_from_params(p)
        config = ForwarderConfig(
            concurrency=p['concurrency'],
            batch_size=p['batch_size'],
            lease_sec=p['lease_sec'],
            body=p['body'],
            max_attempts=p['max_attempts'] or None,
            max_age_sec=p['max_age_sec'] or None,
            backoff=backoff_from_params(p),
            breaker_failure_threshold=p['breaker_failure_threshold'],
            breaker_open_sec=p['breaker_open_sec'],
        )
        self.queue = open_queue(self.node_id, p, max_retry_delay_sec=max(60.0, p['retry_backoff_max_sec']))
        try:
            self.forwarder = Forwarder(self.queue, target, config).start()
        except BaseException:
            release_shared(self.queue)
            self.queue = None
            raise
        backlog = self.queue.depth()
        if backlog:
            self.log.info(f'node {self.node_id}: {backlog} events from before the start are being delivered')
        self.gauge('storage_blocked_code', 0)
        self.gauge('storage_held_packets', 0)
        self._gauges = GaugeReporter(self.node_id, self._metrics, self.gauge).start()

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if self.forwarder is None:
            return
        if 'batch_size' in changed:
            self.forwarder.set_batch_size(changed['batch_size'])
        if 'concurrency' in changed:
            self.forwarder.set_concurrency(changed['concurrency'])

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        assert self.queue is not None, 'setup() was not called'
        try:
            [seq] = self._commit([packet])  # returns after the commit: accepted
        except (QueueFullError, NotJsonError):
            self.count('refused_total')
            raise
        self.count('accepted_total')
        if not self.params['forward']:
            return None
        return durable_meta(packet, self.queue, seq, self.node_id, self.params['meta_key'])

    def process_batch(self, packets: Sequence[StreamPacket], port: str = 'in') -> list[StreamPacket] | None:
        """What waited in the inbox, committed in one transaction (one fsync): every packet is
        accepted when this returns. A packet that is not JSON, or a batch that can never fit the
        limits together, must not refuse its neighbours: then each is offered alone (nothing of
        the batch was committed)."""
        assert self.queue is not None, 'setup() was not called'
        try:
            seqs = self._commit(packets)  # returns after the commit: all accepted
        except (NotJsonError, BatchTooLargeError):
            return self._one_by_one(packets, port)
        except QueueFullError:
            self.count('refused_total', len(packets))
            raise
        self.count('accepted_total', len(packets))
        if not self.params['forward']:
            return None
        meta_key = self.params['meta_key']
        return [
            durable_meta(packet, self.queue, seq, self.node_id, meta_key)
            for packet, seq in zip(packets, seqs, strict=True)
        ]

    def _commit(self, packets: Sequence[StreamPacket]) -> list[int]:
        """Commit `packets` (all or none). With full_policy block, a queue without room is waited
        out here, on the node's own thread: the packets stay in hand, the inbox fills, the edge's
        policy holds the producer back. Raises only for what waiting cannot fix, or when stopped."""
        assert self.queue is not None
        if self.queue.full_policy is FullPolicy.REFUSE:
            return self.queue.enqueue_many(packets)
        backoff = Backoff(**STORAGE_RETRY_BACKOFF)
        attempt = 0
        while True:
            try:
                seqs = self.queue.enqueue_many(
                    packets,
                    timeout=min(self.params['block_timeout_sec'], ATTEMPT_WAIT_SEC),
                    count_refused=False,
                )
            except BatchTooLargeError:
                raise  # never fits, however long we wait: the caller offers them one by one
            except QueueFullError as exc:
                attempt += 1
                self._hold(exc, len(packets), attempt)
                if self.wait_for_stop(backoff.delay(attempt)):
                    raise type(exc)(
                        f'{exc}; the node was stopped while it held {len(packets)} packets for room'
                    ) from None
                continue
            if attempt:
                self._resume(len(packets))
            return seqs

    def _hold(self, exc: QueueFullError, held: int, attempt: int) -> None:
        code = (
            BLOCKED_BY_RESERVE
            if isinstance(exc, LowDiskSpaceError)
            else BLOCKED_BY_DISK_FULL
            if isinstance(exc, DiskFullError)
            else BLOCKED_BY_LIMIT
        )
        self.gauge('storage_blocked_code', code)
        self.gauge('storage_held_packets', held)
        if self._blocked_since is None:
            self._blocked_since = time.monotonic()
            self.count('storage_blocked_total')
            self.log.error(
                f'{exc}; holding {held} packets and taking no more from the inbox until there is room '
                '(retrying with backoff; the edge policy applies upstream)'
            )
        elif attempt % 30 == 0:
            self.log.warning(
                f"node '{self.node_id}': still no room in the queue after "
                f'{time.monotonic() - self._blocked_since:.0f} s: {exc}'
            )

    def _resume(self, held: int) -> None:
        since, self._blocked_since = self._blocked_since, None
        self.gauge('storage_blocked_code', 0)
        self.gauge('storage_held_packets', 0)
        if since is not None:
            waited = time.monotonic() - since
            self.count('storage_blocked_ms_total', int(waited * 1000))
            self.log.warning(
                f"node '{self.node_id}': the queue has room again after {waited:.1f} s; "
                f'the {held} held packets are accepted, the inbox drains'
            )

    def _one_by_one(self, packets: Sequence[StreamPacket], port: str) -> list[StreamPacket]:
        outputs: list[StreamPacket] = []
        failed: list[Exception] = []
        for packet in packets:
            try:
                out = self.process(packet, port)
            except (QueueFullError, NotJsonError) as exc:
                failed.append(exc)
                continue
            if out is not None:
                outputs.append(out)
        if failed:
            for out in outputs:  # the accepted ones still go on before the refusal is raised
                self.emit(out)
            raise type(failed[0])(
                f'{len(failed)} of {len(packets)} packets refused, the others accepted; first: {failed[0]}'
            )
        return outputs

    def _metrics(self) -> dict[str, Any]:
        """The forwarder's metrics plus the queue file's disk use (file, WAL, free space). The
        queue's own `refused_total` is left out: this node counts every refusal itself (also the
        ones the queue does not see as such: a full disk, a stop while holding)."""
        assert self.forwarder is not None and self.queue is not None
        metrics = {**self.forwarder.metrics(), **self.queue.space()}
        metrics.pop('refused_total', None)
        return metrics

    def backlog(self) -> int:
        """Accepted events not yet delivered: a finite run keeps this node running until 0."""
        queue = self.queue
        if queue is None or self.forwarder is None:
            return 0
        try:
            return queue.depth()
        except Exception:  # closing meanwhile
            return 0

    def close(self) -> None:
        if self.forwarder is not None:
            if self.params['drain_on_close_sec'] > 0:
                self.forwarder.wait_idle(self.params['drain_on_close_sec'])
            self.forwarder.stop()  # in-flight POSTs finish and are settled; the rest stays queued
        if self._gauges is not None:
            self._gauges.stop()
            self._gauges = None
        self.forwarder = None
        if self.queue is not None:
            release_shared(self.queue)
            self.queue = None
