"""Frames between two real container processes on the shared-memory frame lane (shm_lane/).

Every test runs `schnitzel-stream run` of a two-container graph: ChecksummedFrameSource in container
`camera` -> FrameCheckSink in container `detector`, the edge on the lane (the default for frames
across containers on one host). The source writes each frame's CRC32 into its meta, the sink
recomputes it over the frame it got — a numpy view of the shared memory — and writes one line per
frame: a torn or overwritten frame would not match. Nothing here asserts a rate or a latency.
The source writes its frames into `Plugin.frame_buffer` — on the lane a shared-memory sample it was
lent, sent without a copy — unless a test says `frame_buffer: false` (its own arrays, copied in).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.frame_lane_plugins import frame_crc, frame_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SOURCE = 'schnitzel_stream_ros.testing.frame_lane_plugins:ChecksummedFrameSource'
SINK = 'schnitzel_stream_ros.testing.frame_lane_plugins:FrameCheckSink'


def _graph(tmp: Path, *, width: int, height: int, rate: float, count: int, sink: str = '',
           edge: str = '', source: str = '', more_nodes: str = '', more_edges: str = '') -> Path:
    path = tmp / 'graph.yaml'
    path.write_text(textwrap.dedent(f"""
        version: 2
        namespace: /fl
        nodes:
          - {{id: cam, plugin: '{SOURCE}', container: camera,
             config: {{width: {width}, height: {height}, rate_hz: {rate}, count: {count}{source}}}}}
          - {{id: check, plugin: '{SINK}', container: detector,
             config: {{path: '{tmp / "checks.jsonl"}'{sink}}}}}
        edges:
          - {{from: cam, to: check{edge}}}
    """).replace('\nedges:\n', f'\n{more_nodes}edges:\n') + more_edges)
    return path


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            out.append(json.loads(line))
    return out


def _iox2_files() -> set[str]:
    return {name for name in os.listdir('/dev/shm') if name.startswith('iox2_')}


def _run(graph: Path, env: dict, tmp: Path, duration: float) -> subprocess.CompletedProcess:
    report = tmp / 'report.json'
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', str(duration),
           '--report-json', str(report)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 120,
                          start_new_session=True)
    assert report.exists(), done.stderr[-3000:]
    return done


def _metrics(tmp: Path) -> dict:
    data = json.loads((tmp / 'report.json').read_text())
    return data.get('metrics', data)


def _wait(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None:
            assert proc.poll() is None, 'run ended early'
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.1)


@pytest.mark.parametrize(('width', 'height', 'count', 'lent'),
                         [(640, 480, 120, True), (3840, 2160, 30, True), (640, 480, 120, False)],
                         ids=['640x480x3', '3840x2160x3', '640x480x3-copied-in'])
def test_every_frame_crosses_containers_intact(tmp_path, ros_env, width, height, count, lent):
    before = _iox2_files()
    graph = _graph(tmp_path, width=width, height=height, rate=15.0, count=count,
                   edge=', transport: {kind: shm, pool: 8}', source=f', frame_buffer: {str(lent).lower()}')
    done = _run(graph, ros_env, tmp_path, 120)
    lines = _lines(tmp_path / 'checks.jsonl')
    metrics = _metrics(tmp_path)
    edge = 'edge.cam.out->check.in'
    assert lines, done.stderr[-3000:]
    assert all(r['ok'] for r in lines), [r['seq'] for r in lines if not r['ok']][:10]
    assert all(r['shape'] == [height, width, 3] for r in lines)
    # zero copy: the frames the plugin got are views of the shared memory; a frame is copied out only
    # when the consumer already held its lease limit (pool - 1 frames waiting in its inbox), counted
    copied = metrics['transport.lane_copied_total']
    assert sum(1 for r in lines if not r['shared']) == copied
    assert copied < len(lines)
    seqs = [r['seq'] for r in lines]
    assert seqs == sorted(set(seqs)), 'frames out of order or twice'
    # every frame is accounted for: delivered, or counted as lost by the lane (none expected at 15/s,
    # but a starved reader thread on a loaded machine may lose some to keep-freshest: then counted)
    assert metrics['transport.lane_received_total'] == len(lines)
    assert len(lines) + metrics[f'{edge}.transport_lost_total'] == count
    assert len(lines) >= count // 2
    assert metrics['transport.dds_published_total'] == 0  # nothing went through DDS
    # written in place by the source (no copy at all), or copied in once by the lane
    assert metrics['lane./fl/cam/out.zero_copy_total'] == (count if lent else 0)
    assert metrics['lane./fl/cam/out.written_total'] == count
    # nothing left behind in /dev/shm once both containers are gone
    _wait(lambda: _iox2_files() <= before, 20, 'the lane to leave /dev/shm')


def test_lent_samples_unsent_go_back_and_local_consumers_get_their_own_copy(tmp_path, ros_env):
    """The source fills every third lent sample and drops it unsent: were those leaked, the writer
    would run out of samples to lend after MAX_OPEN_LOANS and copy every frame from then on. A slow
    consumer in the source's own container holds frames far longer than the lane keeps a sample:
    it must still see each frame intact (it gets a private copy, the lane reuses the sample)."""
    before = _iox2_files()
    count = 120
    local = tmp_path / 'local.jsonl'
    graph = _graph(tmp_path, width=640, height=480, rate=30.0, count=count, source=', drop_every: 3',
                   more_nodes=f"  - {{id: near, plugin: '{SINK}', container: camera,\n"
                              f"     config: {{path: '{local}', delay_sec: 0.1}}}}\n",
                   more_edges='  - {from: cam, to: near, inbox: {max: 64, overflow: block}}\n')
    done = _run(graph, ros_env, tmp_path, 120)
    lines, near = _lines(tmp_path / 'checks.jsonl'), _lines(local)
    metrics = _metrics(tmp_path)
    assert lines and near, done.stderr[-3000:]
    assert all(r['ok'] for r in lines), [r['seq'] for r in lines if not r['ok']][:10]
    assert all(r['ok'] for r in near), [r['seq'] for r in near if not r['ok']][:10]
    assert len(near) == count and not any(r['shared'] for r in near)  # the local copy is its own memory
    dropped = metrics['node.cam.buffers_dropped_total']
    assert dropped == count // 2 - 1  # every third buffer: 59 of the 179 filled for 120 frames
    assert metrics['lane./fl/cam/out.loans_returned_total'] == dropped  # every unsent loan came back
    assert metrics['lane./fl/cam/out.loans_open'] == 0
    # no leak ran the writer dry: every frame on the lane went out of a lent sample, none copied in
    assert metrics['lane./fl/cam/out.zero_copy_total'] == metrics['lane./fl/cam/out.written_total'] == count
    _wait(lambda: _iox2_files() <= before, 20, 'the lane to leave /dev/shm')


def test_slow_consumer_drops_are_counted_and_the_producer_is_not_held(tmp_path, ros_env):
    count = 200
    graph = _graph(tmp_path, width=640, height=480, rate=100.0, count=count,
                   sink=', delay_sec: 0.05', edge=', inbox: {max: 2, overflow: drop_oldest}')
    done = _run(graph, ros_env, tmp_path, 120)
    lines = _lines(tmp_path / 'checks.jsonl')
    metrics = _metrics(tmp_path)
    edge = 'edge.cam.out->check.in'
    assert lines, done.stderr[-3000:]
    assert all(r['ok'] for r in lines)
    assert metrics['node.cam.produced'] == count  # the source emitted everything
    assert len(lines) < count  # the consumer could not take them all (20/s against 100/s)
    # each frame not processed is counted: shed by the inbox (keep-freshest) or lost on the lane
    lost = metrics[f'{edge}.transport_lost_total']
    shed = metrics[f'{edge}.dropped_total'] - lost
    assert metrics['node.check.consumed'] == len(lines)
    assert len(lines) + shed + lost == count, (len(lines), shed, lost)
    # keep-freshest: the newest frames win, so the very last frame reached the slow consumer
    assert lines[-1]['seq'] == count - 1


def _containers(runner_pid: int) -> dict[str, int]:
    out = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            cmdline = (entry / 'cmdline').read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(')', 1)[1].split()[1]) != runner_pid:
            continue
        for part in cmdline.split(b'\0'):
            if part.startswith(b'__node:='):
                out[part.split(b'=', 1)[1].decode()] = int(entry.name)
    return out


def test_kill9_of_either_side_leaks_nothing_and_the_lane_recovers(tmp_path, ros_env):
    before = _iox2_files()
    graph = _graph(tmp_path, width=640, height=480, rate=30.0, count=0)
    checks = tmp_path / 'checks.jsonl'
    err = tmp_path / 'stderr.txt'
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', '240',
           '--report-json', str(tmp_path / 'report.json')]
    with err.open('w') as out:
        run = processes.start(cmd, ros_env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        _wait(lambda: len(_lines(checks)) >= 30, 90, 'frames on the lane', run)
        steady = _iox2_files()
        containers = _containers(run.pid)
        assert set(containers) == {'camera', 'detector'}, containers

        # the consumer dies: it is restarted, reads the lane again, and /dev/shm is back to steady
        n = len(_lines(checks))
        os.kill(containers['detector'], signal.SIGKILL)
        _wait(lambda: _containers(run.pid).get('detector') not in (None, containers['detector']), 60,
              'the detector container restarted', run)
        _wait(lambda: len(_lines(checks)) >= n + 30, 90, 'frames after the consumer restart', run)
        assert _containers(run.pid)['camera'] == containers['camera']  # the producer went on
        # a new process has segments of new names: as many as before the kill, the dead one's are gone
        _wait(lambda: len(_iox2_files()) <= len(steady), 30, 'the dead consumer swept from /dev/shm', run)

        # the producer dies: a new incarnation starts its frames at seq 0 again; the consumer goes on
        seen = _lines(checks)
        n, last = len(seen), seen[-1]['seq']
        consumer = _containers(run.pid)['detector']
        os.kill(containers['camera'], signal.SIGKILL)

        def restarted_frames() -> bool:  # the new producer counts from 0: below the last seq seen
            new = _lines(checks)[n:]
            return len(new) >= 30 and any(r['seq'] < last for r in new)

        _wait(restarted_frames, 90, 'frames of the restarted producer', run)
        assert _containers(run.pid)['detector'] == consumer  # the consumer survived
        _wait(lambda: len(_iox2_files()) <= len(steady), 30, 'the dead producer swept from /dev/shm', run)
        assert all(r['ok'] for r in _lines(checks)), 'a frame did not match its checksum'
    finally:
        processes.stop(run, signal.SIGINT, timeout=30)
    _wait(lambda: _iox2_files() <= before, 20, 'the lane to leave /dev/shm')


def test_ros_image_subscriber_and_topic_echo_on_a_lane_edge(tmp_path, ros_env, ros_domain):
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
    from schnitzel_stream_ros.testing.ros_peer import RosPeer

    base = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    known = {frame_crc(frame_for(base, k)): k for k in range(256)}  # every frame the source can send
    graph = _graph(tmp_path, width=640, height=480, rate=20.0, count=0)
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', '240']
    run = processes.start(cmd, ros_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer = RosPeer(ros_domain, 'image_listener')
    images: list[Image] = []
    packets: list[StreamPacketMsg] = []
    lock = threading.Lock()
    try:
        _wait(lambda: len(_lines(tmp_path / 'checks.jsonl')) >= 10, 90, 'frames on the lane', run)
        with lock:
            peer.node.create_subscription(Image, '/fl/cam/out/image', lambda m: images.append(m),
                                          QoSProfile(depth=10))
        _wait(lambda: len(images) >= 10, 60, 'sensor_msgs/Image on /fl/cam/out/image', run)
        for msg in list(images):
            assert (msg.height, msg.width, msg.encoding, msg.step) == (480, 640, 'bgr8', 640 * 3)
            assert zlib.crc32(bytes(msg.data)) in known, 'an Image that is no frame the source sent'
        # the edge's own topic: a StreamPacket subscriber (as `ros2 topic echo/hz`) gets the packets
        peer.node.create_subscription(StreamPacketMsg, '/fl/cam/out', lambda m: packets.append(m),
                                      QoSProfile(depth=10))
        _wait(lambda: len(packets) >= 5, 60, 'StreamPackets on /fl/cam/out', run)
        assert all(p.kind == 'frame' for p in packets)
        # the lane consumer kept reading frames, every one intact, from shared memory
        lines = _lines(tmp_path / 'checks.jsonl')
        assert all(r['ok'] for r in lines) and any(r['shared'] for r in lines)
    finally:
        peer.close()
        processes.stop(run, signal.SIGINT, timeout=30)
