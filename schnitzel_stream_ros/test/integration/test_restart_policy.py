"""Per-node restart policy (graph/restart.py, runtime/node_restart.py) in a live run.

A plugin that raises on every 10th packet sits between a numbered source and a sink. With
`on-failure` the graph keeps running and every failure costs exactly its own packet: counts of
errors, restarts and delivered packets match; with `max_restarts` it is isolated after that many
restarts; with `never` at its first error. The run report says degraded, never ok.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PLUGINS_DIR = Path(__file__).resolve().parents[1] / 'runtime_plugins'
COUNT = 500

GRAPH = """
    version: 2
    namespace: /rp
    nodes:
      - {id: src, plugin: SyntheticSource, config: {rate_hz: 0.0, count: COUNT, payload_bytes: 4}}
      - {id: flaky, plugin: 'runtime_test_plugins:FailEveryNth', config: {n: 10}, restart: RESTART}
      - {id: sink, kind: sink, plugin: JsonlSink, config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: flaky, inbox: {max: 64, overflow: block}}
      - {from: flaky, to: sink, inbox: {max: 64, overflow: block}}
"""


def _run(tmp_path: Path, ros_env: dict, restart: str) -> tuple[dict, list[int]]:
    graph = tmp_path / 'graph.yaml'
    graph.write_text(
        textwrap.dedent(GRAPH)
        .replace('COUNT', str(COUNT))
        .replace('RESTART', restart)
        .replace('TMP', str(tmp_path))
    )
    env = {
        **ros_env,
        'PYTHONPATH': f'{PLUGINS_DIR}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
        'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'runtime_test_plugins',
    }
    report = tmp_path / 'report.json'
    done = subprocess.run(
        [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--report-json', str(report),
         '--quiet', '--duration', '60'],
        env=env, capture_output=True, text=True, timeout=90,
    )
    # every failure cost its packet: data lost, so the run's outcome is failed (exit 1)
    assert done.returncode == 1, done.stderr[-3000:]
    out = tmp_path / 'out.jsonl'
    seqs = [json.loads(line)['seq'] for line in out.read_text().splitlines()] if out.exists() else []
    return json.loads(report.read_text()), seqs


def test_on_failure_restarts_the_plugin_and_the_graph_keeps_running(tmp_path, ros_env):
    report, seqs = _run(tmp_path, ros_env, '{policy: on-failure, backoff_sec: 0.001}')
    m = report['metrics']
    assert report['stop_reason'] == 'sources_done'
    assert report['status'] == 'degraded' and report['outcome'] == 'failed'
    assert report['lost']['node_errors'] == COUNT // 10
    assert seqs == [s for s in range(COUNT) if s % 10 != 9]  # each failure cost its own packet only
    assert m['node.flaky.errors_total'] == COUNT // 10
    assert m['node.flaky.restarts_total'] == COUNT // 10
    assert m['node.flaky.consumed'] == COUNT
    assert m['node.sink.consumed'] == COUNT - COUNT // 10
    assert m.get('node.flaky.isolated', 0) == 0


def test_max_restarts_isolates_the_node_and_the_rest_of_the_graph_goes_on(tmp_path, ros_env):
    report, seqs = _run(tmp_path, ros_env, '{policy: on-failure, max_restarts: 3, backoff_sec: 0.001}')
    m = report['metrics']
    assert report['stop_reason'] == 'sources_done'  # the source ran to its end
    assert report['status'] == 'degraded'
    assert seqs == [s for s in range(39) if s % 10 != 9]  # 3 restarts, isolated at the 4th error (seq 39)
    assert m['node.flaky.restarts_total'] == 3
    assert m['node.flaky.errors_total'] == 4
    assert m['node.flaky.isolated'] == 1
    assert m['node.flaky.isolated_dropped_total'] == COUNT - 40
    assert m['node.src.produced'] == COUNT


def test_never_isolates_the_node_at_its_first_error(tmp_path, ros_env):
    report, seqs = _run(tmp_path, ros_env, '{policy: never}')
    m = report['metrics']
    assert seqs == list(range(9))
    assert m['node.flaky.errors_total'] == 1
    assert m.get('node.flaky.restarts_total', 0) == 0
    assert m['node.flaky.isolated'] == 1
    assert m['node.flaky.isolated_dropped_total'] == COUNT - 10
    assert report['status'] == 'degraded'
