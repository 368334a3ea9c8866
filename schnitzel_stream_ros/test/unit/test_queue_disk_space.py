"""Disk space of the durable queue on a real, small filesystem (a tmpfs the test mounts as root):
the free-space reserve refuses early and cleanly, the WAL stays bounded, a drained backlog gives
its space back, and the durable sink holds its packets while the disk is full and resumes by itself.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from schnitzel_stream_ros.delivery.errors import DiskFullError, LowDiskSpaceError, QueueFullError
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.queue.disk_space import filesystem_free_bytes
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.testing.small_fs import SmallFsUnavailable, fill, small_tmpfs

MB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path):
    try:
        with small_tmpfs(tmp_path / 'fs', 6 * MB) as where:
            yield where
    except SmallFsUnavailable as exc:
        pytest.skip(f'needs a real small filesystem: {exc}')


def event(i: int, size: int = 1000) -> StreamPacket:
    return StreamPacket.new('event', 'cam0', {'i': i, 'pad': 'z' * size}, meta={'idempotency_key': f'k{i}'})


def _integrity(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute('PRAGMA integrity_check').fetchone()[0]
    finally:
        conn.close()


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_backlog_bigger_than_the_reserve_allows_is_refused_early_and_the_wal_stays_bounded(small_fs):
    path = small_fs / 'queue.db'
    reserve, wal_limit = 1 * MB, 256 * 1024
    accepted: list[int] = []
    with DurableQueue(
        path,
        node_id='q',
        full_policy='refuse',
        min_free_bytes=reserve,
        wal_limit_bytes=wal_limit,
        checkpoint_interval_sec=0.1,
    ) as queue:
        with pytest.raises(LowDiskSpaceError) as refused:
            for start in range(0, 100_000, 20):  # batches of 20 x 1 kB: an outage's backlog
                queue.enqueue_many([event(i) for i in range(start, start + 20)])
                accepted.extend(range(start, start + 20))
        message = str(refused.value)
        assert "node 'q'" in message and 'min_free_bytes=1048576' in message and 'not accepted' in message
        stats = queue.stats()
        # refused by the reserve, before SQLite ever met ENOSPC
        assert stats['low_space_total'] == 1 and stats['disk_full_total'] == 0
        assert stats['refused_total'] == 20 and queue.depth() == len(accepted) > 1000
        assert filesystem_free_bytes(small_fs) >= reserve * 0.8
        assert _wait(lambda: queue.space()['wal_bytes'] <= wal_limit), queue.space()
        full_size = queue.space()['file_bytes']

        # delivered: every row acked -> the checkpointer gives the pages back and empties the WAL
        while rows := queue.claim(500):
            queue.ack([r.seq for r in rows])
        assert queue.depth() == 0
        assert _wait(lambda: queue.space()['file_bytes'] < full_size / 4), queue.space()
        assert queue.stats()['space_returned_bytes_total'] > full_size / 2
        assert filesystem_free_bytes(small_fs) > reserve + full_size / 2
        queue.enqueue(event(10**6))  # room again, without a restart
    assert _integrity(path) == 'ok'


def test_acks_are_never_refused_by_the_reserve(small_fs):
    path = small_fs / 'queue.db'
    with DurableQueue(path, node_id='q', full_policy='refuse', min_free_bytes=1 * MB) as queue:
        queue.enqueue_many([event(i) for i in range(200)])
        fill(small_fs, leave_free_bytes=512 * 1024)  # somebody else's files took the disk under the reserve
        with pytest.raises(LowDiskSpaceError):
            queue.enqueue(event(999))
        rows = queue.claim(200)
        assert queue.ack([r.seq for r in rows]) == 200  # what frees room must always work
        assert queue.depth() == 0
    assert _integrity(path) == 'ok'


def test_acks_go_on_as_soon_as_a_reader_that_pinned_the_wal_lets_go(small_fs):
    # A long reader (a backup, an inspection) keeps the WAL from restarting: acks append to it until
    # the disk is full and an ack fails (the reserve cannot foresee a pinned WAL). Once the reader is
    # gone, the next ack that meets the full disk truncates the WAL on the writer (group_commit.py's
    # make_room) and goes through, without waiting for the checkpointer's next round (here: never).
    path = small_fs / 'queue.db'
    with DurableQueue(path, node_id='q', full_policy='refuse', min_free_bytes=1 * MB,
                      wal_limit_bytes=256 * 1024, checkpoint_interval_sec=3600) as queue:
        with pytest.raises(LowDiskSpaceError):
            for start in range(0, 100_000, 20):
                queue.enqueue_many([event(i) for i in range(start, start + 20)])
        reader = sqlite3.connect(path)
        reader.execute('BEGIN')
        reader.execute('SELECT count(*) FROM packets').fetchone()  # the snapshot pins the WAL
        with pytest.raises(DiskFullError):
            while rows := queue.claim(100):
                queue.ack([r.seq for r in rows])
        failed = len(rows)  # their ack was rolled back: still leased, due again after the lease
        assert queue.space()['wal_bytes'] > 256 * 1024
        reader.execute('COMMIT')
        reader.close()
        while rows := queue.claim(100):
            queue.ack([r.seq for r in rows])
        assert queue.stats()['disk_full_wal_truncated_total'] >= 1
        assert queue.depth() == failed
    assert _integrity(path) == 'ok'


def _sink(small_fs, stop: threading.Event):
    from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
    from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

    params = resolve_params(
        DurableForwarderSink,
        {
            'path': str(small_fs / 'queue.db'),
            # nothing listens there: delivery fails, the backlog stays (the backend is down)
            'url': 'http://127.0.0.1:9/events',
            'min_free_bytes': 0,  # no reserve: the disk really runs full (ENOSPC inside SQLite)
            'wal_limit_bytes': 64 * 1024,
        },
    )
    ctx = SimpleContext('q', params, stop_event=stop)
    sink = DurableForwarderSink(ctx)
    sink.setup()
    return sink, ctx


def test_the_sink_holds_its_packets_while_the_disk_is_full_and_resumes_when_space_returns(small_fs):
    stop = threading.Event()
    sink, ctx = _sink(small_fs, stop)
    try:
        ballast = fill(small_fs, leave_free_bytes=0)
        os.truncate(ballast, max(0, ballast.stat().st_size - 96 * 1024))  # a little room: some rows fit
        accepted: list[int] = []
        i = 0
        result: dict[str, object] = {}

        def offer() -> None:
            nonlocal i
            try:
                while 'stop_offering' not in result:
                    sink.process_batch([event(n) for n in range(i, i + 10)])
                    accepted.extend(range(i, i + 10))
                    i += 10
            except BaseException as exc:  # handed to the test thread
                result['error'] = exc

        worker = threading.Thread(target=offer, daemon=True)
        worker.start()
        # the disk fills: the call does not return (and does not raise) while there is no room
        assert _wait(lambda: ctx.counters.get('storage_blocked_code') == 3), ctx.counters
        held_at = len(accepted)
        time.sleep(1.0)
        assert len(accepted) == held_at and 'error' not in result and worker.is_alive()
        assert ctx.counters['storage_held_packets'] == 10 and ctx.counters['storage_blocked_total'] == 1
        assert ctx.counters.get('refused_total', 0) == 0

        ballast.unlink()  # the operator frees space: the held packets go in, offering goes on
        assert _wait(lambda: len(accepted) > held_at + 50)
        assert ctx.counters['storage_blocked_code'] == 0
        result['stop_offering'] = True
        worker.join(10)
        assert 'error' not in result, result
    finally:
        sink.close()
    # read from the file (the forwarder may hold a lease on a row until it closed)
    conn = sqlite3.connect(small_fs / 'queue.db')
    try:
        stored = {k for (k,) in conn.execute('SELECT idempotency_key FROM packets')}
    finally:
        conn.close()
    assert stored == {f'k{n}' for n in accepted}  # nothing accepted is missing, nothing extra
    assert _integrity(small_fs / 'queue.db') == 'ok'


def test_a_stop_ends_the_hold_at_once_and_counts_what_was_held(small_fs):
    stop = threading.Event()
    sink, ctx = _sink(small_fs, stop)
    try:
        fill(small_fs, leave_free_bytes=0)
        failure: list[BaseException] = []

        def offer() -> None:
            try:
                for start in range(0, 100_000, 10):
                    sink.process_batch([event(n) for n in range(start, start + 10)])
            except BaseException as exc:  # handed to the test thread
                failure.append(exc)

        worker = threading.Thread(target=offer, daemon=True)
        worker.start()
        assert _wait(lambda: ctx.counters.get('storage_blocked_code') == 3), ctx.counters
        time.sleep(0.5)
        t_stop = time.monotonic()
        stop.set()
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - t_stop < 3.0
        assert isinstance(failure[0], QueueFullError)
        assert 'stopped while it held 10 packets' in str(failure[0])
        assert ctx.counters['refused_total'] == 10
    finally:
        sink.close()
