"""`schnitzel-stream run` live: finite runs across container processes, and SIGTERM mid-run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from schnitzel_stream_ros.observability.report import OUTCOME_EXIT_CODES, decide_status
from schnitzel_stream_ros.testing import processes

pytestmark = pytest.mark.integration


def _graph(tmp_path: Path, text: str) -> Path:
    path = tmp_path / 'graph.yaml'
    path.write_text(textwrap.dedent(text).replace('TMP', str(tmp_path)))
    return path


def _run_cmd(*args: object) -> list[str]:
    return [sys.executable, '-m', 'schnitzel_stream_ros', 'run', *map(str, args)]


CROSS = """
    version: 2
    namespace: /rt
    nodes:
      - {id: src, plugin: SyntheticSource, container: cam,
         config: {rate_hz: 0.0, count: 300, payload_bytes: 16}}
      - {id: ident, plugin: Identity, container: cam, qos: {out: {depth: DEPTH, reliability: RELIABILITY}}}
      - {id: sink, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink', container: store,
         config: {closed_marker: TMP/closed.txt}}
      - {id: log, kind: sink, plugin: JsonlSink, container: store,
         config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: ident, inbox: {max: 64, overflow: block}}   # unthrottled source: backpressure
      - {from: ident, to: sink, inbox: {max: 1000, overflow: block},
         qos: {depth: DEPTH, reliability: RELIABILITY}}
      - {from: ident, to: log, inbox: {max: 1000, overflow: block},
         qos: {depth: DEPTH, reliability: RELIABILITY}}
"""


@pytest.mark.parametrize('executor', ['events', 'single', 'multi'])
def test_finite_run_across_two_container_processes(tmp_path, plugin_env, executor):
    report_path = tmp_path / 'report.json'
    # history deep enough for an unthrottled burst of 300: KEEP_LAST 10 (the default) would overrun
    graph = _graph(tmp_path, CROSS.replace('DEPTH', '500').replace('RELIABILITY', 'reliable'))
    done = subprocess.run(
        _run_cmd(graph, '--report-json', report_path, '--executor', executor),
        env=plugin_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    m = report['metrics']
    assert (report['status'], report['stop_reason'], report['executor']) == ('ok', 'sources_done', executor)
    assert report['containers'] == ['cam', 'store']
    assert m['packets.source_emitted_total'] == 300
    assert m['node.sink.consumed'] == 300 and m['node.log.consumed'] == 300
    assert (tmp_path / 'closed.txt').read_text() == 'consumed=300'  # close() ran in the other process
    seqs = [json.loads(line)['seq'] for line in (tmp_path / 'out.jsonl').read_text().splitlines()]
    assert seqs == list(range(300))  # reliable, in order across the process boundary
    # src->ident stayed in the cam process (objects); ident->{sink,log} crossed once per packet
    assert m['transport.dds_published_total'] == 300
    assert m['transport.dds_received_total'] == 600  # two subscribing inputs in the store process
    assert m['edge.ident.out->sink.in.packets'] == 300 and m['edge.ident.out->sink.in.latency_p99_ms'] > 0
    assert m['edge.ident.out->sink.in.transport_lost_total'] == 0


def test_packets_lost_between_processes_are_counted_not_hidden(tmp_path, plugin_env):
    # best effort with a history of 1 under an unthrottled burst of 300 into a sink that takes 5 ms per
    # packet behind an inbox of 1: the reader's history overflows, so DDS must drop, and what arrives
    # beyond the inbox and its spill is dropped there (the DDS callback never waits for one inbox);
    # the report must count both, not hide them
    report_path = tmp_path / 'report.json'
    lossy = (
        CROSS.replace('DEPTH', '1')
        .replace('RELIABILITY', 'best_effort')
        .replace('closed_marker: TMP/closed.txt}', 'closed_marker: TMP/closed.txt, delay_sec: 0.005}')
        .replace('to: sink, inbox: {max: 1000,', 'to: sink, inbox: {max: 1,')
    )
    assert 'delay_sec: 0.005' in lossy and 'inbox: {max: 1, overflow: block}' in lossy
    graph = _graph(tmp_path, lossy)
    done = subprocess.run(
        _run_cmd(graph, '--report-json', report_path),
        env=plugin_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr[-3000:]  # packets lost: the run failed (exit 1)
    report = json.loads(report_path.read_text())
    m = report['metrics']
    published = m['transport.dds_published_total']
    assert published == 300
    lost = 0
    for dst in ('sink', 'log'):
        edge = f'edge.ident.out->{dst}.in'
        assert m[f'{edge}.packets'] + m[f'{edge}.transport_lost_total'] == published
        inbox_dropped = m.get(f'node.{dst}.inbox_dropped_total', 0)
        assert m[f'node.{dst}.consumed'] + inbox_dropped == m[f'{edge}.packets']
        lost += m[f'{edge}.transport_lost_total'] + inbox_dropped
    assert m['edge.ident.out->sink.in.transport_lost_total'] > 0
    assert m['packets.dropped_total'] == lost
    assert report['status'] == 'degraded' and report['outcome'] == 'failed'
    assert report['lost']['dropped'] == lost


ENDLESS = """
    version: 2
    nodes:
      - {id: src, plugin: 'runtime_test_plugins:EndlessSource', container: GROUP_A, config: {rate_hz: 200.0}}
      - {id: ident, plugin: Identity, container: GROUP_A}
      - {id: sink, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink', container: GROUP_B,
         config: {closed_marker: TMP/closed.txt}}
    edges:
      - {from: src, to: ident}
      - {from: ident, to: sink}
