"""WAL housekeeping stays off the producer's path (issue 11: enqueue p99 while delivering).

A reader that holds its snapshot (the forwarder claiming, an operator's `sqlite3`) keeps the WAL
from restarting, so while a producer writes it grows past `wal_limit_bytes`. Bounding it takes a
TRUNCATE checkpoint, which blocks writers. Done from the checkpointer's own connection, the
producer's next BEGIN would wait in SQLite's busy handler (sleeps of 1, 2, 5, 10... ms); so while
a producer writes, the checkpoint runs on the committer thread between two commits. Real SQLite
files and threads; the assertions are on what happened (counters, the WAL's size, every row), not
on time.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket

WAL_LIMIT = 64 * 1024
WAIT_SEC = 30.0
MAX_EVENTS = 100_000


def _event(i: int) -> StreamPacket:
    return StreamPacket.new('event', 'cam', {'i': i, 'pad': 'x' * 500}, meta={'idempotency_key': f'e{i}'})


def _wait(condition, timeout: float = WAIT_SEC) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_wal_over_its_bound_while_a_producer_writes_is_bounded_between_commits(tmp_path):
    path = tmp_path / 'q.db'
    queue = DurableQueue(path, node_id='q', wal_limit_bytes=WAL_LIMIT, checkpoint_interval_sec=0.05)
    wal = path.with_name(path.name + '-wal')
    stop = threading.Event()
    produced: list[int] = []

    def produce() -> None:
        i = 0
        while not stop.is_set() and i < MAX_EVENTS:  # bounded: a failing run must not fill the disk
            queue.enqueue_many([_event(j) for j in range(i, i + 20)])
            produced.extend(range(i, i + 20))
            i += 20

    producer = threading.Thread(target=produce, daemon=True)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        producer.start()
        reader.execute('BEGIN')
        reader.execute('SELECT COUNT(*) FROM packets').fetchone()  # holds a snapshot: no WAL restart
        assert _wait(lambda: wal.stat().st_size > 2 * WAL_LIMIT), wal.stat().st_size
        reader.execute('COMMIT')  # let go: the next bounding can truncate
        assert _wait(lambda: queue.stats()['wal_bounded_between_commits_total'] >= 1), queue.stats()
        assert _wait(lambda: wal.stat().st_size <= WAL_LIMIT), wal.stat().st_size  # while still writing
        stats = queue.stats()
    finally:
        stop.set()
        producer.join(WAIT_SEC)
        reader.close()
    assert producer.is_alive() is False
    # the checkpointer's connection never took the write lock while the producer wrote
    assert stats['housekeeping_blocked_writers_total'] == 0
    assert queue.depth() == len(produced) == len(set(produced)) > 0
    queue.close()
