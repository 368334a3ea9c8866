"""Recording overhead and replay speed: a 640x480 camera lane with and without `schnitzel-stream record`.

What it answers: does recording a camera slow the graph down, and how fast does a recording come back?

- lane: OpenCvVideoFileSource (a 640x480 MJPG clip made from the pedestrian clip, looped, not
  paced: full rate) -> Identity over a blocking edge, one container, run by `schnitzel-stream run`.
  Lane fps is the source's steady rate from the run's timeline (first second skipped).
- two lanes: `full` (the clip decoded as fast as possible: the worst case, every frame the machine
  can make is also published and recorded) and `paced` (the clip at its 30 fps, a real camera).
- baseline: the lane with nobody subscribed to the camera topic (frames stay in-process).
- record_<compression>: the same lane while a `schnitzel-stream record` process records the camera
  topic: each frame is now also published over DDS and written by the recorder on the other core.
  Reported: lane fps, ratio to the baseline of the same round, CPU ms per frame of the graph
  process, and what the recorder wrote, dropped (its queue bound), lost in transport and its CPU.
- replay: on the last zstd recording, in packets/s:
  mcap_iter (baseline: mcap's own reader iterating the messages, decompression included),
  bounded_reader (our McapRecordingReader), replay_source (McapReplaySource at rate max: read + CDR
  deserialize + packet decode to numpy frames), replay_lane (`schnitzel-stream replay --rate max`
  through the same lane, steady rate from the timeline).
Variants run interleaved, `--rounds` times; the best round counts (shared machine). Prints JSON.

    python bench/record_bench.py [--seconds 6] [--rounds 2] [--compressions none,zstd]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import cv2
from mcap.reader import make_reader

from schnitzel_stream_ros.nodes.core.mcap_replay import McapReplaySource
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.recording.mcap_reader import McapRecordingReader
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

TOPIC = '/bench/cam/out'
PACKET_TYPE = 'schnitzel_stream_msgs/msg/StreamPacket'


def cli(*args: object) -> list[str]:
    return [sys.executable, '-m', 'schnitzel_stream_ros', *map(str, args)]


def make_clip(source: Path, out: Path, frames: int = 200) -> Path:
    """640x480 MJPG at 30 fps: decoding costs little, so the lane's rate shows the recording's cost."""
    cap = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*'MJPG'), 30.0, (640, 480))
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, (640, 480)))
    writer.release()
    cap.release()
    return out


def lane_graph(work: Path, source: str) -> Path:
    path = work / f'lane_{source}.yaml'
    if source in ('video', 'paced'):
        clip = work / 'clip640.avi'
        realtime = 'true' if source == 'paced' else 'false'
        cam = (f"{{id: cam, plugin: OpenCvVideoFileSource, "
               f"config: {{path: '{clip}', loop: true, realtime: {realtime}}}}}")
    else:
        cam = ("{id: cam, plugin: McapReplaySource, config: {path: '${oc.env:SCHNITZEL_STREAM_REPLAY_FILE}', "
               "rate: max, topics: ['" + TOPIC + "']}}")
    path.write_text(textwrap.dedent(f"""
        version: 2
        namespace: /bench
        nodes:
          - {cam}
          - {{id: ident, plugin: Identity}}
        edges:
          - {{from: cam, to: ident, inbox: {{max: 4, overflow: block}}}}
    """))
    return path


def steady_rate(timeline: Path, node: str = 'cam') -> tuple[float, int]:
    """(packets/s after the first second, packets produced in total) from a run's timeline."""
    rows = [json.loads(line) for line in timeline.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if node in r.get('nodes', {})]
    if len(rows) < 3:
        raise SystemExit(f'{timeline}: too few timeline lines for a rate ({len(rows)})')
    first, last = rows[1], rows[-1]
    produced = last['nodes'][node]['produced'] - first['nodes'][node]['produced']
    return produced / (last['t'] - first['t']), last['nodes'][node]['produced']


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_lane(graph: Path, env: dict, work: Path, name: str, seconds: float,
             *extra: str) -> tuple[float, float]:
    """(steady packets/s, CPU ms of the graph process per packet)."""
    timeline = work / f'{name}.timeline.jsonl'
    cpu0 = children_cpu()
    done = subprocess.run(cli(*extra, '--quiet', '--duration', seconds, '--timeline', timeline)
                          if extra and extra[0] == 'replay' else
                          cli('run', graph, '--quiet', '--duration', seconds, '--timeline', timeline),
                          env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu = children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f'{name}: run failed: {done.stderr[-2000:]}')
    rate, produced = steady_rate(timeline)
    return rate, 1000.0 * cpu / max(produced, 1)


