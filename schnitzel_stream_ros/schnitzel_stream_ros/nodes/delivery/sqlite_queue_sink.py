"""SqliteQueueSink: store each packet durably; upstream `durable_sqlite:SqliteQueueSink`, same keys.

Where "accepted" begins: process() returns only after the row is committed (WAL,
synchronous=FULL). A packet handed to this node in the same container is therefore never in
limbo: either process() returned (it is on disk) or it raised (it was refused, counted, logged).
"""

from __future__ import annotations

from schnitzel_stream_ros.delivery.errors import NotJsonError, QueueFullError
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.shared import release_shared
from schnitzel_stream_ros.nodes.delivery.gauge_reporter import GaugeReporter
from schnitzel_stream_ros.nodes.delivery.params import QUEUE_PARAMS, durable_meta, open_queue
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class SqliteQueueSink(Plugin):
    """Enqueue each packet into a SQLite queue (committed before process() returns)."""

    ROLE = Role.SINK
    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.JSON_PORTABLE),)
    OUTPUTS = (Port('out', profile=PayloadProfile.JSON_PORTABLE),)
    PARAMS = (
        *QUEUE_PARAMS,
        Param(
            'forward', bool, False, 'emit the packet after enqueue, with meta[meta_key] = {queue, path, seq}'
        ),
    )

    queue: DurableQueue | None = None
    _gauges: GaugeReporter | None = None

    def setup(self) -> None:
        self.queue = open_queue(self.node_id, self.params)
        self._gauges = GaugeReporter(self.node_id, self.queue.stats, self.gauge).start()

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        assert self.queue is not None, 'setup() was not called'
        try:
            seq = self.queue.enqueue(packet)
        except (QueueFullError, NotJsonError):
            self.count('refused_total')
            raise
        self.count('enqueued_total')
        if not self.params['forward']:
            return None
        return durable_meta(packet, self.queue, seq, self.node_id, self.params['meta_key'])

    def close(self) -> None:
        if self._gauges is not None:
            self._gauges.stop()
            self._gauges = None
        if self.queue is not None:
            release_shared(self.queue)
            self.queue = None
