"""What checkpointing costs: packets/s with `config.state` off (the baseline) and on, in the same
run, plus checkpoint time and size. Two lanes, each named in the JSON:

- `site_live` (the figure the acceptance asks for): the site graph, config/site.yaml, live through
  `schnitzel-stream run` (its three container processes: cameras -> detectors over the frame lane,
  DDS to the events container) with the site's outside
  world made local as the site demo makes it (schnitzel_stream_ros.demo.site_demo.local_site):
  camera cam0 the pedestrian clip at 10 fps, camera cam1 the same clip over RTSP, the person
  detector, trackers, event builders, zones, dedup, fusion with a serial distance sensor on a pty,
  the durable forwarder to the reference backend, the robot topic and the archive. Checkpoints on:
  the graph gets `config.state` (a fresh file per run, `--checkpoint-sec`), so trk0, trk1, dedup
  and fusion checkpoint periodically, dedup write-ahead for every event it lets through, the
  trackers for every id block, fusion before every SENSOR_EVENT (docs/state.md). Runs of
  `--seconds` each alternate off/on (the order flips every round); the median of each is reported.
  Rates are read from the run's own `--timeline` from the first second both detectors work (model
  loading and the RTSP connect excluded) to the end; CPU is that of the run's process tree (runner +
  containers, from /proc) over the same steady part, as % of a core and per detector frame.
  Checkpoint time p50/p99/max and size come from
  the run report (node.<id>.state_*), the file size from disk after the run.
  The cameras run at their real rate, so frames/s mostly show that checkpointing does not hold a
  camera back; the cost itself shows in CPU per frame and in the checkpoint times.
- `tracking_policy_deterministic`: the tracking/policy part of the site lane (IoU tracker ->
  protocol-v0.2 event builder -> dedup -> sink, plus a per-track window) fed with the same pre-built
  detection frames (5 people drifting) through the deterministic engine (one thread, no DDS): the
  checkpoints' share of the lane's own work, with nothing else in the way.

A plain-rclpy baseline is not meaningful for either: the question is what checkpoints cost, so the
baseline is the same lane with checkpointing off. Prints one JSON object.

    python bench/state_bench.py [--lanes site,deterministic] [--seconds 25] [--rounds 3]
                                [--checkpoint-sec 5.0] [--frames 450] [--deterministic-checkpoint-sec 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from schnitzel_stream_ros.demo.site_demo import local_site, site_graph
from schnitzel_stream_ros.graph.state_config import DEFAULT_CHECKPOINT_SEC
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.observability.timeline import last_complete_line
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

CAMERAS = ('cam0', 'cam1')
RTSP_CLIP = 'vtest_h264.mp4'  # camera cam1, as the site demo serves it
DETECTORS = ('det0', 'det1')
STATEFUL = ('trk0', 'trk1', 'dedup', 'fusion')
CLK_TCK = os.sysconf('SC_CLK_TCK')
PAGE_BYTES = os.sysconf('SC_PAGE_SIZE')
RUN_GRACE_SEC = 120.0  # start-up, drain and report on top of --seconds


# -- the site lane, live ---------------------------------------------------------------------------
def site_graph_file(folder: Path, state: Path | None, checkpoint_sec: float,
                    edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """config/site.yaml as it is, with `config.state` added when `state` is given (JSON: same graph);
    `edit` may change the graph first (site_split_bench.py moves the cameras)."""
    graph = yaml.safe_load(site_graph().read_text())
    if edit is not None:
        edit(graph)
    config = dict(graph.get('config') or {})
    if state is not None:
        config['state'] = {'path': str(state), 'checkpoint_sec': checkpoint_sec}
    graph['config'] = config
    path = folder / 'site.json'
    path.write_text(json.dumps(graph))
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name ([] when the process is gone)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return []


def descendants(root: int) -> list[int]:
    """The processes below `root` now (its children, theirs, ...), from /proc."""
    parent = {int(e.name): int(f[1]) for e in Path('/proc').iterdir()
              if e.name.isdigit() and (f := _stat_fields(int(e.name)))}
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        children = [child for child, ppid in parent.items() if ppid == pid]
        found.extend(children)
        todo.extend(children)
    return found


def tree_cpu(root: int) -> float:
    """utime + stime (s) of `root` and all its descendants now (the runner and its containers)."""
    return sum((int(f[11]) + int(f[12])) / CLK_TCK
               for pid in (root, *descendants(root)) if (f := _stat_fields(pid)))


def tree_rss_mb(root: int) -> float:
    """Resident memory (MB) of the descendants of `root` now (a run's containers, not the runner)."""
    total = 0.0
    for pid in descendants(root):
        try:
            total += int(Path(f'/proc/{pid}/statm').read_text().split()[1]) * PAGE_BYTES / 1e6
        except (OSError, IndexError):
            continue  # gone meanwhile
    return total


def _detectors_work(row: dict[str, Any] | None) -> bool:
    return row is not None and all(row['nodes'].get(d, {}).get('consumed', 0) > 0 for d in DETECTORS)


def steady_window(timeline: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first timeline line where both detectors have processed frames, and the last line."""
    rows = [json.loads(line) for line in timeline.read_text().splitlines() if line.strip()]
    start = next((r for r in rows if _detectors_work(r)), None)
    if start is None or rows[-1]['t'] - start['t'] < 3.0:
        raise RuntimeError(f'{timeline}: both detectors worked for less than 3 s; use more --seconds')
    return start, rows[-1]


def _delta(start: dict[str, Any], end: dict[str, Any], node: str, what: str) -> float:
    return end['nodes'].get(node, {}).get(what, 0) - start['nodes'].get(node, {}).get(what, 0)


def run_site(folder: Path, env: dict[str, str], seconds: float, state: Path | None,
             checkpoint_sec: float, edit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One `schnitzel-stream run` of the site graph for `seconds`; its rates, CPU, memory and checkpoints.

    CPU of the steady part: the process tree is sampled once both detectors work (from the
    timeline) and again a second before the run's duration ends (the containers' RSS then too).
    """
    folder.mkdir(parents=True)
    graph = site_graph_file(folder, state, checkpoint_sec, edit)
    timeline, report_path = folder / 'timeline.jsonl', folder / 'report.json'
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', str(seconds),
           '--quiet', '--report-json', str(report_path), '--timeline', str(timeline)]
    cpu0 = _children_cpu()
    with (folder / 'stderr.txt').open('w') as err:
        runner = subprocess.Popen(cmd, env={**env, 'SITE_OUT': str(folder)}, stdout=subprocess.DEVNULL,
                                  stderr=err)
    launched = time.monotonic()
    samples: list[tuple[float, float]] = []  # (monotonic, CPU seconds of the tree): steady start, end
    rss_mb = 0.0  # the containers', at the end sample
    try:
        while runner.poll() is None:
            time.sleep(0.25)
            now = time.monotonic()
            if now - launched > seconds + RUN_GRACE_SEC:
                raise RuntimeError(f'site run did not end within {seconds + RUN_GRACE_SEC:.0f} s')
            if (not samples and _detectors_work(last_complete_line(timeline))) or (
                    len(samples) == 1 and now - launched >= seconds - 1.0):
                samples.append((time.monotonic(), tree_cpu(runner.pid)))
                if len(samples) == 2:
                    rss_mb = tree_rss_mb(runner.pid)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    cpu = _children_cpu() - cpu0  # the runner and its containers (reaped by the runner), start-up included
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if runner.returncode not in (0, 3) or report.get('status') not in ('ok', 'degraded'):
        raise RuntimeError(f'site run failed (exit {runner.returncode}, status {report.get("status")}): '
                           f'{(folder / "stderr.txt").read_text()[-1500:]}')
    if len(samples) < 2 or samples[1][0] - samples[0][0] < 3.0:
        raise RuntimeError('both detectors worked for less than 3 s of the run; use more --seconds')
    steady_cpu = (samples[1][1] - samples[0][1]) / (samples[1][0] - samples[0][0])  # cores in use
    start, end = steady_window(timeline)
    dt = end['t'] - start['t']
    metrics = report['metrics']
    detector_fps = sum(_delta(start, end, d, 'consumed') for d in DETECTORS) / dt
    figures: dict[str, Any] = {
        'status': report.get('status'),
        'steady_seconds': round(dt, 1),
        'camera_frames_per_sec': {c: round(_delta(start, end, c, 'produced') / dt, 2) for c in CAMERAS},
        'detector_frames_per_sec': round(detector_fps, 2),
        'events_per_sec': round(_delta(start, end, 'fusion', 'produced') / dt, 2),
        'zone_events_into_dedup_per_sec': round(_delta(start, end, 'dedup', 'consumed') / dt, 2),
        'packets_per_sec': round(sum(_delta(start, end, n, 'consumed') for n in end['nodes']) / dt, 1),
        'cpu_percent_of_a_core': round(100.0 * steady_cpu, 1),
        'cpu_ms_per_detector_frame': round(1e3 * steady_cpu / detector_fps, 2) if detector_fps else None,
        'cpu_seconds_whole_run': round(cpu, 2),
        'rss_mb_containers': round(rss_mb, 1),
        'events_accepted_by_queue': metrics.get('node.backend.accepted_total', 0),
    }
    if state is not None:
        figures['checkpoints'] = {
            node: {
                'written': metrics.get(f'node.{node}.state_checkpoints_total', 0),
                'bytes': metrics.get(f'node.{node}.state_bytes'),
                'p50_ms': metrics.get(f'node.{node}.state_checkpoint_p50_ms'),
                'p99_ms': metrics.get(f'node.{node}.state_checkpoint_p99_ms'),
                'max_ms': metrics.get(f'node.{node}.state_checkpoint_max_ms'),
                'errors': metrics.get(f'node.{node}.state_checkpoint_errors_total', 0),
            }
            for node in STATEFUL
        }
        figures['state_file_bytes'] = sum(
            p.stat().st_size for p in state.parent.glob(state.name + '*') if p.is_file())
    return figures


def _median(runs: list[dict[str, Any]], key: str, sub: str | None = None) -> float | None:
    values = [r[key][sub] if sub else r[key] for r in runs]
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        'camera_frames_per_sec': {c: _median(runs, 'camera_frames_per_sec', c) for c in CAMERAS},
        **{key: _median(runs, key) for key in ('detector_frames_per_sec', 'events_per_sec',
                                               'zone_events_into_dedup_per_sec', 'packets_per_sec',
                                               'cpu_percent_of_a_core', 'cpu_ms_per_detector_frame',
                                               'cpu_seconds_whole_run')},
    }


