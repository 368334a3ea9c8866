#!/usr/bin/env python3
"""Frames between hosts: JPEG 640x480 frames per second over one veth link, ours vs plain rclpy.

Two network namespaces joined by a veth link (schnitzel_stream_ros/testing/netns.py; needs
CAP_NET_ADMIN, i.e. root), DDS discovery on that link only. Per round, both lanes run one after
the other over the same link, each for `--seconds` of steady state:

- ours: a graph split by `host:` — host tx: BenchFrameSource (as fast as the graph takes frames) ->
  FrameLinkSender (JPEG, quality `--quality`, numbered, reliable depth 10) — host rx:
  FrameLinkReceiver (its container decodes the JPEG back to a frame, feedback to the sender), both
  run by `schnitzel-stream run --host`; frames/s from the rx run's timeline (steady window only).
- plain rclpy: one rclpy publisher in tx (cv2.imencode of the same frames at the same quality,
  sensor_msgs/CompressedImage, reliable depth 10) -> one rclpy subscriber in rx (cv2.imdecode).

Both encode every frame on the sending host and decode it on the receiving host, so the difference
is what our runtime adds (packet codec, inboxes, executors, link accounting). Prints one JSON object
with both lanes per round, their medians, the ratio, and /proc/loadavg before and after.

Usage: python bench/cross_host_bench.py [--rounds N] [--seconds S] [--quality Q]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset
from schnitzel_stream_ros.testing.dds import lease_domain
from schnitzel_stream_ros.testing.netns import HostLab, NetnsUnavailable
from schnitzel_stream_ros.testing.processes import stop

BENCH = Path(__file__).resolve().parent
STARTUP_SEC = 60.0  # the longest a lane may take to deliver its first frame on a loaded machine
WARMUP_SEC = 3.0

GRAPH = """version: 2
namespace: /bench
nodes:
  - id: src
    plugin: 'cross_host_plugins:BenchFrameSource'
    container: tx
    host: tx
    config: {{clip: '{clip}', rate_hz: {rate}}}
  - id: link
    plugin: FrameLinkSender
    container: tx
    config: {{feedback_topic: /bench/feedback, jpeg_quality: {quality}, link_timeout_sec: 5.0}}
  - id: frames_in
    plugin: FrameLinkReceiver
    container: rx
    host: rx
    config: {{feedback_topic: /bench/feedback}}
edges:
  - {{from: src, to: link, inbox: {{max: 1, overflow: block}}}}
  - from: link
    to: frames_in
    qos: {{reliability: reliable, depth: 10}}
    inbox: {{max: 10, overflow: block}}
