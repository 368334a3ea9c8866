"""What happens at the queue's budget is the graph's choice (issue 26): block, drop oldest, drop newest.

Real SQLite queue files in tmp_path; the sinks are the real plugins (SqliteQueueSink, and
DurableForwarderSink against the reference backend on loopback answering 503, so nothing drains)
on a SimpleContext. Each policy is checked by what is in the file afterwards (which rows, the drop
note, the ledger), by the node's counters, and by the run report and /diagnostics rules fed with
those counters.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.deadletter_cli import main as deadletter_main
from schnitzel_stream_ros.delivery.queue.budget_drops import NOTE_KEEP, list_drop_notes
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
from schnitzel_stream_ros.nodes.delivery.sqlite_queue_sink import SqliteQueueSink
from schnitzel_stream_ros.observability.health import WARN, HealthMonitor, NodeView
from schnitzel_stream_ros.observability.report import build_report
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


def packet(i: int) -> StreamPacket:
    return StreamPacket(f'p{i}', '2026-01-01T00:00:00Z', 'event', 'cam1', {'i': i, 'pad': 'x' * 50},
                        {'idempotency_key': f'ev-{i}'})  # fmt: skip


def queued_keys(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute('SELECT idempotency_key FROM packets ORDER BY seq')]
    finally:
        conn.close()


def ledger(path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute('SELECT name, value FROM queue_counters').fetchall())
    finally:
        conn.close()


def make_sink(cls, tmp_path, **config):
    config = {'path': str(tmp_path / 'queue.db'), 'max_rows': 10, 'min_free_bytes': 0, **config}
    ctx = SimpleContext('q', resolve_params(cls, config))
    node = cls(ctx)
    node.setup()
    return node, ctx


@pytest.mark.parametrize('cls', [SqliteQueueSink, DurableForwarderSink], ids=['queue_sink', 'forwarder'])
def test_drop_oldest_keeps_the_newest_rows_counts_and_notes_what_went(tmp_path, cls):
    backend = serve_in_thread()
    backend.set_control(mode='5xx', status=503)  # the forwarder cannot drain: the budget is reached
    extra = {'url': backend.url + '/events', 'retry_backoff_sec': 5.0, 'retry_backoff_max_sec': 5.0}
    node, ctx = make_sink(cls, tmp_path, full_policy='drop_oldest',
                          **(extra if cls is DurableForwarderSink else {}))  # fmt: skip
    try:
        for i in range(25):
            node.process(packet(i))
        time.sleep(0.2)  # (no assertion depends on it) let in-flight attempts settle before reading
    finally:
        node.close()
        backend.stop()
    keys = queued_keys(tmp_path / 'queue.db')
    # the newest always fit; what the forwarder had in flight may stay besides them
    assert keys[-10:] == [f'ev-{i}' for i in range(15, 25)]
    assert len(keys) == 10
    dropped = ctx.counters['budget_dropped_oldest_total']
    assert dropped == ctx.counters['budget_dropped_total'] == 15
    assert ledger(tmp_path / 'queue.db')['dropped_oldest_total'] == 15
    assert 'storage_blocked_total' not in ctx.counters  # it never held the producer
    from schnitzel_stream_ros.delivery.queue import DurableQueue

    with DurableQueue(tmp_path / 'queue.db') as queue:
        [note] = list_drop_notes(queue)  # 15 drops within a minute: one merged note
    assert (note.policy, note.rows, note.node_id) == ('drop_oldest', 15, 'q')
    assert 'max_rows=10' in note.reason
    assert note.first_key is not None and note.last_key is not None


def test_drop_newest_keeps_the_oldest_rows_and_forwards_nothing_dropped(tmp_path):
    node, ctx = make_sink(SqliteQueueSink, tmp_path, full_policy='drop_newest', forward=True)
    try:
        outs = [node.process(packet(i)) for i in range(25)]
    finally:
        node.close()
    assert queued_keys(tmp_path / 'queue.db') == [f'ev-{i}' for i in range(10)]
    assert [o is not None for o in outs] == [True] * 10 + [False] * 15  # dropped ones go nowhere
    assert ctx.counters['budget_dropped_newest_total'] == 15
    assert ctx.counters['enqueued_total'] == 10
    assert ctx.counters.get('refused_total', 0) == 0  # dropped by choice is not refused
    assert ledger(tmp_path / 'queue.db')['dropped_newest_total'] == 15
    from schnitzel_stream_ros.delivery.queue import DurableQueue

    with DurableQueue(tmp_path / 'queue.db') as queue:
        [note] = list_drop_notes(queue)
    assert (note.policy, note.rows, note.first_key, note.last_key) == ('drop_newest', 15, 'ev-10', 'ev-24')


def test_block_holds_until_room_and_loses_nothing(tmp_path):
    """The default: the sink holds the packet (its process() does not return) until a consumer
    frees room, then accepts it; nothing dropped, nothing refused."""
    node, ctx = make_sink(SqliteQueueSink, tmp_path, full_policy='block')
    try:
        for i in range(10):
            node.process(packet(i))
        done = threading.Event()
        worker = threading.Thread(target=lambda: (node.process(packet(10)), done.set()), daemon=True)
        worker.start()
        assert not done.wait(1.5)  # held: no room
        assert ctx.counters['storage_blocked_code'] == 1 and ctx.counters['storage_held_packets'] == 1
        rows = node.queue.claim(3)
        node.queue.ack([r.seq for r in rows])  # delivery frees room ...
        assert done.wait(30)  # ... and the held packet is accepted by itself
    finally:
        node.close()
    assert queued_keys(tmp_path / 'queue.db') == [f'ev-{i}' for i in range(3, 11)]
    assert ctx.counters['storage_blocked_total'] == 1 and ctx.counters['storage_blocked_code'] == 0
    assert 'budget_dropped_total' not in ctx.counters


def test_drop_notes_merge_and_stay_bounded(tmp_path):
    """Notes a minute apart are separate rows; never more than NOTE_KEEP of them."""
    from schnitzel_stream_ros.delivery.queue import DurableQueue
    from schnitzel_stream_ros.delivery.queue.budget_drops import note_dropped_newest

    clock = [1_000_000.0]
    with DurableQueue(tmp_path / 'queue.db', wall_clock=lambda: clock[0]) as queue:
        for i in range(NOTE_KEEP + 50):
            clock[0] += 61.0
            note_dropped_newest(queue, [packet(i)], [10], reason='test')
        clock[0] += 1.0
        note_dropped_newest(queue, [packet(99_999)], [10], reason='test')  # merged into the last
        notes = list_drop_notes(queue, limit=10 * NOTE_KEEP)
    assert len(notes) == NOTE_KEEP
    assert notes[-1].rows == 2 and notes[-1].last_key == 'ev-99999'
    assert notes[0].first_key == 'ev-50'  # the 50 oldest notes went
    assert ledger(tmp_path / 'queue.db')['dropped_newest_total'] == NOTE_KEEP + 51


def test_budget_drops_degrade_the_run_and_warn_on_diagnostics(tmp_path, capsys):
    node, ctx = make_sink(SqliteQueueSink, tmp_path, full_policy='drop_newest')
    try:
        for i in range(12):
            node.process(packet(i))
    finally:
        node.close()
    counters = dict(ctx.counters)
    snapshot = {'nodes': {'q': {'consumed': 12, 'produced': 0, 'counters': counters}}}
    report = build_report(graph_path='g.yaml', engine='live', snapshots=[snapshot])
    assert report['metrics']['node.q.budget_dropped_total'] == 2
    assert (report['status'], report['outcome']) == ('degraded', 'degraded')
    monitor = HealthMonitor('/c')
    before = {'nodes': {'q': {'consumed': 0, 'produced': 0, 'counters': {}}}}
    monitor.update(0.0, before, {'q': NodeView(fq_name='/q', plugin='SqliteQueueSink')})
    health = monitor.update(1.0, snapshot, {'q': NodeView(fq_name='/q', plugin='SqliteQueueSink')})
    [status] = [s for s in health.statuses if s.name.endswith(': q')]
    assert status.level == WARN and 'budget_dropped_total' in status.message
    assert deadletter_main(['drops', str(tmp_path / 'queue.db')]) == 0
    out = capsys.readouterr().out
    assert 'drop_newest' in out and 'rows=2' in out


def test_drop_oldest_at_the_free_space_reserve_keeps_taking_the_newest(tmp_path):
    """On a real 4 MB tmpfs with a 1 MB reserve: the sink never holds, drops the oldest rows (their
    freed pages are reused), keeps every newest event, and the file stays intact."""
    from schnitzel_stream_ros.testing.small_fs import SmallFsUnavailable, small_tmpfs

    try:
        fs = small_tmpfs(tmp_path / 'fs', 4 * 1024 * 1024)
        where = fs.__enter__()
    except SmallFsUnavailable as exc:
        pytest.skip(f'needs a real small filesystem: {exc}')
    try:
        config = {'path': str(where / 'queue.db'), 'min_free_bytes': 1024 * 1024,
                  'full_policy': 'drop_oldest', 'wal_limit_bytes': 128 * 1024}  # fmt: skip
        ctx = SimpleContext('q', resolve_params(SqliteQueueSink, config))
        node = SqliteQueueSink(ctx)
        node.setup()
        try:
            for i in range(3000):
                payload = {'i': i, 'pad': 'z' * 1000}
                node.process(StreamPacket(f'p{i}', '2026-01-01T00:00:00Z', 'event', 'cam1', payload,
                                          {'idempotency_key': f'ev-{i}'}))  # fmt: skip
        finally:
            node.close()
        keys = queued_keys(where / 'queue.db')
        assert ctx.counters['budget_dropped_oldest_total'] > 0
        assert ctx.counters['enqueued_total'] == 3000 and 'storage_blocked_total' not in ctx.counters
        assert len(keys) + ctx.counters['budget_dropped_oldest_total'] == 3000
        assert keys == [f'ev-{i}' for i in range(3000 - len(keys), 3000)]  # the newest, no gap
        conn = sqlite3.connect(where / 'queue.db')
        try:
            assert conn.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
            [reason] = conn.execute('SELECT DISTINCT reason FROM drop_notes').fetchone()
        finally:
            conn.close()
        assert 'reserve' in reason
    finally:
        fs.__exit__(None, None, None)