def _ratio(on: float | None, off: float | None) -> float | None:
    return round(on / off, 3) if on is not None and off else None


def site_lane(seconds: float, rounds: int, checkpoint_sec: float) -> dict[str, Any]:
    video, clip = asset(PEDESTRIAN_CLIP), asset(RTSP_CLIP)
    if video is None or clip is None:
        missing = PEDESTRIAN_CLIP if video is None else RTSP_CLIP
        return {'status': 'skipped', 'reason': missing_reason(missing)}
    runs: dict[str, list[dict[str, Any]]] = {'off': [], 'on': []}
    with tempfile.TemporaryDirectory() as tmp, lease_domain() as lease:
        out = Path(tmp)
        env = localhost_env(lease.domain_id)
        with local_site(out, env, video, clip):  # one outside world for every run
            for r in range(rounds):
                for mode in (('off', 'on') if r % 2 == 0 else ('on', 'off')):  # flip the order
                    folder = out / f'{mode}{r}'
                    state = folder / 'state.db' if mode == 'on' else None
                    runs[mode].append(run_site(folder, env, seconds, state, checkpoint_sec))
    off, on = _summary(runs['off']), _summary(runs['on'])
    checkpoints = {
        node: {
            'written_per_run': _median([r['checkpoints'] for r in runs['on']], node, 'written'),
            'bytes': _median([r['checkpoints'] for r in runs['on']], node, 'bytes'),
            'p50_ms': _median([r['checkpoints'] for r in runs['on']], node, 'p50_ms'),
            'p99_ms': _median([r['checkpoints'] for r in runs['on']], node, 'p99_ms'),
            'max_ms': max((r['checkpoints'][node]['max_ms'] or 0.0 for r in runs['on']), default=None),
        }
        for node in STATEFUL
    }
    return {
        'lane': 'site_live: config/site.yaml through `schnitzel-stream run` (containers camera -> vision '
                'over the frame lane -> events over DDS), cameras at their real rate, the local outside '
                'world of the site demo',
        'baseline': 'the same graph without config.state (checkpointing off), interleaved in the same run; '
                    'plain rclpy is not a meaningful baseline here',
        'seconds_per_run': seconds, 'rounds': rounds, 'checkpoint_sec': checkpoint_sec,
        'checkpointing_off': off, 'checkpointing_on': on,
        'ratio_on_off': {
            'camera_frames_per_sec': {
                c: _ratio(on['camera_frames_per_sec'][c], off['camera_frames_per_sec'][c]) for c in CAMERAS},
            **{k: _ratio(on[k], off[k]) for k in ('detector_frames_per_sec', 'events_per_sec',
                                                  'packets_per_sec', 'cpu_percent_of_a_core',
                                                  'cpu_ms_per_detector_frame')},
        },
        'checkpoints_median_of_runs': checkpoints,
        'state_file_bytes': _median(runs['on'], 'state_file_bytes'),
        'runs': runs,
    }


