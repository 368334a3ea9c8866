"""The controller against fixed manual policies, on the site's camera lane, under a changing load.

The lane is config/site.yaml's cam0 lane: the pedestrian clip as a 10 frames/s camera -> the
bundled ONNX person detector (one thread) -> IoU tracker -> protocol-v0.2 events -> LatencyProbe ->
JSON events on a ROS topic. The detector's inbox holds `--detector-inbox` frames (drop_oldest beyond):
default 4, a lane that buffers a few frames to analyse them all rather than only the freshest. The
site keeps 1 (keep-freshest): there the inbox itself bounds the latency, and a lower camera rate
does not lower the p99 (measured with `--detector-inbox 1`; docs/autonomic.md).

Each run is its own process on its own leased DDS domain and follows one load profile, the same
for every variant:

    warm-up (not measured) | light | heavy: --burners busy processes (default 2 per core) | light again

Variants (each round runs all of them, in an order rotated per round, so each sees the same
machine within minutes of the others):
- manual: today's settings, every frame the camera gives (10/s), nothing adapts;
- manual_low: a fixed conservative rate (`--low-fps`, default 3/s) that a careful operator would set
  to survive the heavy phase;
- controller: the lane plus an AutonomicController reading /diagnostics (the detector's inbox depth,
  the probe's event latency p50/p99) and setting the camera's `fps` knob within [2, 10]: frames
  piling up or latency near the target -> fewer; latency well under it for 8 s -> more.

The goal (printed with the result): end-to-end event latency p99 <= target in every phase, and as
many frames processed by the detector as that allows. A fixed rate fails one way or the other:
10/s is too slow in the heavy phase (latency over target, frames lost at the detector's inbox);
3/s meets the target but wastes the light phases (fewer frames processed than the machine allows).
The controller should meet the target in the heavy phase and process about as many frames as
`manual` in the light ones (it returns to 10/s).

The target is `--target-p99-ms` (default 500 ms), or, when 0, `--target-factor` x the p99 of a short
calibration run of `manual` without burners made at the start (one stall in that run spoils it).

Measured from outside, as a robot would see it: every event's latency (arrival on the JSON topic
minus the frame's capture time `ts`), per phase; frames processed by the detector, lost at its inbox
(dropped or shed), and produced by the camera (from /diagnostics), per phase. Medians over rounds
per variant and phase, and per round the controller's comparison with the two manual runs of that
same round. One JSON object on stdout, with /proc/loadavg before and after each run, and the
controller's decisions.

    python bench/controller_bench.py [--rounds 3] [--seconds 40] [--burners N] [--target-p99-ms 500]
        [--detector-inbox 4] [--variants manual,manual_low,controller]   # ~15 min with the defaults

Figures depend on the machine and its load; nothing here is asserted.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.packet import parse_ts  # noqa: E402
from schnitzel_stream_ros.testing import processes  # noqa: E402
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env  # noqa: E402

NAMESPACE = '/bench'
EVENTS_TOPIC = f'{NAMESPACE}/ai_events'
BURNER = 'import time\nend = time.monotonic() + {sec}\nwhile time.monotonic() < end:\n    pass\n'
FULL_FPS = 10.0
MEASURED = ('light', 'heavy', 'light_after')
DIAGNOSTIC_KEYS = {('det0', 'inbox_shed_total'), ('det0', 'inbox_dropped_total'), ('det0', 'frames_total'),
                   ('cam0', 'produced'), ('det0', 'inference_ms')}


def loadavg() -> str:
    try:
        return ' '.join(Path('/proc/loadavg').read_text().split()[:3])
    except OSError:
        return ''


def controller_config(out: Path, target_ms: float) -> dict:
    """The rules: latency near the target or frames shed -> fewer frames; latency well under it for a
    while -> more, up to the camera's full rate."""
    return {
        'decision_log': str(out / 'decisions.jsonl'),
        'stale_after_sec': 6.0,
        'rate_window_sec': 4.0,
        'rollback': {'after_sec': 6.0, 'worse_by': 0.5},
        'knobs': {'cam_fps': {'node': 'cam0', 'param': 'fps', 'min': 2, 'max': FULL_FPS, 'max_step': 4,
                              'cooldown_sec': 2.5}},
        'rules': [
            {'id': 'backlog', 'do': {'knob': 'cam_fps', 'by': -4}, 'target': 'probe.age_p50_ms',
             'when': {'metric': 'det0.inbox_depth', 'above': 1.5, 'clear_below': 0.5, 'for_sec': 1.5}},
            {'id': 'slow', 'do': {'knob': 'cam_fps', 'by': -2},
             'when': {'metric': 'probe.age_p50_ms', 'above': 0.5 * target_ms,
                      'clear_below': 0.3 * target_ms, 'for_sec': 2}},
            {'id': 'recovered', 'do': {'knob': 'cam_fps', 'by': 2},
             'when': {'metric': 'probe.age_p99_ms', 'below': 0.6 * target_ms,
                      'clear_above': 0.8 * target_ms, 'for_sec': 8}},
        ],
    }


