"""One full `block` inbox on a cross-process edge must not stall the container's other DDS inputs
(issue 11, item 9). Real processes: `schnitzel-stream run` with a publishing and a subscribing
container; the subscriber hosts a slow sink (0.2 s per packet, inbox of 2, `block`) and a fast
one. Before the fix the DDS callback thread waited for room in the slow inbox, and the fast sink
got its packets at the slow sink's pace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PLUGINS_DIR = Path(__file__).resolve().parents[1] / 'runtime_plugins'
COUNT = 100

GRAPH = """
    version: 2
    namespace: /nb
    nodes:
      - {id: slow_src, plugin: SyntheticSource, container: pub, config: {rate_hz: 50.0, count: COUNT}}
      - {id: fast_src, plugin: SyntheticSource, container: pub, config: {rate_hz: 50.0, count: COUNT}}
      - {id: slow, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink', container: sub,
         config: {closed_marker: TMP/closed.txt, delay_sec: 0.2}}
      - {id: fast, kind: sink, plugin: 'runtime_test_plugins:ArrivalLagSink', container: sub,
         config: {path: TMP/fast_lag.txt}}
    edges:
      - {from: slow_src, to: slow, inbox: {max: 2, overflow: block}, qos: {depth: 500, reliability: QOS}}
      - {from: fast_src, to: fast, inbox: {max: 500, overflow: block}, qos: {depth: 500, reliability: QOS}}
"""


def test_a_full_block_inbox_does_not_stall_other_cross_process_inputs(tmp_path, ros_env):
    graph = tmp_path / 'graph.yaml'
    graph.write_text(
        textwrap.dedent(GRAPH)
        .replace('TMP', str(tmp_path))
        .replace('COUNT', str(COUNT))
        .replace('QOS', 'reliable')
    )
    env = {
        **ros_env,
        'PYTHONPATH': f'{PLUGINS_DIR}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
        'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'runtime_test_plugins',
    }
    report_path = tmp_path / 'report.json'
    # the sources publish for 2 s; the run ends when they are done and every node is idle
    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'schnitzel_stream_ros',
            'run',
            graph,
            '--duration',
            '6',
            '--report-json',
            report_path,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    lags = sorted(float(x) for x in (tmp_path / 'fast_lag.txt').read_text().split())
    assert len(lags) == COUNT
    # emission -> the fast sink: milliseconds when its input flows; seconds when the DDS callback
    # thread waits on the slow inbox (0.2 s per packet) -- a stall, not a speed
    assert lags[int(COUNT * 0.9)] < 1.0, f'90th percentile lag {lags[int(COUNT * 0.9)]:.2f} s'
    report = json.loads(report_path.read_text())
    m = report['metrics']
    # exit 1 exactly when packets were lost (the slow input's drops), 0 when none were
    assert done.returncode == (1 if any(report['lost'].values()) else 0), report['lost']
    # the slow input: what did not fit its inbox and spill is dropped and counted, never hidden
    slow = 'edge.slow_src.out->slow.in'
    assert m[f'{slow}.packets'] == COUNT
    assert m['node.slow.consumed'] + m[f'{slow}.dropped_total'] == COUNT
    assert (tmp_path / 'closed.txt').exists()  # the slow plugin was closed
