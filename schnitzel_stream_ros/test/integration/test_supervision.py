"""Supervision: a container process of a running graph that dies is restarted and its nodes reloaded.

`schnitzel-stream run` of a two-container graph: a numbered source in container `front`, a durable
forwarding sink (SQLite queue + HTTP forwarder) in container `back`. The backend is down at first,
so accepted events pile up in the queue. Then `back` is killed with SIGKILL. Expected: it is back
with its node loaded and wired within 5 s (new events are accepted again), `front` never stopped
(same process), and once the backend comes up every event accepted before the kill and events
built after it reach the backend. The run report is truthful: degraded, the restart counted.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_diagnostics import DiagnosticsListener

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.testing import processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

RECOVERY_LIMIT_SEC = 5.0

GRAPH = """
    version: 2
    namespace: /sv
    nodes:
      - {id: src, plugin: SyntheticSource, container: front,
         config: {rate_hz: 200.0, count: 0, payload_bytes: 8}}
      - {id: queue, kind: sink, plugin: DurableForwarderSink, container: back,
         config: {path: TMP/queue.db, url: 'URL', timeout_sec: 0.5, lease_sec: 1.0,
                  retry_backoff_sec: 0.1, retry_backoff_max_sec: 0.5, breaker_open_sec: 0.2}}
    edges:
      - {from: src, to: queue, qos: {depth: 1000}, inbox: {max: 1000}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _children(pid: int) -> dict[str, int]:
    """container group name -> pid, for the runner's container processes."""
    out = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            cmdline = (entry / 'cmdline').read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(')', 1)[1].split()[1]) != pid:
            continue
        for part in cmdline.split(b'\0'):
            if part.startswith(b'__node:='):
                out[part.split(b'=', 1)[1].decode()] = int(entry.name)
    return out


def _accepted(queue_db: Path) -> set[str]:
    """Idempotency keys of the events the queue holds now (committed = accepted)."""
    if not queue_db.exists():
        return set()
    conn = sqlite3.connect(f'file:{queue_db}?mode=ro', uri=True, timeout=5)
    try:
        return {row[0] for row in conn.execute('SELECT idempotency_key FROM packets')}
    except sqlite3.OperationalError:  # not created yet
        return set()
    finally:
        conn.close()


def _seq(key: str) -> int:
    return int(key.rsplit(':', 1)[1])


def _wait(predicate, timeout: float, what: str, proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None:
            assert proc.poll() is None, f'run ended early: {log.read_text()[-3000:] if log else ""}'
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


def test_kill9_of_one_container_restarts_it_and_loses_no_accepted_event(tmp_path, ros_env, ros_domain):
    port = _free_port()
    url = f'http://127.0.0.1:{port}/events'
    graph = tmp_path / 'graph.yaml'
    graph.write_text(textwrap.dedent(GRAPH).replace('TMP', str(tmp_path)).replace('URL', url))
    report_path = tmp_path / 'report.json'
    err = tmp_path / 'stderr.txt'
    queue_db = tmp_path / 'queue.db'
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', '120',
           '--report-json', str(report_path)]
    with err.open('w') as out:
        run = processes.start(cmd, ros_env, stdout=subprocess.DEVNULL, stderr=out)
    backend = None
    listener = DiagnosticsListener(ros_domain, ('/diagnostics',))
    try:
        _wait(lambda: len(_accepted(queue_db)) >= 200, 40, 'events accepted by the queue', run, err)
        containers = _children(run.pid)
        assert set(containers) == {'front', 'back'}, containers
        before = _accepted(queue_db)  # the backend is down: all of these wait in the queue
        os.kill(containers['back'], signal.SIGKILL)
        t_kill = time.monotonic()
        last_before = max(map(_seq, before))

        # back with its node loaded and wired: new events are accepted again
        _wait(lambda: any(_seq(k) > last_before + 50 for k in _accepted(queue_db)), 30,
              'new events accepted after the restart', run, err)
        recovered = time.monotonic() - t_kill
        assert "container 'back' is back: 1 nodes reloaded and wired" in err.read_text()
        assert recovered < RECOVERY_LIMIT_SEC, f'took {recovered:.1f} s'
        # the supervisor's view on /diagnostics: the restarted container, WARN, counted
        listener.wait_for(
            lambda: [s for _, s in listener.statuses('supervisor: /sv/back')
                     if s['level'] == 1 and s['values'].get('restarts_total') == '1'],
            10, 'the restart on /diagnostics',
        )
        again = _children(run.pid)
        assert again['front'] == containers['front']  # the other container never stopped
        assert again['back'] != containers['back']

        backend = serve_in_thread(port=port, db=str(tmp_path / 'backend.db'))
        _wait(lambda: before <= backend.keys(), 60, 'every event accepted before the kill at the backend',
              run, err)
        delivered = backend.keys()
        after = {k for k in delivered if _seq(k) > last_before + 50}
        assert after, 'no event built after the restart reached the backend'
        # the only events lost are those sent while `back` was dead (not accepted by anyone); once the
        # restarted node is wired nothing more is lost: the numbers have exactly one gap
        seqs = sorted(set(map(_seq, _accepted(queue_db) | delivered)))
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
        assert seqs[0] == 0 and len(gaps) == 1, gaps
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 1  # packets were lost while the container was dead: failed
    finally:
        listener.close()
        processes.stop(run)
        if backend is not None:
            backend.stop()
    report = json.loads(report_path.read_text())
    assert report['status'] == 'degraded', report['errors']
    assert report['outcome'] == 'failed' and any(report['lost'].values()), report['lost']
    assert report['supervision'] == {'container_restarts': {'front': 0, 'back': 1}, 'restarts_total': 1}
    assert any(
        "container 'back' exited" in w and 'restarting it (restart 1)' in w for w in report['warnings']
    )
    print(json.dumps({'recovered_sec': round(recovered, 3), 'accepted_before_kill': len(before),
                      'lost_while_dead': gaps[0][1] - gaps[0][0] - 1}))


