"""SqliteQueueAckSink: delete a queued row once the work downstream of the queue succeeded.

Upstream `durable_sqlite:SqliteQueueAckSink`, same keys. The row to ack is named by the packet's
meta[meta_key].seq (set by SqliteQueueSource / SqliteQueueSink forward). The ack deletes the row
and bumps the file's acked ledger in one transaction, and ends the row's lease.
"""

from __future__ import annotations

from pathlib import Path

from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.shared import release_shared
from schnitzel_stream_ros.nodes.delivery.params import open_queue
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class SqliteQueueAckSink(Plugin):
    """Acknowledge (delete) the queued row a packet came from."""

    ROLE = Role.SINK
    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.JSON_PORTABLE),)
    OUTPUTS = (Port('out', profile=PayloadProfile.JSON_PORTABLE),)
    PARAMS = (
        Param('path', str, description='SQLite queue file the packets came from'),
        Param('meta_key', str, 'durable', 'meta key holding {seq, path}'),
        Param('forward', bool, False, 'emit the packet after the ack'),
    )

    queue: DurableQueue | None = None

    def setup(self) -> None:
        self.queue = open_queue(
            self.node_id,
            {
                'path': self.params['path'],
                'max_rows': 0,
                'max_bytes': 0,
                'full_policy': 'block',
                'block_timeout_sec': 10.0,
            },
        )

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        assert self.queue is not None, 'setup() was not called'
        key = self.params['meta_key']
        info = packet.meta.get(key)
        if not isinstance(info, dict):
            raise ValueError(
                f'node {self.node_id!r}: packet {packet.packet_id} has no meta[{key!r}] mapping to ack'
            )
        seq = info.get('seq')
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ValueError(f'node {self.node_id!r}: meta[{key!r}].seq must be an int, got {seq!r}')
        origin = info.get('path')
        if isinstance(origin, str) and origin and Path(origin).resolve() != self.queue.path.resolve():
            raise ValueError(
                f'node {self.node_id!r}: packet came from queue {origin}, this node acks {self.queue.path}'
            )
        if self.queue.ack([seq]):
            self.count('acked_total')
        else:
            self.count('ack_missing_total')  # acked before (a replay), or dead-lettered meanwhile
        return packet if self.params['forward'] else None

    def close(self) -> None:
        if self.queue is not None:
            self.gauge('queue_depth', self.queue.depth())
            release_shared(self.queue)
            self.queue = None
