"""SqliteQueueSink: store each packet durably; upstream `durable_sqlite:SqliteQueueSink`, same keys.

Where "accepted" begins: process() returns only after the row is committed (WAL,
synchronous=FULL). A packet handed to this node in the same container is therefore never in
limbo: either process() returned (it is on disk) or it raised (it was refused, counted, logged).

A queue without room (a full disk, the free-space reserve, a row/byte limit) is handled exactly as
in DurableForwarderSink, by the same code (nodes/delivery/storage_hold.py): with `full_policy:
block` the sink holds the packet and takes nothing from its inbox until there is room, ERROR on
/diagnostics, and resumes by itself; `drop_oldest`/`drop_newest` drop at the budget, counted and
noted in the queue file.
"""

from __future__ import annotations

from schnitzel_stream_ros.delivery.errors import NotJsonError, QueueFullError
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.shared import release_shared
from schnitzel_stream_ros.nodes.delivery.gauge_reporter import GaugeReporter
from schnitzel_stream_ros.nodes.delivery.params import QUEUE_PARAMS, durable_meta, open_queue, storage_policy
from schnitzel_stream_ros.nodes.delivery.storage_hold import StorageHold
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
    _hold: StorageHold | None = None

    def setup(self) -> None:
        self.queue = open_queue(self.node_id, self.params)
        self._hold = StorageHold(self, self.queue, storage_policy(self.params))
        self._gauges = GaugeReporter(self.node_id, self.queue.stats, self.gauge).start()

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        assert self.queue is not None and self._hold is not None, 'setup() was not called'
        try:
            [seq] = self._hold.commit([packet])  # returns after the commit (or held until there is room)
        except (QueueFullError, NotJsonError):
            self.count('refused_total')
            raise
        if seq is None:  # full_policy drop_newest: not stored (counted and noted by the hold)
            return None
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