# -- the tracking/policy part, deterministic ------------------------------------------------------
GRAPH = """
version: 2
namespace: /bench
STATE
nodes:
  - {id: cam, plugin: StaticSource, config: {packets: PACKETS}}
  - {id: tracker, plugin: IouTrackerNode}
  - {id: events, plugin: ProtocolV02EventBuilderNode, config: {site_id: S1, camera_id: cam0}}
  - {id: dedup, plugin: DedupPolicyNode, config: {cooldown_sec: 5.0, clock: event_ts}}
  - {id: window, plugin: WindowAggregateNode,
     config: {size_sec: 10.0, key_field: track_id, aggregates: [count]}}
  - {id: out, kind: sink, plugin: JsonlSink, config: {path: OUT, body: payload}}
edges:
  - {from: cam, to: tracker}
  - {from: tracker, to: events}
  - {from: events, to: dedup}
  - {from: dedup, to: out}
  - {from: events, to: window}
"""


def frames(n: int) -> list[dict]:
    start = 1_767_225_600
    out = []
    for f in range(n):
        x = 0.05 * f
        dets = [{'bbox': {'x1': 100.0 * i + x, 'y1': 100.0, 'x2': 100.0 * i + 50 + x, 'y2': 200.0},
                 'confidence': 0.9, 'object_type': 'PERSON', 'class_id': 0} for i in range(5)]
        t = start + f * 0.1
        ts = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t)) + f'.{round((t % 1) * 1e6):06d}Z'
        out.append({'kind': 'detection', 'source_id': 'cam0', 'ts': ts, 'payload': dets})
    return out


