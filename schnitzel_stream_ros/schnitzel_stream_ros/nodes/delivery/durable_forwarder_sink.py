"""DurableForwarderSink: accept an event durably, deliver it to the backend in the background.

The backend is an HTTP endpoint (`url`), or with `target: nats` / `target: mqtt` a NATS JetStream
stream or an MQTT broker (target_params.py, docs/buses.md); everything durable below is the same.

The node the issue asks for: process() returns only after the event's row is committed (the
event is *accepted*), and forwarder threads in the same process drain the queue to the HTTP
backend with retries, backoff, circuit breaker and dead letters. Placed in the same container as
the node that produces the events, the hand-off into it is a synchronous function call, so no
accepted event can be in flight on a topic when a process dies. A backlog left by a crash or an
outage is delivered automatically when the node starts again.

A queue that cannot take more (a full disk, the free-space reserve, a row/byte limit) is
back-pressure, never a drop, when `full_policy` is `block`; `refuse`, `drop_oldest` and
`drop_newest` are the graph's other choices. The logic is shared with SqliteQueueSink:
nodes/delivery/storage_hold.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schnitzel_stream_ros.delivery.delivery_process import DEFAULT_NICE, DeliveryProcess
from schnitzel_stream_ros.delivery.errors import BatchTooLargeError, NotJsonError, QueueFullError
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.shared import release_shared
from schnitzel_stream_ros.nodes.delivery.gauge_reporter import GaugeReporter
from schnitzel_stream_ros.nodes.delivery.params import (
    BACKOFF_PARAMS,
    QUEUE_PARAMS,
    backoff_from_params,
    durable_meta,
    open_queue,
    storage_policy,
)
from schnitzel_stream_ros.nodes.delivery.storage_hold import StorageHold
from schnitzel_stream_ros.nodes.delivery.target_params import (
    HTTP_PARAMS_FOR_TARGETS,
    TARGET_PARAMS,
    check_target_params,
    delivery_target_from_params,
)
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


def forwarder_config(p: Mapping[str, Any]) -> ForwarderConfig:
    """The delivery policy from the node's parameters (also read by a delivery process)."""
    return ForwarderConfig(
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
        *HTTP_PARAMS_FOR_TARGETS,
        *TARGET_PARAMS,
        *BACKOFF_PARAMS,
        Param('concurrency', int, 4, 'parallel connections to the backend; a knob: settable live (surplus '
              'workers end after their round)', min=1, max=64, dynamic=True),
        Param('pipeline_depth', int, 32, 'HTTP requests in flight per connection while a claimed batch '
              'is posted (pipelining; only with an idempotency_header; 1 = one at a time)', min=1, max=256),
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
            'delivery_process',
            bool,
            False,
            'deliver from a process of its own (restarted if it dies, stopped with the node) instead '
            "of threads of the container: delivery's Python work then shares neither the producer's "
            'GIL nor, reniced, its CPU priority (docs/delivery.md)',
        ),
        Param(
            'delivery_process_nice',
            int,
            DEFAULT_NICE,
            'niceness added to the delivery process: the producer wins the CPU when both want it',
            min=0,
            max=19,
        ),
        Param(
            'drain_on_close_sec',
            float,
            0.0,
            'at the end of a run, wait up to this long for the queue to empty (undelivered rows stay)',
            min=0.0,
        ),
    )

    queue: DurableQueue | None = None
    forwarder: Forwarder | DeliveryProcess | None = None
    _gauges: GaugeReporter | None = None
    _hold: StorageHold | None = None

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        return check_target_params(params)

    def setup(self) -> None:
        p = self.params
        target = delivery_target_from_params(p, self.node_id)  # HTTP, NATS JetStream or MQTT
        config = forwarder_config(p)
        self.queue = open_queue(self.node_id, p, max_retry_delay_sec=max(60.0, p['retry_backoff_max_sec']))
        try:
            if p['delivery_process']:
                self.forwarder = DeliveryProcess(
                    self.queue, target, config, dict(p), nice=p['delivery_process_nice']
                ).start()
            else:
                self.forwarder = Forwarder(self.queue, target, config).start()
        except BaseException:
            target.close()
            release_shared(self.queue)
            self.queue = None
            raise
        backlog = self.queue.depth()
        if backlog:
            self.log.info(f'node {self.node_id}: {backlog} events from before the start are being delivered')
        self._hold = StorageHold(self, self.queue, storage_policy(p))
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
        assert self._hold is not None
        try:
            [seq] = self._hold.commit([packet])  # returns after the commit: accepted
        except (QueueFullError, NotJsonError):
            self.count('refused_total')
            raise
        if seq is None:  # full_policy drop_newest: not stored (counted and noted by the hold)
            return None
        self.count('accepted_total')
        if not self.params['forward']:
            return None
        return durable_meta(packet, self.queue, seq, self.node_id, self.params['meta_key'])

    def process_batch(self, packets: Sequence[StreamPacket], port: str = 'in') -> list[StreamPacket] | None:
        """What waited in the inbox, committed in one transaction (one fsync): every packet is
        accepted when this returns. A packet that is not JSON, or a batch that can never fit the
        limits together, must not refuse its neighbours: then each is offered alone (nothing of
        the batch was committed)."""
        assert self.queue is not None and self._hold is not None, 'setup() was not called'
        try:
            seqs = self._hold.commit(packets)  # returns after the commit: all accepted (or dropped)
        except (NotJsonError, BatchTooLargeError):
            return self._one_by_one(packets, port)
        except QueueFullError:
            self.count('refused_total', len(packets))
            raise
        accepted = [(packet, seq) for packet, seq in zip(packets, seqs, strict=True) if seq is not None]
        if accepted:
            self.count('accepted_total', len(accepted))
        if not self.params['forward']:
            return None
        meta_key = self.params['meta_key']
        return [durable_meta(packet, self.queue, seq, self.node_id, meta_key) for packet, seq in accepted]

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
            self.forwarder.target.close()  # a bus target's shared connection
        if self._gauges is not None:
            self._gauges.stop()
            self._gauges = None
        self.forwarder = None
        if self.queue is not None:
            release_shared(self.queue)
            self.queue = None