def run_recorded(graph: Path, env: dict, work: Path, name: str, seconds: float,
                 compression: str) -> tuple[float, dict, Path]:
    output = work / f'{name}.mcap'
    stats_path = work / f'{name}.stats.json'
    log = work / f'{name}.record.log'
    command = cli('record', f'{TOPIC}:{PACKET_TYPE}', '-o', output, '--compression', compression,
                  '--stats-json', stats_path)
    recorder = processes.start(command, env, stdout=subprocess.DEVNULL, stderr=log.open('w'))
    try:
        deadline = time.monotonic() + 20
        while 'recording' not in log.read_text():
            if recorder.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f'{name}: recorder did not start: {log.read_text()}')
            time.sleep(0.05)
        fps, cpu_per_frame = run_lane(graph, env, work, name, seconds)
        time.sleep(0.5)
        cpu0 = children_cpu()
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
        recorder_cpu = children_cpu() - cpu0
    finally:
        processes.stop(recorder)
    stats = json.loads(stats_path.read_text())
    keys = ('written', 'dropped_queue_full', 'lost_in_transport', 'queue_peak_bytes')
    summary = {k: stats[k] for k in keys}
    summary['file_mb'] = round(output.stat().st_size / 1e6, 1)
    summary['recorder_cpu_ms_per_message'] = round(1000.0 * recorder_cpu / max(stats['received'], 1), 2)
    summary['lane_cpu_ms_per_frame'] = round(cpu_per_frame, 2)
    return fps, summary, output


def replay_speeds(recording: Path, env: dict, work: Path, seconds: float) -> dict[str, float]:
    speeds: dict[str, float] = {}
    t0 = time.perf_counter()
    with open(recording, 'rb') as stream:
        count = sum(1 for _ in make_reader(stream).iter_messages())
    speeds['mcap_iter'] = count / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    count = sum(1 for _ in McapRecordingReader(recording).messages())
    speeds['bounded_reader'] = count / (time.perf_counter() - t0)
    ctx = SimpleContext('cam', resolve_params(McapReplaySource, {'path': str(recording), 'rate': 'max'}))
    source = McapReplaySource(ctx)
    source.setup()
    t0 = time.perf_counter()
    produced = sum(1 for _ in source.produce())
    speeds['replay_source'] = produced / (time.perf_counter() - t0)
    graph = lane_graph(work, 'replay')
    speeds['replay_lane'], _ = run_lane(graph, env, work, 'replay_lane', seconds, 'replay', recording,
                                        '--graph', graph, '--rate', 'max')
    speeds['messages'] = count
    return speeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=6.0, help='length of each lane run')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--compressions', default='none,zstd', help='recorder chunk compressions to try')
    args = parser.parse_args()
    clip = asset(PEDESTRIAN_CLIP)
    if clip is None:
        print(json.dumps({'status': 'skipped', 'reason': missing_reason(PEDESTRIAN_CLIP)}))
        return 2
    compressions = [c for c in args.compressions.split(',') if c]
    with tempfile.TemporaryDirectory(prefix='record_bench_') as tmp, lease_domain() as lease:
        work = Path(tmp)
        env = localhost_env(lease.domain_id)
        make_clip(clip, work / 'clip640.avi')
        best: dict[str, float] = {}
        cpu: dict[str, float] = {}
        rounds: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        recorder: dict[str, dict] = {}
        last_recording: Path | None = None
        for index in range(args.rounds):
            for mode in ('full', 'paced'):
                graph = lane_graph(work, 'video' if mode == 'full' else 'paced')
                baseline, baseline_cpu = run_lane(graph, env, work, f'{mode}_baseline{index}', args.seconds)
                rounds.setdefault(f'{mode}_baseline', []).append(round(baseline, 1))
                if baseline >= best.get(f'{mode}_baseline', 0.0):
                    best[f'{mode}_baseline'], cpu[f'{mode}_baseline'] = baseline, baseline_cpu
                for compression in compressions:
                    name = f'{mode}_record_{compression}'
                    fps, summary, output = run_recorded(graph, env, work, f'{name}{index}', args.seconds,
                                                        compression)
                    rounds.setdefault(name, []).append(round(fps, 1))
                    ratios.setdefault(name, []).append(round(fps / baseline, 3))
                    if fps >= best.get(name, 0.0):
                        best[name], recorder[name] = fps, summary
                        cpu[name] = summary['lane_cpu_ms_per_frame']
                    if mode == 'full' and (compression == 'zstd' or last_recording is None):
                        if last_recording is not None and last_recording != output:
                            last_recording.unlink(missing_ok=True)
                        last_recording = output
                    else:
                        output.unlink(missing_ok=True)
        assert last_recording is not None
        replay = replay_speeds(last_recording, env, work, args.seconds)
        report = {
            'bench': 'record_replay',
            'frame_size': [640, 480],
            'seconds_per_run': args.seconds,
            'lanes': {'full': 'unpaced MJPG decode (as fast as the lane goes)', 'paced': '30 fps camera'},
            'lane_fps': {k: round(v, 1) for k, v in best.items()},
            'lane_fps_rounds': rounds,
            'fps_ratio_vs_baseline': {k: max(v) for k, v in ratios.items()},
            'fps_ratio_rounds': ratios,
            'lane_cpu_ms_per_frame': {k: round(v, 2) for k, v in cpu.items()},
            'recorder': recorder,
            'replay_recording': last_recording.name,
            'replay_packets_per_s': {k: round(v, 1) for k, v in replay.items() if k != 'messages'},
            'replay_messages': replay['messages'],
            'machine': {'cpus': os.cpu_count(), 'python': platform.python_version()},
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