CRASH = """
    version: 2
    namespace: /sc
    nodes:
      - {id: src, plugin: SyntheticSource, container: front,
         config: {rate_hz: 200.0, count: 0, payload_bytes: 4}}
      - {id: crash, plugin: 'runtime_test_plugins:CrashOnSeq', container: back, config: {seq: 300}}
      - {id: out, kind: sink, plugin: JsonlSink, container: back,
         config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: crash, qos: {depth: 1000}, inbox: {max: 1000}}
      - {from: crash, to: out, inbox: {max: 1000}}
"""


def test_a_native_crash_takes_down_only_its_container_which_is_restarted(tmp_path, ros_env):
    plugins = Path(__file__).resolve().parents[1] / 'runtime_plugins'
    env = {**ros_env, 'PYTHONPATH': f'{plugins}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
           'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'runtime_test_plugins'}
    graph = tmp_path / 'graph.yaml'
    graph.write_text(textwrap.dedent(CRASH).replace('TMP', str(tmp_path)))
    err = tmp_path / 'stderr.txt'
    out = tmp_path / 'out.jsonl'
    report_path = tmp_path / 'report.json'
    with err.open('w') as stream:
        run = processes.start([sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph),
                               '--duration', '90', '--report-json', str(report_path)],
                              env, stdout=subprocess.DEVNULL, stderr=stream)

    def seqs() -> list[int]:
        if not out.exists():
            return []
        return [json.loads(line)['seq'] for line in out.read_text().splitlines() if line.endswith('}')]

    try:
        _wait(lambda: len(seqs()) > 50, 40, 'packets before the crash', run, err)
        front = _children(run.pid)['front']
        _wait(lambda: any(s > 400 for s in seqs()), 60, 'packets after the crash and restart', run, err)
        assert _children(run.pid)['front'] == front  # the other container never stopped
        text = err.read_text()
        assert "container 'back' exited unexpectedly with code -11; restarting it (restart 1)" in text, text
        assert "container 'back' is back: 2 nodes reloaded and wired" in text
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 1  # packets were lost while the container was dead: failed
    finally:
        processes.stop(run)
    assert 300 not in seqs() and set(range(300)) <= set(seqs())  # before the crash: all there
    report = json.loads(report_path.read_text())
    assert report['supervision']['container_restarts'] == {'front': 0, 'back': 1}
    assert report['status'] == 'degraded'
    assert report['outcome'] == 'failed' and any(report['lost'].values()), report['lost']
