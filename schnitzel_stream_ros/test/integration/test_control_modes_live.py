"""Modes switched by rules, live: a delivery outage makes the backlog grow; after N seconds of growth
the controller enters low-bandwidth mode (larger batches, fewer connections, snapshots smaller and
off), and when the backend is back and the backlog drains it leaves the mode and puts every knob back.

Real processes: `schnitzel-stream run` hosts the graph on the test's leased DDS domain; the
controller reads the forwarder's queue depth from /diagnostics and sets the knobs through the nodes'
ROS parameter services; a RosPeer here reads the parameters back as `ros2 param get` would. The
backend is the reference backend on 127.0.0.1 (a real HTTP server), started only after the mode was
entered: until then its port refuses connections, which is the outage.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from rcl_interfaces.srv import GetParameters

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = pytest.mark.integration

GRAPH = """
version: 2
namespace: /modes_live
nodes:
  - id: src
    plugin: SyntheticSource
    config: {rate_hz: 20.0, count: 0, kind: event, source_id: load}
  - id: cam
    plugin: OpenCvVideoFileSource
    config: {path: VIDEO, source_id: cam0, loop: true, realtime: true, fps: 3.0}
  - id: det
    plugin: OnnxDetectorNode
    config: {intra_op_threads: 1, __runtime__: {inbox_max: 1, inbox_overflow: drop_oldest}}
  - id: snap
    plugin: DetectionSnapshotNode
    config: {directory: SNAPS, max_side: 640, quality: 80}
  - id: trk
    plugin: IouTrackerNode
  - id: events
    plugin: ProtocolV02EventBuilderNode
    config: {site_id: S001}
  - id: deliver
    plugin: DurableForwarderSink
    config: {path: QUEUE, url: URL, batch_size: 16, concurrency: 4, breaker_open_sec: 0.5,
             retry_backoff_max_sec: 1.0}
  - id: ctl
    plugin: AutonomicController
    config:
      decision_log: LOG
      stale_after_sec: 10.0
      rate_window_sec: 3.0
      knobs:
        batch: {node: deliver, param: batch_size, min: 16, max: 512, integer: true}
        connections: {node: deliver, param: concurrency, min: 1, max: 4, integer: true}
        snapshot: {node: snap, param: snapshot, min: 0, max: 1, integer: true}
        snapshot_side: {node: snap, param: max_side, min: 160, max: 640, integer: true}
      rules:
        - id: backlog
          when: {metric: rate(deliver.queue_depth), above: 5.0, clear_below: 0.0, for_sec: 3}
          do: {mode: low_bandwidth}
      modes:
        low_bandwidth: {batch: 512, connections: 1, snapshot: 0, snapshot_side: 160}
edges:
  - {from: src, to: deliver}
  - {from: cam, to: det}
  - {from: det, from_port: frames, to: snap}
  - {from: snap, to: trk}
  - {from: trk, to: events}
  - {from: events, to: deliver}
