"""Window totals survive a kill -9: exactly the totals of an uninterrupted run on the same input.

`front` emits 1,500 numbered readings (runtime_test_plugins:PacedReadings, 100/s, event time 10x
the wall clock) into a durable queue and, for the test's reference, into a JSONL archive. `back`
reads the queue (SqliteQueueSource, follow), aggregates per zone over 5 s tumbling windows
(count, sum) with `write_ahead: true`, and acks each row (SqliteQueueAckSink on the window's `done`
port) only once the checkpoint holding it is durable; `tail` writes the results. Mid-run `back` is
killed with SIGKILL and restarted by the supervisor. Expected: for every window, the last result
the sink saw has exactly the count and sum that the same node computes in this process over the
archive without any interruption — no reading lost (unacked rows come again), none counted twice
(redelivered rows the checkpoint already holds are skipped), no result lost in flight (fired
windows are emitted again after the restore, same idempotency key).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_supervision import _children, _wait

from schnitzel_stream_ros.nodes.windows.window_aggregate import WindowAggregateNode
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.testing import processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

COUNT = 1500
WINDOW = {'size_sec': 5.0, 'allowed_lateness_sec': 60.0, 'key_field': 'zone', 'value_field': 'v',
          'aggregates': ['count', 'sum']}

GRAPH = """
    version: 2
    namespace: /ws
    config:
      state: {path: TMP/state.db, checkpoint_sec: 1.0}
    nodes:
      - {id: readings, plugin: 'runtime_test_plugins:PacedReadings', container: front,
         config: {rate_hz: 100.0, count: COUNT}}
      - {id: enqueue, kind: sink, plugin: SqliteQueueSink, container: front, config: {path: TMP/in.db}}
      - {id: archive, kind: sink, plugin: JsonlSink, container: front, config: {path: TMP/archive.jsonl}}
      - {id: dequeue, plugin: SqliteQueueSource, container: back,
         config: {path: TMP/in.db, follow: true, lease_sec: 1.0, poll_sec: 0.05, limit: 50}}
      - {id: window, plugin: WindowAggregateNode, container: back,
         config: {size_sec: 5.0, allowed_lateness_sec: 60.0, key_field: zone, value_field: v,
                  aggregates: [count, sum], write_ahead: true}}
      - {id: ack, kind: sink, plugin: SqliteQueueAckSink, container: back, config: {path: TMP/in.db}}
      - {id: results, kind: sink, plugin: JsonlSink, container: tail,
         config: {path: TMP/results.jsonl, body: payload}}
    edges:
      - {from: readings, to: enqueue, inbox: {max: 5000}}
      - {from: readings, to: archive, inbox: {max: 5000}}
      - {from: dequeue, to: window, inbox: {max: 5000}}
      - {from: window, from_port: done, to: ack, inbox: {max: 5000}}
      - {from: window, to: results, inbox: {max: 5000}}
"""


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def _final(results: list[dict]) -> dict[tuple[str, str], tuple[int, float]]:
    final: dict[tuple[str, str], tuple[int, float]] = {}
    for r in results:
        final[(r['key'], r['start'])] = (r['count'], r['sum'])
    return final


def _uninterrupted(archive: list[dict]) -> dict[tuple[str, str], tuple[int, float]]:
    ctx = SimpleContext(node_id='window', params=resolve_params(WindowAggregateNode, WINDOW))
    node = WindowAggregateNode(ctx)
    node.setup()
    out = []
    for record in archive:
        packet = StreamPacket(record['packet_id'], record['ts'], record['kind'], record['source_id'],
                              record['payload'])
        out += [p.payload for p in node.process(packet) or []]
    return _final(out)


def test_kill9_mid_run_leaves_window_totals_equal_to_an_uninterrupted_run(tmp_path, ros_env):
    plugins = Path(__file__).resolve().parents[1] / 'runtime_plugins'
    env = {**ros_env, 'PYTHONPATH': f'{plugins}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
           'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'runtime_test_plugins'}
    graph = tmp_path / 'graph.yaml'
    graph.write_text(textwrap.dedent(GRAPH).replace('TMP', str(tmp_path)).replace('COUNT', str(COUNT)))
    err = tmp_path / 'stderr.txt'
    results = tmp_path / 'results.jsonl'
    archive = tmp_path / 'archive.jsonl'
    with err.open('w') as stream:
        run = processes.start([sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph),
                               '--duration', '150'], env, stdout=subprocess.DEVNULL, stderr=stream)
    try:
        _wait(lambda: len(_lines(results)) >= 10, 60, 'the first window results', run, err)
        os.kill(_children(run.pid)['back'], signal.SIGKILL)
        killed_at = len(_lines(archive))
        _wait(lambda: "container 'back' is back" in err.read_text(), 30, 'the restart', run, err)
        _wait(lambda: len(_lines(archive)) == COUNT, 60, 'every reading emitted', run, err)
        expected = _uninterrupted(_lines(archive))
        _wait(lambda: _final(_lines(results)).keys() >= expected.keys(), 60, 'every window fired', run, err)
        time.sleep(1.0)  # a late revision would show now
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
    finally:
        processes.stop(run)
    got = _final(_lines(results))
    assert 0 < killed_at < COUNT, 'the kill did not land mid-run'
    assert {k: got[k] for k in expected} == expected
    assert len(expected) >= 2 * (COUNT // 50 - 1)  # a window holds 50 readings; the last one is still open
    replayed = sum(1 for r in _lines(results) if r.get('replayed'))
    print(json.dumps({'windows': len(expected), 'readings_when_killed': killed_at,
                      'results_seen': len(_lines(results)), 'replayed_after_restore': replayed}))