def lane(video: str, out: Path, variant: str, args: argparse.Namespace, target_ms: float) -> dict:
    fps = args.low_fps if variant == 'manual_low' else FULL_FPS
    nodes = [
        {'id': 'cam0', 'plugin': 'OpenCvVideoFileSource',
         'config': {'path': video, 'source_id': 'cam0', 'loop': True, 'realtime': True, 'fps': fps}},
        {'id': 'det0', 'plugin': 'OnnxDetectorNode',
         'config': {'intra_op_threads': 1,
                    '__runtime__': {'inbox_max': args.detector_inbox, 'inbox_overflow': 'drop_oldest'}}},
        {'id': 'trk0', 'plugin': 'IouTrackerNode'},
        {'id': 'events0', 'plugin': 'ProtocolV02EventBuilderNode',
         'config': {'site_id': 'S001', 'camera_id': 'cam0'}},
        {'id': 'probe', 'plugin': 'LatencyProbe', 'config': {'window_sec': 3.0, 'every_sec': 0.5}},
        {'id': 'robot', 'plugin': 'RobotEventSink', 'topics': {'legacy_json': EVENTS_TOPIC},
         'config': {'typed': False, 'legacy_json': True}},
    ]
    edges = [{'from': 'cam0', 'to': 'det0'}, {'from': 'det0', 'to': 'trk0'},
             {'from': 'trk0', 'to': 'events0'}, {'from': 'events0', 'to': 'probe'},
             {'from': 'probe', 'to': 'robot'}]
    if variant == 'controller':
        nodes.append({'id': 'ctl', 'plugin': 'AutonomicController',
                      'config': controller_config(out, target_ms)})
    return {'version': 2, 'namespace': NAMESPACE, 'nodes': nodes, 'edges': edges}


class Listener:
    """Events and /diagnostics of one run, with arrival times (an rclpy node in this process)."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from std_msgs.msg import String

        from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

        self.latencies: list[tuple[float, float]] = []  # (arrival, latency s)
        self.samples: list[tuple[float, dict[str, float]]] = []  # (arrival, det0/cam0 values)
        self._lock = threading.Lock()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node('controller_bench', context=self.context)
        self.node.create_subscription(String, EVENTS_TOPIC, self._event, 1000)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._diagnostics, 100)
        executor = make_executor('single', self.context)
        executor.add_node(self.node)
        self.spinner = Spinner(executor, self.context, 'bench-listener').start()

    def _event(self, msg) -> None:
        now = time.time()
        try:
            ts = parse_ts(json.loads(msg.data)['ts']).timestamp()
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.latencies.append((now, now - ts))

    def _diagnostics(self, msg) -> None:
        now = time.time()
        values: dict[str, float] = {}
        for status in msg.status:
            node = status.name.split(': ', 1)[1] if ': ' in status.name else ''
            for item in status.values:
                if (node, item.key) in DIAGNOSTIC_KEYS:
                    with contextlib.suppress(ValueError):  # empty in the first sample
                        values[f'{node}.{item.key}'] = float(item.value)
        if values:
            with self._lock:
                self.samples.append((now, values))

    def close(self) -> None:
        import rclpy

        self.spinner.stop()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _counter_delta(samples, key: str, start: float, end: float) -> float | None:
    inside = [v[key] for t, v in samples if start <= t <= end and key in v]
    return inside[-1] - inside[0] if len(inside) >= 2 else None


def _lost(samples, start: float, end: float) -> float | None:
    """Frames the detector's inbox threw away: dropped beyond its depth, or shed (keep-freshest)."""
    parts = [_counter_delta(samples, f'det0.{key}', start, end)
             for key in ('inbox_dropped_total', 'inbox_shed_total')]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def phase(listener: Listener, start: float, end: float) -> dict:
    latencies = [lat for t, lat in listener.latencies if start <= t <= end]
    inference = [v['det0.inference_ms'] for t, v in listener.samples
                 if start <= t <= end and 'det0.inference_ms' in v]
    return {
        'seconds': round(end - start, 1),
        'events': len(latencies),
        'latency_p50_ms': _p(latencies, 0.5),
        'latency_p99_ms': _p(latencies, 0.99),
        'latency_p95_ms': _p(latencies, 0.95),
        'frames_processed': _counter_delta(listener.samples, 'det0.frames_total', start, end),
        'frames_lost_at_detector': _lost(listener.samples, start, end),
        'frames_from_camera': _counter_delta(listener.samples, 'cam0.produced', start, end),
        'inference_ms_median': round(statistics.median(inference), 1) if inference else None,
    }