"""


def _run(graph: Path, env: dict[str, str], report: Path, log: Path, duration: float) -> subprocess.Popen:
    with log.open('w') as out:
        return processes.start(
            [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', str(duration),
             '--report-json', str(report)], env, stdout=subprocess.DEVNULL, stderr=out)


def _stored_events(url: str) -> list[dict]:
    """Every event the backend stored, read over its HTTP API (GET /events, paged)."""
    out: list[dict] = []
    after = 0
    while len(out) < 100_000:
        with urllib.request.urlopen(f'{url}/events?limit=1000&after={after}', timeout=10) as answer:
            page = json.loads(answer.read())
        rows = page['events'] if isinstance(page, dict) else page
        if not rows:
            return out
        out += [json.loads(row['body']) for row in rows]
        after = rows[-1]['id']
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Reader(RosPeer):
    def value(self, node: str, name: str):
        response = self.call(GetParameters, f'{node}/get_parameters', GetParameters.Request(names=[name]))
        value = response.values[0]
        return value.integer_value if value.type == 2 else value.bool_value


def _decisions(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith('}')]


def _wait(predicate, timeout: float, what: str, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f'timed out ({timeout} s) waiting for {what}; decisions: {_decisions(log)[-8:]}')


def test_backlog_growth_switches_to_low_bandwidth_and_back(tmp_path, ros_env, ros_domain):
    video = asset(PEDESTRIAN_CLIP)
    if video is None:
        pytest.skip(missing_reason(PEDESTRIAN_CLIP))
    port = _free_port()
    decisions = tmp_path / 'decisions.jsonl'
    graph = tmp_path / 'graph.yaml'
    graph.write_text(textwrap.dedent(GRAPH).replace('QUEUE', str(tmp_path / 'queue.db'))
                     .replace('URL', f'http://127.0.0.1:{port}/events')
                     .replace('SNAPS', str(tmp_path / 'snaps')).replace('LOG', str(decisions))
                     .replace('VIDEO', str(video)))
    report, log = tmp_path / 'report.json', tmp_path / 'run.txt'
    reader = Reader(ros_domain, 'modes_reader')
    backend = None
    run = _run(graph, ros_env, report, log, 150)
    try:
        def entered() -> bool:
            return any(d['action'] == 'enter' and d['mode'] == 'low_bandwidth' for d in _decisions(decisions))

        _wait(entered, 90, 'low_bandwidth mode during the outage', decisions)
        enter = next(d for d in _decisions(decisions)
                     if d['action'] == 'enter' and d['mode'] == 'low_bandwidth')
        assert enter['rule'] == 'backlog' and enter['metrics']['rate(deliver.queue_depth)'] > 5.0
        _wait(lambda: reader.value('/modes_live/deliver', 'batch_size') == 512, 20, 'batch 512', decisions)
        assert reader.value('/modes_live/deliver', 'concurrency') == 1
        assert reader.value('/modes_live/snap', 'snapshot') is False
        assert reader.value('/modes_live/snap', 'max_side') == 160

        backend = serve_in_thread(port=port)  # the backend is back: the backlog drains

        def left() -> bool:
            return any(d['action'] == 'enter' and d['mode'] == 'normal' and d['t'] > enter['t']
                       for d in _decisions(decisions))

        _wait(left, 90, 'back to normal once the backlog drains', decisions)
        _wait(lambda: reader.value('/modes_live/deliver', 'batch_size') == 16, 20, 'batch restored',
              decisions)
        assert reader.value('/modes_live/deliver', 'concurrency') == 4
        assert reader.value('/modes_live/snap', 'snapshot') is True
        assert reader.value('/modes_live/snap', 'max_side') == 640
        # events accepted before the mode carry a snapshot, events during it none
        _wait(lambda: backend.stats()['unique'] > 200, 60, 'the backlog delivered', decisions)
        bodies = _stored_events(backend.url)
        snapshots = [b.get('snapshot_path') for b in bodies if b.get('camera_id') == 'cam0']
        assert any(snapshots) and None in snapshots, snapshots[:20]
        assert all(Path(p).name.endswith('.jpg') for p in snapshots if p)
    finally:
        reader.close()
        processes.stop(run, sig=signal.SIGTERM)
        if backend is not None:
            backend.stop()
    logged = _decisions(decisions)
    assert not [d for d in logged if d['action'] == 'failed'], logged
    sets = [(d['mode'], d['knob'], d['new']) for d in logged if d['action'] == 'set']
    assert sets[:4] == [('low_bandwidth', 'batch', 512.0), ('low_bandwidth', 'connections', 1.0),
                        ('low_bandwidth', 'snapshot', 0.0), ('low_bandwidth', 'snapshot_side', 160.0)]
    assert sets[4:8] == [('low_bandwidth', 'batch', 16.0), ('low_bandwidth', 'connections', 4.0),
                         ('low_bandwidth', 'snapshot', 1.0), ('low_bandwidth', 'snapshot_side', 640.0)]