"""

PLAIN_TX = """
import sys, time
import cv2, numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
sys.path.insert(0, sys.argv[1])
from cross_host_plugins import WIDTH, bench_frame
frame, quality, rate = bench_frame(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rclpy.init()
node = rclpy.create_node('plain_tx')
qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
pub = node.create_publisher(CompressedImage, '/plain/frames', qos)
i, start = 0, time.monotonic()
while rclpy.ok():
    time.sleep(max(0.0, start + i / rate - time.monotonic()))
    ok, data = cv2.imencode('.jpg', np.roll(frame, i % WIDTH, axis=1), [cv2.IMWRITE_JPEG_QUALITY, quality])
    msg = CompressedImage(format='bgr8; jpeg compressed bgr8')
    msg.data = data.tobytes()
    pub.publish(msg)
    i += 1
"""

PLAIN_RX = """
import json, sys, time
import cv2, numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
seconds, warmup, startup = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node('plain_rx')
times = []
def got(msg):
    cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    times.append(time.monotonic())
qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
node.create_subscription(CompressedImage, '/plain/frames', got, qos)
deadline = time.monotonic() + startup
while not times and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
end = time.monotonic() + warmup + seconds
while times and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
window = [t for t in times if t >= times[0] + warmup]
fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
print(json.dumps({'frames_per_sec': round(fps, 2), 'frames': len(window)}))
"""


def _ours(lab: HostLab, workdir: Path, seconds: float, quality: int, rate: float) -> dict[str, float]:
    clip = asset(PEDESTRIAN_CLIP)
    graph = workdir / 'cross_host_bench.yaml'
    graph.write_text(GRAPH.format(clip=clip or '', quality=quality, rate=rate), encoding='utf-8')
    extra = {
        'PYTHONPATH': f'{BENCH}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
        'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'cross_host_plugins',
    }
    timeline = workdir / 'rx_timeline.jsonl'
    timeline.unlink(missing_ok=True)
    ss = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--quiet']
    rx = lab.run(
        'rx',
        [*ss, '--host', 'rx', '--timeline', str(timeline)],
        env={**lab.env('rx'), **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tx = lab.run(
        'tx',
        [*ss, '--host', 'tx'],
        env={**lab.env('tx'), **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + STARTUP_SEC
        first = None
        while time.monotonic() < deadline and first is None:
            time.sleep(0.5)
            first = next((p for p in _points(timeline) if p[1] > 0), None)
        if first is None:
            return {'frames_per_sec': 0.0, 'frames': 0, 'error': 'no frame arrived'}
        time.sleep(WARMUP_SEC + seconds + 1.5)
        points = [p for p in _points(timeline) if p[0] >= first[0] + WARMUP_SEC]
    finally:
        stop(tx)
        stop(rx)
    if len(points) < 2:
        return {'frames_per_sec': 0.0, 'frames': 0, 'error': 'timeline too short'}
    frames = points[-1][1] - points[0][1]
    return {'frames_per_sec': round(frames / (points[-1][0] - points[0][0]), 2), 'frames': frames}


def _points(timeline: Path) -> list[tuple[float, int]]:
    """(t, frames consumed by the receiving node) per timeline line."""
    try:
        lines = timeline.read_text().splitlines()
    except FileNotFoundError:
        return []
    points = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the line being written
        points.append((float(row['t']), int(row['nodes'].get('frames_in', {}).get('consumed', 0))))
    return points


def _plain(lab: HostLab, seconds: float, quality: int, rate: float) -> dict[str, float]:
    clip = str(asset(PEDESTRIAN_CLIP) or '')
    rx = lab.run(
        'rx',
        [sys.executable, '-c', PLAIN_RX, str(seconds), str(WARMUP_SEC), str(STARTUP_SEC)],
        stdout=subprocess.PIPE,
        text=True,
    )
    tx = lab.run(
        'tx',
        [sys.executable, '-c', PLAIN_TX, str(BENCH), clip, str(quality), str(rate)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out, _err = rx.communicate(timeout=STARTUP_SEC + WARMUP_SEC + seconds + 30)
    finally:
        stop(tx)
        stop(rx)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {'frames_per_sec': 0.0, 'frames': 0, 'error': 'plain receiver printed nothing'}


def _loadavg() -> str:
    return Path('/proc/loadavg').read_text().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=2, help='rounds of both lanes (default 2)')
    parser.add_argument(
        '--seconds', type=float, default=10.0, help='steady-state seconds per lane (default 10)'
    )
    parser.add_argument('--quality', type=int, default=80, help='JPEG quality (default 80)')
    parser.add_argument('--rate', type=float, default=120.0,
                        help='frames offered per second by both senders (default 120)')
    args = parser.parse_args()
    loadavg_before = _loadavg()
    with lease_domain() as lease, tempfile.TemporaryDirectory(prefix='cross-host-bench-') as tmp:
        try:
            lab = HostLab(('tx', 'rx'), lease.domain_id, Path(tmp) / 'lab')
        except NetnsUnavailable as exc:
            print(json.dumps({'skipped': f'network namespaces cannot be made here: {exc}'}))
            return 0
        rounds = []
        try:
            for _ in range(args.rounds):
                rounds.append(
                    {
                        'ours': _ours(lab, Path(tmp), args.seconds, args.quality, args.rate),
                        'plain_rclpy': _plain(lab, args.seconds, args.quality, args.rate),
                    }
                )
        finally:
            lab.close()
    ours = statistics.median(r['ours']['frames_per_sec'] for r in rounds)
    plain = statistics.median(r['plain_rclpy']['frames_per_sec'] for r in rounds)
    print(
        json.dumps(
            {
                'bench': 'cross_host_frames',
                'frame': '640x480 bgr8 JPEG',
                'quality': args.quality,
                'link': 'veth pair through a bridge, two network namespaces, DDS on the veth only',
                'seconds': args.seconds,
        'offered_frames_per_sec': args.rate,
                'rounds': rounds,
                'median_frames_per_sec': {'ours': ours, 'plain_rclpy': plain},
                'ratio_ours_to_plain': round(ours / plain, 3) if plain else None,
                'loadavg_before': loadavg_before,
                'loadavg_after': _loadavg(),
                'cpus': os.cpu_count(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