"""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f'/proc/{pid}/task').iterdir():
        text = (task / 'children').read_text().split()
        found.update(int(x) for x in text)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != 'Z'


@pytest.mark.parametrize('groups', [('main', 'main'), ('cam', 'store')], ids=['one-process', 'two-processes'])
def test_sigterm_mid_run_writes_a_truthful_report_and_leaves_no_process(tmp_path, plugin_env, groups):
    text = ENDLESS.replace('GROUP_A', groups[0]).replace('GROUP_B', groups[1])
    report_path = tmp_path / 'report.json'
    err_path = tmp_path / 'stderr.txt'
    with err_path.open('w') as err:
        proc = processes.start(
            _run_cmd(_graph(tmp_path, text), '--report-json', report_path),
            plugin_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while 'loaded /sink' not in err_path.read_text():
            assert proc.poll() is None, err_path.read_text()[-3000:]
            assert time.monotonic() < deadline, 'the run did not start'
            time.sleep(0.1)
        # packets flowing: the runner's progress line (a full line every 5 s off a terminal) counts
        # them, so the stop lands mid-stream however long the start gate took on a loaded machine
        while not re.search(r'consumed [1-9]', err_path.read_text()):
            assert proc.poll() is None, err_path.read_text()[-3000:]
            assert time.monotonic() < deadline + 30, 'no packet was consumed'
            time.sleep(0.1)
        children = _children(proc.pid)
        assert len(children) == (0 if groups[0] == groups[1] else 2)
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        processes.stop(proc)
    assert not [pid for pid in children if _alive(pid)], 'a container process outlived the runner'
    report = json.loads(report_path.read_text())
    m = report['metrics']
    # the exit code says what the report says: 0 ok, or 1 when packets in flight across processes at
    # the stop were dropped (counted, `lost`); never an error of the run itself
    assert code == OUTCOME_EXIT_CODES[report['outcome']], err_path.read_text()[-3000:]
    assert {kind for kind, n in report['lost'].items() if n} <= {'dropped'}, report['lost']
    assert report['stop_reason'] == 'signal SIGTERM'
    assert report['status'] == decide_status(m, report['errors'], report['warnings'])
    assert report['status'] in ('ok', 'degraded') and report['errors'] == []
    assert m['packets.source_emitted_total'] > 0
    # close() ran in the sink's process after the drain and saw exactly what the report counts
    assert (tmp_path / 'closed.txt').read_text() == f'consumed={m["node.sink.consumed"]}'
    assert m['node.sink.consumed'] + m['packets.dropped_total'] <= m['packets.source_emitted_total']


def test_a_node_that_cannot_set_up_fails_the_run_and_close_still_runs(tmp_path, plugin_env):
    report_path = tmp_path / 'report.json'
    graph = _graph(
        tmp_path,
        """
        version: 2
        nodes:
          - {id: src, plugin: StaticSource, config: {packets: [{payload: x}]}}
          - {id: dev, kind: sink, plugin: 'runtime_test_plugins:FailingSetup',
             config: {closed_marker: TMP/closed.txt}}
        edges:
          - {from: src, to: dev}
    """,
    )
    done = subprocess.run(
        _run_cmd(graph, '--report-json', report_path),
        env=plugin_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    report = json.loads(report_path.read_text())
    assert report['status'] == 'error'
    assert report['errors'] == ["node 'dev': setup() failed: RuntimeError: cannot open the device"]
    assert (tmp_path / 'closed.txt').read_text() == 'closed'
    assert report['metrics']['packets.source_emitted_total'] == 0  # nothing started


def test_a_container_process_that_dies_makes_the_run_an_error_without_supervision(tmp_path, plugin_env):
    # with supervision (the default) the container is restarted: test/integration/test_supervision.py
    text = ENDLESS.replace('GROUP_A', 'cam').replace('GROUP_B', 'store')
    report_path = tmp_path / 'report.json'
    err_path = tmp_path / 'stderr.txt'
    with err_path.open('w') as err:
        proc = processes.start(
            _run_cmd(_graph(tmp_path, text), '--report-json', report_path, '--container-restarts', '0'),
            plugin_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while 'loaded /sink' not in err_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)
        store = next(
            pid
            for pid in _children(proc.pid)
            if b'__node:=store' in Path(f'/proc/{pid}/cmdline').read_bytes()
        )
        os.kill(store, signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
    finally:
        processes.stop(proc)
    report = json.loads(report_path.read_text())
    assert report['status'] == 'error'
    assert "container 'store' exited unexpectedly with code -9" in report['errors']


def test_duration_and_max_events_end_a_live_run(tmp_path, plugin_env):
    text = ENDLESS.replace('GROUP_A', 'main').replace('GROUP_B', 'main')
    for args, reason in ((('--duration', '1.5'), 'duration'), (('--max-events', '40'), 'max_events')):
        report_path = tmp_path / f'{reason}.json'
        done = subprocess.run(
            _run_cmd(_graph(tmp_path, text), '--report-json', report_path, *args),
            env=plugin_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(report_path.read_text())
        assert report['stop_reason'] == reason and report['status'] == 'ok'
        emitted = report['metrics']['packets.source_emitted_total']
        assert emitted == 40 if reason == 'max_events' else emitted > 0
        assert report['metrics']['node.sink.consumed'] == emitted  # drained before the end
