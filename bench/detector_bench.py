#!/usr/bin/env python3
"""The vision lane as a site runs it, next to the same work in a plain loop, in the same run.

Every `lane_*` case is a real `schnitzel-stream run GRAPH` (a child process: graph validation, the
container, inboxes, node threads, metrics — everything a site has), and its frames per second are
read from the run's own `--timeline` (the steady part: between 10 % and 90 % of the frames, so
process start, model loading and the final drain are not counted). Every `bare_*` case is the same
work written by hand in one Python process, timed around the loop.

- detector, 1 and 2 cameras: OpenCvVideoFileSource (unthrottled, every frame) -> OnnxDetectorNode
  (the bundled person model, `--threads` intra-op threads) -> IouTrackerNode ->
  ProtocolV02EventBuilderNode -> JsonlSink, `block` inboxes (no frame is dropped: both sides do the
  same frames). Baseline: cv2.VideoCapture -> resize + BGR->RGB -> onnxruntime session with the same
  options (`session_options(threads)`); with 2 cameras one thread per camera sharing one session,
  as our detectors share theirs. Goal: lane >= 0.9 x bare.
- per-frame work: video source -> resize (to 320x240) -> normalise (float32, mean/std, CHW) -> count,
  nodes that do real work on every frame (bench plugins below), against decode + the same two steps
  in a plain loop. Goal: lane >= 0.9 x bare.
- info: `bare_inference_only`, the model alone on frames already in memory (what the hardware gives).

Cases run interleaved, `--rounds` times; each figure is the median of its rounds (the machine may be
shared: medians of interleaved rounds, not a best case). Prints one JSON object.

    python bench/detector_bench.py [--frames 300] [--threads 2] [--rounds 3] [--clip assets/vtest.avi]
                                   [--only detector1,detector2,work]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from schnitzel_stream_ros.nodes.compute.detector import session_options
from schnitzel_stream_ros.nodes.compute.models import resolve_model
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Plugin, Port, Role
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason

BENCH_MODULE = 'detector_bench'
WORK_SIZE = (320, 240)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
STEADY = (0.1, 0.9)  # the part of a run's frames whose rate counts
RUN_TIMEOUT_SEC = 600.0


# -- per-frame work: bench plugins (the run imports them as detector_bench:<Class>) ---------------
def resize(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, WORK_SIZE, interpolation=cv2.INTER_LINEAR)


def normalise(frame: np.ndarray) -> np.ndarray:
    """BGR uint8 HxWx3 -> RGB float32 3xHxW, ImageNet mean/std (a typical model input)."""
    rgb = frame[:, :, ::-1].astype(np.float32) * (1.0 / 255.0)
    return np.ascontiguousarray(((rgb - MEAN) / STD).transpose(2, 0, 1))


_FRAMES = frozenset({Kind.FRAME})


class ResizeNode(Plugin):
    """Resizes every frame (cv2.INTER_LINEAR)."""

    INPUTS = (Port('in', _FRAMES, PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', _FRAMES, PayloadProfile.INPROC_ANY),)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        return packet.derive(payload=resize(packet.payload))


class NormaliseNode(Plugin):
    """Turns every frame into a normalised float32 CHW tensor."""

    INPUTS = (Port('in', _FRAMES, PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', _FRAMES, PayloadProfile.INPROC_ANY),)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        return packet.derive(payload=normalise(packet.payload))


class CountSink(Plugin):
    """Takes every packet and keeps nothing (the node's `consumed` metric counts them)."""

    ROLE = Role.SINK
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = ()

    def process(self, packet: StreamPacket, port: str = 'in') -> None:
        return None


# -- graphs ---------------------------------------------------------------------------------------
def _camera(cam: str, clip: Path, frames: int) -> dict[str, Any]:
    return {'id': cam, 'plugin': 'OpenCvVideoFileSource',
            'config': {'path': str(clip), 'source_id': cam, 'max_frames': frames, 'realtime': False,
                       'loop': True}}


def _edge(a: str, b: str) -> dict[str, Any]:
    return {'from': a, 'to': b, 'inbox': {'max': 2, 'overflow': 'block'}}


def detector_graph(cameras: int, clip: Path, frames: int, threads: int, out: Path) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for i in range(cameras):
        cam, det, trk, ev = f'cam{i}', f'det{i}', f'trk{i}', f'events{i}'
        nodes += [
            _camera(cam, clip, frames),
            {'id': det, 'plugin': 'OnnxDetectorNode', 'config': {'intra_op_threads': threads}},
            {'id': trk, 'plugin': 'IouTrackerNode'},
            {'id': ev, 'plugin': 'ProtocolV02EventBuilderNode',
             'config': {'site_id': 'BENCH', 'camera_id': cam}},
        ]
        edges += [_edge(cam, det), _edge(det, trk), _edge(trk, ev), _edge(ev, 'sink')]
    nodes.append({'id': 'sink', 'plugin': 'JsonlSink', 'config': {'path': str(out / 'events.jsonl')}})
    return {'version': 2, 'nodes': nodes, 'edges': edges}


def work_graph(clip: Path, frames: int) -> dict[str, Any]:
    return {
        'version': 2,
        'nodes': [
            _camera('cam0', clip, frames),
            {'id': 'resize', 'plugin': f'{BENCH_MODULE}:ResizeNode'},
            {'id': 'normalise', 'plugin': f'{BENCH_MODULE}:NormaliseNode'},
            {'id': 'count', 'plugin': f'{BENCH_MODULE}:CountSink'},
        ],
        'edges': [_edge('cam0', 'resize'), _edge('resize', 'normalise'), _edge('normalise', 'count')],
    }


def steady_rate(timeline: Path, counted: list[str], total: int) -> float:
    """Frames/s of `counted` nodes (consumed) between STEADY fractions of `total`, from the timeline."""
    points = []
    for line in timeline.read_text().splitlines():
        row = json.loads(line)
        points.append((row['t'], sum(row['nodes'].get(n, {}).get('consumed', 0) for n in counted)))
    low, high = STEADY[0] * total, STEADY[1] * total
    start = next((p for p in points if p[1] >= low), None)
    end = next((p for p in reversed(points) if p[1] <= high), None)
    if start is None or end is None or end[0] <= start[0] or end[1] <= start[1]:
        raise RuntimeError(f'timeline too short for a steady rate ({len(points)} lines); use more --frames')
    return (end[1] - start[1]) / (end[0] - start[0])


def run_lane(
    graph: dict[str, Any], counted: list[str], total: int, env: dict[str, str], executor: str
) -> float:
    """One `schnitzel-stream run` of `graph`; the steady frames/s of the `counted` nodes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / 'graph.json'
        path.write_text(json.dumps(graph))
        timeline, report = folder / 'timeline.jsonl', folder / 'report.json'
        cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(path), '--quiet',
               '--executor', executor, '--timeline', str(timeline), '--report-json', str(report),
               '--diagnostics-period', '0']
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SEC)
        if done.returncode != 0:
            raise RuntimeError(f'run failed (exit {done.returncode}): {done.stderr[-800:]}')
        consumed = _consumed(json.loads(report.read_text()), counted)
        if consumed != total:
            raise RuntimeError(f'the lane processed {consumed} of {total} frames')
        return steady_rate(timeline, counted, total)


def _consumed(report: dict[str, Any], counted: list[str]) -> int:
    metrics = report['metrics']
    return sum(int(metrics.get(f'node.{n}.consumed', 0)) for n in counted)


# -- plain loops ----------------------------------------------------------------------------------
def read_frames(clip: Path, count: int, loop: bool = True) -> Iterator[np.ndarray]:
    """`count` frames of the clip, from its start again at its end (as the lane's source, loop: true)."""
    cap = cv2.VideoCapture(str(clip))
    try:
        done = 0
        while done < count:
            ok, frame = cap.read()
            if not ok:
                if not loop or done == 0:
                    return
                cap.release()
                cap = cv2.VideoCapture(str(clip))
                continue
            yield frame
            done += 1
    finally:
        cap.release()


def infer(session: ort.InferenceSession, name: str, frame: np.ndarray) -> bool:
    tensor = np.ascontiguousarray(cv2.resize(frame, (300, 300))[:, :, ::-1])[np.newaxis]
    _num, _boxes, scores, _classes = session.run(None, {name: tensor})
    return bool((scores[0] >= 0.5).any())


def bare_detector(session: ort.InferenceSession, clip: Path, frames: int, cameras: int) -> float:
    name = session.get_inputs()[0].name
    done = [0] * cameras

    def camera(i: int) -> None:
        for frame in read_frames(clip, frames):
            infer(session, name, frame)
            done[i] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=camera, args=(i,)) for i in range(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if sum(done) != frames * cameras:
        raise RuntimeError(f'bare loop processed {sum(done)} of {frames * cameras} frames')
    return sum(done) / elapsed


def bare_inference_only(session: ort.InferenceSession, frames: list[np.ndarray]) -> float:
    name = session.get_inputs()[0].name
    start = time.perf_counter()
    for frame in frames:
        infer(session, name, frame)
    return len(frames) / (time.perf_counter() - start)


def bare_work(clip: Path, frames: int) -> float:
    start = time.perf_counter()
    done = 0
    for frame in read_frames(clip, frames):
        normalise(resize(frame))
        done += 1
    return done / (time.perf_counter() - start)


# -- main -----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=300, help='frames per camera and detector run')
    parser.add_argument('--work-frames', type=int, default=2000, help='frames per per-frame-work run')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads (both sides)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--clip', default=None, help='video file (default: assets/vtest.avi)')
    parser.add_argument('--executor', default='events', help='executor of the run (events, single, multi)')
    parser.add_argument('--only', default='detector1,detector2,work')
    args = parser.parse_args()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    clip = Path(args.clip).resolve() if args.clip else asset(PEDESTRIAN_CLIP)
    if clip is None or not clip.is_file():
        print(json.dumps({'status': 'skipped', 'reason': missing_reason(PEDESTRIAN_CLIP)}))
        return 2
    only = {c.strip() for c in args.only.split(',') if c.strip()}

    from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

    lease = lease_domain()
    env = localhost_env(lease.domain_id)
    env['PYTHONPATH'] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get('PYTHONPATH', '')])
    env['SCHNITZEL_STREAM_PLUGIN_ALLOWLIST'] = BENCH_MODULE
    session = ort.InferenceSession(str(resolve_model(None, 'bench')), session_options(args.threads),
                                   providers=['CPUExecutionProvider'])
    in_memory = list(read_frames(clip, min(args.frames, 100)))
    bare_inference_only(session, in_memory[:10])  # warm-up: arenas, caches

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cases: dict[str, Any] = {}
        for cams in (1, 2):
            if f'detector{cams}' in only:
                graph = detector_graph(cams, clip, args.frames, args.threads, out)
                counted = [f'det{i}' for i in range(cams)]
                cases[f'lane_detector_{cams}cam'] = (
                    lambda g=graph, c=counted, n=cams: run_lane(g, c, args.frames * n, env, args.executor))
                cases[f'bare_detector_{cams}cam'] = (
                    lambda n=cams: bare_detector(session, clip, args.frames, n))
        if 'work' in only:
            cases['lane_resize_normalise'] = lambda: run_lane(
                work_graph(clip, args.work_frames), ['normalise'], args.work_frames, env, args.executor)
            cases['bare_resize_normalise'] = lambda: bare_work(clip, args.work_frames)
        cases['info_bare_inference_only'] = lambda: bare_inference_only(session, in_memory)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):  # interleaved: a busy machine slows every case alike
            for name, run in cases.items():
                samples[name].append(round(run(), 2))
    lease.release()

    fps = {name: round(statistics.median(v), 2) for name, v in samples.items()}
    ratios, per_round = {}, {}
    for lane in [n for n in fps if n.startswith('lane_')]:
        bare = lane.replace('lane_', 'bare_', 1)
        ratios[lane.removeprefix('lane_')] = round(fps[lane] / fps[bare], 3) if fps.get(bare) else None
        # lane and bare of one round ran back to back under the same load (for information)
        per_round[lane.removeprefix('lane_')] = [
            round(a / b, 3) for a, b in zip(samples[lane], samples.get(bare, []), strict=False) if b
        ]
    report = {
        'bench': 'detector_lane',
        'clip': clip.name,
        'frames_per_camera': args.frames,
        'frames_per_work_run': args.work_frames,
        'model': 'person_ssdlite_mobilenetv2.onnx',
        'intra_op_threads': args.threads,
        'executor': args.executor,
        'baseline': 'the same work in a plain Python loop (bare_*), same process kinds, same run',
        'fps_median': fps,
        'fps_rounds': samples,
        'ratio_lane_vs_bare': ratios,
        'info_ratio_per_round': per_round,
        'goal_ratio': 0.9,
        'goal_met': all(r is not None and r >= 0.9 for r in ratios.values()),
        'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                    'onnxruntime': ort.__version__, 'opencv': cv2.__version__,
                    'load_average_at_start': load_at_start,
                    'load_average_at_end': [round(x, 2) for x in os.getloadavg()]},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
