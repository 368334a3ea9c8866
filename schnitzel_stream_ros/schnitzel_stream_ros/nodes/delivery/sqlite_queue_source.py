"""SqliteQueueSource: emit queued packets; upstream `durable_sqlite:SqliteQueueSource`, same keys.

Upstream emitted at most `limit` rows per run and re-read unacked rows on the next run. Here the
rows are leased: an emitted row is not emitted again while its lease runs (`lease_sec`); if no
SqliteQueueAckSink acks it in time (the HTTP sink failed, the process hung) it comes again --
the retry bridge upstream lacked. `follow: true` keeps the source running and emits new rows as
they are committed (the live mode); without it the source ends after `limit` rows or an empty
queue, as upstream did.
"""

from __future__ import annotations

from collections.abc import Iterator

from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.shared import release_shared
from schnitzel_stream_ros.nodes.delivery.params import durable_meta, open_queue
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class SqliteQueueSource(Plugin):
    """Emit rows of a SQLite queue in seq order, leased until acked."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', profile=PayloadProfile.JSON_PORTABLE),)
    STALL_TIMEOUT_SEC = 0.0  # it waits for rows: an empty queue is not a stall
    PARAMS = (
        Param('path', str, description='SQLite queue file'),
        Param('limit', int, 100, 'rows per run (0 = no limit); with follow: rows per claim', min=0),
        Param('delete_on_emit', bool, False, 'ack right after emitting (unsafe: dev only, as upstream)'),
        Param('meta_key', str, 'durable', 'meta key for {queue, path, seq, node_id}'),
        Param('follow', bool, False, 'keep running and emit new rows as they arrive'),
        Param(
            'lease_sec', float, 60.0, 'an emitted row that is not acked within this comes again', min=0.001
        ),
        Param(
            'poll_sec', float, 0.5, 'with follow: how often to look for rows other processes wrote', min=0.01
        ),
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
        if self.params['delete_on_emit']:
            self.log.warning(f'node {self.node_id}: delete_on_emit acks before delivery; events can be lost')

    def produce(self) -> Iterator[StreamPacket | None]:
        assert self.queue is not None, 'setup() was not called'
        queue = self.queue
        p = self.params
        limit, follow = p['limit'], p['follow']
        emitted = 0
        while not self.stopping:
            want = 64 if follow or limit == 0 else min(64, limit - emitted)
            if want <= 0:
                return
            rows = queue.claim(want, p['lease_sec'])
            if not rows:
                if not follow:
                    return
                queue.wait_for_rows(p['poll_sec'])
                yield None  # nothing now; lets the runtime check for stop
                continue
            handed = 0  # rows given to the runtime (counted before the yield: a close() arrives there)
            try:
                for row in rows:
                    packet = durable_meta(row.packet(), queue, row.seq, self.node_id, p['meta_key'])
                    handed += 1
                    emitted += 1
                    self.count('emitted_total')
                    yield packet
                    if p['delete_on_emit']:
                        queue.ack([row.seq])
            finally:
                if handed < len(rows):  # stopped mid-batch: the rest was never emitted
                    queue.release(r.seq for r in rows[handed:])

    def close(self) -> None:
        if self.queue is not None:
            self.gauge('queue_depth', self.queue.depth())
            release_shared(self.queue)
            self.queue = None