def run_deterministic(tmp: Path, packets: list[dict], state: str, name: str) -> dict:
    text = textwrap.dedent(GRAPH).replace('STATE', state).replace('PACKETS', json.dumps(packets))
    text = text.replace('OUT', str(tmp / f'{name}.jsonl'))
    path = tmp / f'{name}.yaml'
    path.write_text(text)
    graph = compile_graph(path)
    t0 = time.perf_counter()
    outcome = DeterministicEngine(graph).run()
    took = time.perf_counter() - t0
    assert not outcome.errors, outcome.errors
    counters = {k: v for s in outcome.snapshots for n, node in s['nodes'].items()
                for k, v in ((f'{n}.{c}', x) for c, x in node['counters'].items()) if 'state' in k}
    return {'packets_per_sec': round(len(packets) / took, 1), 'seconds': round(took, 3), 'state': counters}


def deterministic_lane(n_frames: int, checkpoint_sec: float, rounds: int) -> dict[str, Any]:
    packets = frames(n_frames)
    offs, ons = [], []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for r in range(rounds):
            offs.append(run_deterministic(tmp, packets, '', f'off{r}'))
            db = tmp / f'state{r}.db'
            state = f'config:\n  state: {{path: {db}, checkpoint_sec: {checkpoint_sec}}}'
            ons.append(run_deterministic(tmp, packets, state, f'on{r}'))
        baseline = {**offs[-1], 'packets_per_sec': statistics.median(o['packets_per_sec'] for o in offs)}
        on = {**ons[-1], 'packets_per_sec': statistics.median(o['packets_per_sec'] for o in ons)}
        conn = sqlite3.connect(db)
        rows = conn.execute('SELECT node, bytes, seq, took_ms FROM checkpoints ORDER BY node').fetchall()
        conn.close()
    return {
        'lane': 'tracking_policy_deterministic: tracker -> events -> dedup -> sink + window, pre-built '
                'detections (5 people), deterministic engine (one thread, no DDS): the checkpoints\' '
                'share of the lane\'s own work',
        'baseline': 'the same graph without config.state, interleaved in the same run',
        'frames': n_frames, 'checkpoint_sec': checkpoint_sec, 'rounds': rounds,
        'checkpointing_off': baseline, 'checkpointing_on': on,
        'throughput_ratio_on_off': round(on['packets_per_sec'] / baseline['packets_per_sec'], 3),
        'checkpoints': [{'node': n, 'bytes': b, 'written': s, 'last_took_ms': round(t, 3)}
                        for n, b, s, t in rows],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lanes', default='site,deterministic', help='site, deterministic or both')
    parser.add_argument('--seconds', type=float, default=25.0, help='site lane: seconds per run')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--checkpoint-sec', type=float, default=DEFAULT_CHECKPOINT_SEC,
                        help='site lane: config.state.checkpoint_sec (default: the default of config.state)')
    parser.add_argument('--frames', type=int, default=450, help='deterministic lane: detection frames '
                        '(inline in the graph, which bounds them to about 450)')
    parser.add_argument('--deterministic-checkpoint-sec', type=float, default=0.2)
    args = parser.parse_args()
    lanes = {lane.strip() for lane in args.lanes.split(',') if lane.strip()}
    result: dict[str, Any] = {
        'bench': 'state_checkpointing',
        'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                    'load_average_at_start': [round(x, 2) for x in os.getloadavg()]},
        'lanes': {},
    }
    if 'site' in lanes:
        result['lanes']['site_live'] = site_lane(args.seconds, args.rounds, args.checkpoint_sec)
    if 'deterministic' in lanes:
        result['lanes']['tracking_policy_deterministic'] = deterministic_lane(
            args.frames, args.deterministic_checkpoint_sec, args.rounds)
    result['machine']['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