def profile(args: argparse.Namespace) -> list[tuple[str, float, int]]:
    """(phase, seconds, burners) in order."""
    return [('warmup', args.warmup_sec, 0), ('light', args.seconds, 0),
            ('heavy', args.seconds, args.burners), ('light_after', args.seconds, 0)]


def run_variant(variant: str, video: str, args: argparse.Namespace, target_ms: float,
                phases: list[tuple[str, float, int]]) -> dict:
    with tempfile.TemporaryDirectory() as tmp, lease_domain() as lease:
        out = Path(tmp)
        graph = out / 'lane.yaml'
        graph.write_text(yaml.safe_dump(lane(video, out, variant, args, target_ms), sort_keys=False))
        env = localhost_env(lease.domain_id)
        listener = Listener(lease.domain_id)
        total = sum(seconds for _, seconds, _ in phases)
        report = out / 'report.json'
        load_before = loadavg()
        run = processes.start(processes.python_cmd('-m', 'schnitzel_stream_ros', 'run', str(graph), '--quiet',
                                                   '--duration', str(total), '--report-json', str(report)),
                              env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        burners: list[subprocess.Popen] = []
        marks: list[tuple[str, float, float]] = []
        try:
            t0 = time.time()
            start = t0
            for name, seconds, count in phases:
                burners = [processes.start(processes.python_cmd('-c', BURNER.format(sec=seconds)), env)
                           for _ in range(count)]
                time.sleep(max(0.0, start + seconds - time.time()))
                for burner in burners:
                    processes.stop(burner)
                burners = []
                marks.append((name, start, start + seconds))
                start += seconds
            run.wait(timeout=120)
        finally:
            for burner in burners:
                processes.stop(burner)
            stderr = run.stderr.read().decode(errors='replace') if run.stderr else ''
            processes.stop(run)
            listener.close()
        result = {'exit_code': run.returncode, 'loadavg_before': load_before, 'loadavg_after': loadavg()}
        result |= {name: phase(listener, begin, end) for name, begin, end in marks if name != 'warmup'}
        if report.exists():
            metrics = json.loads(report.read_text())['metrics']
            result['frames_skipped_at_camera_total'] = metrics.get('node.cam0.frames_skipped_total', 0)
            result['knob_cam_fps_at_end'] = metrics.get('node.ctl.knob.cam_fps')
        if run.returncode != 0:
            result['stderr_tail'] = stderr[-2000:]
        decisions = out / 'decisions.jsonl'
        if decisions.exists():
            records = [json.loads(line) for line in decisions.read_text().splitlines()]
            phase_of = {round(d['t'] - t0, 1): next((n for n, b, e in marks if b <= d['t'] < e), 'end')
                        for d in records}
            result['decisions'] = [
                {'t': round(d['t'] - t0, 1), 'phase': phase_of[round(d['t'] - t0, 1)], 'rule': d['rule'],
                 'action': d['action'], 'knob': d.get('knob'), 'old': d.get('old'), 'new': d.get('new'),
                 'guardrail': d.get('guardrail'), 'metrics': d.get('metrics')} for d in records]
            result['knob_changes_per_phase'] = dict(collections.Counter(
                r['phase'] for r in result['decisions'] if r['action'] == 'set'))

        return result


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def summarize(rounds: list[dict], variants: list[str], target_ms: float) -> dict:
    keys = ('latency_p99_ms', 'latency_p95_ms', 'latency_p50_ms', 'frames_processed',
            'frames_lost_at_detector', 'events')
    medians = {v: {ph: {key: _median([r[v][ph][key] for r in rounds if ph in r[v]]) for key in keys}
                   for ph in MEASURED} for v in variants}
    per_round = []
    for r in rounds:
        if any(ph not in r[v] for v in variants for ph in MEASURED):
            continue  # a run that did not start: nothing to compare in this round
        ctl, manual = r['controller'], r['manual']
        light = {v: sum((r[v][ph]['frames_processed'] or 0) for ph in ('light', 'light_after'))
                 for v in variants}
        row = {
            'heavy_p99_ms': {v: r[v]['heavy']['latency_p99_ms'] for v in variants},
            'heavy_frames_lost': {v: r[v]['heavy']['frames_lost_at_detector'] for v in variants},
            'light_frames_processed': light,
            'p99_within_target_every_phase': {
                v: all((r[v][ph]['latency_p99_ms'] or 0) <= target_ms for ph in MEASURED) for v in variants},
            'controller_heavy_p99_below_manual': (ctl['heavy']['latency_p99_ms'] or 0)
            < (manual['heavy']['latency_p99_ms'] or 0),
            'controller_loses_fewer_frames_in_heavy': (ctl['heavy']['frames_lost_at_detector'] or 0)
            < (manual['heavy']['frames_lost_at_detector'] or 0),
            'controller_back_to_full_rate_after_heavy': ctl.get('knob_cam_fps_at_end') == FULL_FPS,
            'controller_light_frames_vs_manual': round(light['controller'] / max(1, light['manual']), 2),
        }
        if 'manual_low' in variants:
            row['controller_light_frames_vs_manual_low'] = round(
                light['controller'] / max(1, light['manual_low']), 2)
        per_round.append(row)
    verdict: dict = {'rounds_compared': len(per_round)}
    if per_round:
        for key in ('controller_heavy_p99_below_manual', 'controller_loses_fewer_frames_in_heavy',
                    'controller_back_to_full_rate_after_heavy'):
            verdict[key] = f'{sum(r[key] for r in per_round)} of {len(per_round)} rounds'
        verdict['p99_within_target_every_phase'] = {
            v: f"{sum(r['p99_within_target_every_phase'][v] for r in per_round)} of {len(per_round)} rounds"
            for v in variants}
        for key in ('controller_light_frames_vs_manual', 'controller_light_frames_vs_manual_low'):
            if key in per_round[0]:
                verdict[key + '_median'] = _median([r[key] for r in per_round])
    return {'medians': medians, 'per_round': per_round, 'verdict': verdict}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--video', default=str(REPO / 'assets' / 'vtest.avi'))
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=40.0, help='length of each measured phase')
    parser.add_argument('--warmup-sec', type=float, default=15.0)
    parser.add_argument('--burners', type=int, default=2 * (os.cpu_count() or 1),
                        help='busy processes in the heavy phase (default: 2 per core)')
    parser.add_argument('--low-fps', type=float, default=3.0, help="manual_low's fixed camera rate")
    parser.add_argument('--detector-inbox', type=int, default=4,
                        help='frames the detector may buffer (drop_oldest beyond); '
                             'the site keeps 1 (keep-freshest)')
    parser.add_argument('--target-p99-ms', type=float, default=500.0,
                        help='latency target; 0: --target-factor x the p99 of a calibration run (one short '
                             'run: a stall in it spoils the target)')
    parser.add_argument('--target-factor', type=float, default=2.5)
    parser.add_argument('--variants', default='manual,manual_low,controller')
    args = parser.parse_args()
    if not Path(args.video).is_file():
        print(json.dumps({'error': f'{args.video}: missing (scripts/fetch-test-assets)'}))
        return 1
    variants = [v for v in args.variants.split(',') if v]
    unknown = set(variants) - {'manual', 'manual_low', 'controller'}
    if unknown or not {'manual', 'controller'} <= set(variants):
        parser.error(f'--variants: manual and controller are needed; unknown: {sorted(unknown)}')
    calibration = None
    target_ms = args.target_p99_ms
    if target_ms <= 0:
        calibration = run_variant('manual', args.video, args, 0.0,
                                  [('warmup', args.warmup_sec, 0), ('light', max(20.0, args.seconds / 2), 0)])
        base = calibration['light']['latency_p99_ms']
        if base is None:
            print(json.dumps({'error': 'calibration run saw no events', 'calibration': calibration}))
            return 1
        target_ms = round(args.target_factor * base, 1)
    phases = profile(args)
    rounds = []
    for index in range(args.rounds):
        order = variants[index % len(variants):] + variants[:index % len(variants)]
        rounds.append({'order': order}
                      | {v: run_variant(v, args.video, args, target_ms, phases) for v in order})
    goal = (f'end-to-end event latency p99 <= {target_ms} ms in every phase (light, heavy with '
            f'{args.burners} burners, light again), with as many frames processed by the detector as that '
            'allows')
    print(json.dumps({'bench': 'controller', 'goal': goal, 'target_p99_ms': target_ms,
                      'calibration_light_p99_ms': (calibration['light']['latency_p99_ms']
                                                   if calibration else None),
                      'profile': [{'phase': n, 'seconds': s, 'burners': b} for n, s, b in phases],
                      'cpu_count': os.cpu_count(), 'detector_inbox': args.detector_inbox,
                      **summarize(rounds, variants, target_ms), 'rounds': rounds}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
