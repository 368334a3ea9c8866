"""A full disk holds the event lane back instead of emptying it (issue 26), as an operator meets it.

Real everything: the durable queue lives on a 3 MB tmpfs the test mounts (as root; skipped with the
reason where it cannot), 2 MB of it taken by another file (recordings, logs); `schnitzel-stream run`
is a child process on its own ROS domain; the reference backend on loopback answers 503 while the
disk fills. The queue meets ENOSPC inside SQLite (no reserve configured, the hardest case): the
durable sink holds its packets, its inbox fills, and

- events: the blocking edge holds the source back — it cannot finish while the disk is full;
- frames: a keep-freshest inbox in front of the event builder sheds frames (counted, the graph's
  design), the event side stays complete.

Then the operator frees the space and the backend recovers: every event the producer handed to
the blocking edge reaches the backend exactly once per key, the queue file passes integrity_check,
and the run ends `degraded` (exit 3: it had to hold back, it lost nothing).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.idempotency_key import wire_key
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.small_fs import SmallFsUnavailable, fill, small_tmpfs

pytestmark = pytest.mark.integration

MB = 1024 * 1024
N_EVENTS = 6000
RATE_HZ = 1000.0
SINK = 'schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink:DurableForwarderSink'


@pytest.fixture
def backend():
    running = serve_in_thread()
    yield running
    running.stop()


@pytest.fixture
def small_fs(tmp_path):
    try:
        with small_tmpfs(tmp_path / 'fs', 3 * MB) as where:
            yield where
    except SmallFsUnavailable as exc:
        pytest.skip(f'needs a real small filesystem for the queue: {exc}')


def _graph(tmp_path: Path, queue: Path, url: str, frames: bool) -> Path:
    source = {
        'id': 'src',
        'kind': 'source',
        'plugin': 'SyntheticSource',
        'config': {'rate_hz': RATE_HZ, 'count': N_EVENTS, 'payload_bytes': 300, 'kind': 'event'},
    }
    sink = {
        'id': 'q',
        'kind': 'sink',
        'plugin': SINK,
        'config': {
            'path': str(queue),
            'url': url,
            'full_policy': 'block',
            'min_free_bytes': 0,  # no reserve: SQLite itself meets ENOSPC
            'wal_limit_bytes': 128 * 1024,
            'concurrency': 2,
            'retry_backoff_sec': 0.05,
            'retry_backoff_max_sec': 0.5,
            'breaker_open_sec': 0.2,
        },
    }
    blocking = {'max': 64, 'overflow': 'block'}
    if frames:
        builder = {'id': 'build', 'kind': 'node', 'plugin': 'Identity'}
        nodes = [source, builder, sink]
        edges = [
            {'from': 'src', 'to': 'build', 'inbox': {'max': 1, 'overflow': 'drop_oldest'}},
            {'from': 'build', 'to': 'q', 'inbox': blocking},
        ]
    else:
        nodes = [source, sink]
        edges = [{'from': 'src', 'to': 'q', 'inbox': blocking}]
    path = tmp_path / 'graph.json'
    path.write_text(json.dumps({'version': 2, 'nodes': nodes, 'edges': edges}))
    return path


class _Lines:
    """The child's stderr, read on a thread (so its pipe never fills), searchable while it runs."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return True
            time.sleep(0.1)
        return False

    def tail(self) -> str:
        return ''.join(self.lines[-40:])


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute('PRAGMA integrity_check').fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize('frames', [False, True], ids=['events', 'frames-upstream'])
def test_a_full_disk_holds_the_lane_back_and_nothing_is_lost(tmp_path, small_fs, backend, ros_env, frames):
    backend.set_control(mode='5xx', status=503)
    ballast = fill(small_fs, leave_free_bytes=1 * MB, name='recordings.bin')
    queue = small_fs / 'queue.db'
    report_path = tmp_path / 'report.json'
    cmd = [
        sys.executable, '-m', 'schnitzel_stream_ros', 'run',
        str(_graph(tmp_path, queue, backend.url + '/events', frames)),
        '--report-json', str(report_path), '--drain-timeout', '120',
    ]  # fmt: skip
    t_start = time.monotonic()
    proc = processes.start(cmd, ros_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        stderr = _Lines(proc.stderr)
        assert stderr.wait_for('holding', 90), f'the disk never filled:\n{stderr.tail()}'
        assert 'is full' in stderr.tail() and 'nothing of it was accepted' in stderr.tail()
        if not frames:
            # the source would be done after N/rate s; held back by the blocking edge, it is not
            time.sleep(max(2.0, t_start + N_EVENTS / RATE_HZ + 3.0 - time.monotonic()))
            assert proc.poll() is None, f'the run ended while the disk was full:\n{stderr.tail()}'
        else:
            time.sleep(2.0)
        assert backend.stats()['unique'] == 0  # the backend was down the whole time

        ballast.unlink()  # the operator frees space ...
        backend.set_control(mode='ok')  # ... and the backend recovers
        proc.wait(timeout=180)
    finally:
        processes.stop(proc)
    report = json.loads(report_path.read_text())
    m = report['metrics']
    assert proc.returncode == 3, stderr.tail()
    assert (report['status'], report['outcome']) == ('degraded', 'degraded'), report['warnings']
    assert not any(report['lost'].values()), report['lost']
    assert report['stop_reason'] == 'sources_done'
    assert m['node.q.storage_blocked_total'] >= 1 and m['node.q.disk_full_total'] >= 1
    assert m['node.q.storage_blocked_code'] == 0  # resumed by itself
    assert m['node.src.produced'] == N_EVENTS
    handed = m['node.build.produced'] if frames else N_EVENTS
    assert m['node.q.accepted_total'] == m['node.q.consumed'] == handed
    delivered = backend.keys()
    if frames:
        # frames shed at the keep-freshest inbox, counted; every event built is delivered
        assert m['packets.shed_total'] > 0
        assert m['node.build.consumed'] + m['packets.shed_total'] == N_EVENTS
        assert delivered <= {wire_key(f'synthetic:src:{i}') for i in range(N_EVENTS)}
    else:
        assert m['packets.dropped_total'] == 0
        assert m[next(k for k in m if k.endswith('->q.in.inbox_depth_max'))] == 64  # the edge did block
        assert delivered == {wire_key(f'synthetic:src:{i}') for i in range(N_EVENTS)}
    assert len(delivered) == backend.stats()['unique'] == handed  # exactly once per key, no gaps
    assert _integrity(queue) == 'ok'
    conn = sqlite3.connect(queue)
    try:
        assert conn.execute('SELECT COUNT(*) FROM packets').fetchone()[0] == 0
    finally:
        conn.close()


def test_a_stop_during_the_hold_ends_the_run_within_its_drain_timeout(tmp_path, small_fs, backend, ros_env):
    """SIGTERM while the disk is full: the hold ends with the drain timeout, the run says `failed`
    (the packets it held and those waiting in its inbox were not accepted) and counts each of them;
    everything accepted is in the intact queue file."""
    backend.set_control(mode='5xx', status=503)
    fill(small_fs, leave_free_bytes=1 * MB, name='recordings.bin')
    queue = small_fs / 'queue.db'
    report_path = tmp_path / 'report.json'
    cmd = [
        sys.executable, '-m', 'schnitzel_stream_ros', 'run',
        str(_graph(tmp_path, queue, backend.url + '/events', frames=False)),
        '--report-json', str(report_path), '--drain-timeout', '3',
    ]  # fmt: skip
    proc = processes.start(cmd, ros_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        stderr = _Lines(proc.stderr)
        assert stderr.wait_for('holding', 90), f'the disk never filled:\n{stderr.tail()}'
        time.sleep(1.0)
        t_signal = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        stopped_after = time.monotonic() - t_signal
    finally:
        processes.stop(proc)
    assert stopped_after < 15, f'took {stopped_after:.1f} s to stop'
    report = json.loads(report_path.read_text())
    m = report['metrics']
    assert proc.returncode == 1 and report['outcome'] == 'failed', stderr.tail()
    assert report['stop_reason'] == 'signal SIGTERM'
    accepted, refused = m['node.q.accepted_total'], m['node.q.refused_total']
    assert refused > 0 and report['lost']['refused'] == refused
    # every packet the source emitted is accepted, or counted as refused (held) or dropped (waiting)
    assert m['node.src.produced'] == accepted + refused + m['packets.dropped_total']
    assert _integrity(queue) == 'ok'
    conn = sqlite3.connect(queue)
    try:
        assert conn.execute('SELECT COUNT(*) FROM packets').fetchone()[0] == accepted
    finally:
        conn.close()


def test_the_queue_sink_holds_on_a_full_disk_the_same_way(tmp_path, small_fs, ros_env):
    """SqliteQueueSink (the upstream producer node, no delivery of its own) shares the hold with the
    durable forwarder (nodes/delivery/storage_hold.py): on ENOSPC it holds its packet, the blocking
    edge holds the source back, ERROR is logged; freed space lets it resume by itself, and every
    event the source emitted is in the intact queue file exactly once."""
    n_events = 4000
    ballast = fill(small_fs, leave_free_bytes=MB // 2, name='recordings.bin')
    queue = small_fs / 'queue.db'
    graph = {
        'version': 2,
        'nodes': [
            {'id': 'src', 'kind': 'source', 'plugin': 'SyntheticSource',
             'config': {'rate_hz': RATE_HZ, 'count': n_events, 'payload_bytes': 100, 'kind': 'event'}},
            {'id': 'q', 'kind': 'sink', 'plugin': 'schnitzel_stream.nodes.durable_sqlite:SqliteQueueSink',
             'config': {'path': str(queue), 'full_policy': 'block', 'min_free_bytes': 0,
                        'wal_limit_bytes': 128 * 1024}},
        ],
        'edges': [{'from': 'src', 'to': 'q', 'inbox': {'max': 64, 'overflow': 'block'}}],
    }  # fmt: skip
    graph_path = tmp_path / 'graph.json'
    graph_path.write_text(json.dumps(graph))
    report_path = tmp_path / 'report.json'
    cmd = [
        sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph_path),
        '--report-json', str(report_path), '--drain-timeout', '60',
    ]  # fmt: skip
    t_start = time.monotonic()
    proc = processes.start(cmd, ros_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        stderr = _Lines(proc.stderr)
        assert stderr.wait_for('holding', 90), f'the disk never filled:\n{stderr.tail()}'
        assert 'is full' in stderr.tail() and 'nothing of it was accepted' in stderr.tail()
        time.sleep(max(2.0, t_start + n_events / RATE_HZ + 3.0 - time.monotonic()))
        assert proc.poll() is None, f'the run ended while the disk was full:\n{stderr.tail()}'
        ballast.unlink()  # the operator frees space: the sink resumes by itself
        proc.wait(timeout=180)
    finally:
        processes.stop(proc)
    report = json.loads(report_path.read_text())
    m = report['metrics']
    assert proc.returncode == 3, stderr.tail()
    assert (report['status'], report['outcome']) == ('degraded', 'degraded'), report['warnings']
    assert not any(report['lost'].values()), report['lost']
    assert m['node.q.storage_blocked_total'] >= 1 and m['node.q.storage_blocked_code'] == 0
    assert m['node.src.produced'] == m['node.q.enqueued_total'] == n_events
    assert m['packets.dropped_total'] == 0
    assert _integrity(queue) == 'ok'
    conn = sqlite3.connect(queue)
    try:
        keys = {row[0] for row in conn.execute('SELECT idempotency_key FROM packets')}
    finally:
        conn.close()
    assert keys == {wire_key(f'synthetic:src:{i}') for i in range(n_events)}
