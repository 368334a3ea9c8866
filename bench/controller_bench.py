"""The controller against the manual policy, on the site's camera lane, with CPU contention mid-run.

The lane is config/site.yaml's cam0 lane as it runs on a site: the pedestrian clip as a 10 frames/s
camera -> the bundled ONNX person detector (keep-freshest inbox, one thread) -> IoU tracker ->
protocol-v0.2 events -> typed and JSON events on ROS topics. It runs twice in this one bench run,
each time in its own process on its own leased DDS domain, with the same schedule:

    warm-up | before (measured) | a burner process takes one core for --burn-sec | recovery | after

- manual: today's settings (every frame the camera gives, 10/s), nothing adapts;
- controller: the same lane plus a LatencyProbe before the event topic and an AutonomicController
  reading /diagnostics: event latency p99 near the target, or frames shed at the detector's inbox
  -> lower the camera's `fps` knob (rolled back if latency got worse); latency well below the
  target for 10 s -> raise it again, up to the full 10 frames/s.

Measured from outside, as a robot would see it: every event's end-to-end latency (arrival on the
JSON event topic minus the frame's capture time `ts`), per phase; frames shed at the detector inbox
and frames the camera delivered (from /diagnostics), per phase; the knob's final value. The
controller's decision log is part of the output. One JSON object on stdout:

    python bench/controller_bench.py [--burn-sec 60] [--burners 1] [--target-p99-ms 400]

Figures depend on the machine and its load (both variants see the same machine, one after the
other); nothing here is asserted.
"""
from __future__ import annotations

import argparse
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


def lane(video: str, out: Path, controller: bool, target_ms: float) -> dict:
    nodes = [
        {'id': 'cam0', 'plugin': 'OpenCvVideoFileSource',
         'config': {'path': video, 'source_id': 'cam0', 'loop': True, 'realtime': True, 'fps': 10.0}},
        {'id': 'det0', 'plugin': 'OnnxDetectorNode',
         'config': {'intra_op_threads': 1, '__runtime__': {'inbox_max': 1, 'inbox_overflow': 'drop_oldest'}}},
        {'id': 'trk0', 'plugin': 'IouTrackerNode'},
        {'id': 'events0', 'plugin': 'ProtocolV02EventBuilderNode', 'config': {'site_id': 'S001',
                                                                               'camera_id': 'cam0'}},
        {'id': 'probe', 'plugin': 'LatencyProbe', 'config': {'window_sec': 5.0, 'every_sec': 1.0}},
        {'id': 'robot', 'plugin': 'RobotEventSink', 'topics': {'legacy_json': EVENTS_TOPIC},
         'config': {'typed': False, 'legacy_json': True}},
    ]
    edges = [{'from': 'cam0', 'to': 'det0'}, {'from': 'det0', 'to': 'trk0'},
             {'from': 'trk0', 'to': 'events0'}, {'from': 'events0', 'to': 'probe'},
             {'from': 'probe', 'to': 'robot'}]
    if controller:
        nodes.append({'id': 'ctl', 'plugin': 'AutonomicController', 'config': {
            'decision_log': str(out / 'decisions.jsonl'),
            'stale_after_sec': 5.0,
            'rate_window_sec': 5.0,
            'rollback': {'after_sec': 8.0, 'worse_by': 0.25},
            'knobs': {'cam_fps': {'node': 'cam0', 'param': 'fps', 'min': 2, 'max': 10, 'max_step': 2,
                                  'cooldown_sec': 4}},
            'rules': [
                {'id': 'slow', 'do': {'knob': 'cam_fps', 'by': -2}, 'target': 'probe.age_p99_ms',
                 'when': {'metric': 'probe.age_p99_ms', 'above': 0.8 * target_ms,
                          'clear_below': 0.5 * target_ms, 'for_sec': 3}},
                {'id': 'shedding', 'do': {'knob': 'cam_fps', 'by': -2},
                 'when': {'metric': 'rate(det0.inbox_shed_total)', 'above': 0.5, 'clear_below': 0.05,
                          'for_sec': 4}},
                {'id': 'recovered', 'do': {'knob': 'cam_fps', 'by': 2},
                 'when': {'metric': 'probe.age_p99_ms', 'below': 0.5 * target_ms,
                          'clear_above': 0.7 * target_ms, 'for_sec': 10}},
            ],
        }})
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
                if (node, item.key) in (('det0', 'inbox_shed_total'), ('det0', 'consumed'),
                                        ('cam0', 'produced'), ('det0', 'inference_ms')):
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


def phase(listener: Listener, start: float, end: float) -> dict:
    latencies = [lat for t, lat in listener.latencies if start <= t <= end]
    shed = _counter_delta(listener.samples, 'det0.inbox_shed_total', start, end)
    delivered = _counter_delta(listener.samples, 'cam0.produced', start, end)
    inference = [v['det0.inference_ms'] for t, v in listener.samples
                 if start <= t <= end and 'det0.inference_ms' in v]
    return {
        'seconds': round(end - start, 1),
        'events': len(latencies),
        'latency_p50_ms': _p(latencies, 0.5),
        'latency_p99_ms': _p(latencies, 0.99),
        'frames_from_camera': delivered,
        'frames_shed_at_detector': shed,
        'shed_fraction': round(shed / delivered, 3) if shed is not None and delivered else None,
        'inference_ms_median': round(statistics.median(inference), 1) if inference else None,
    }


def run_variant(name: str, video: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp, lease_domain() as lease:
        out = Path(tmp)
        graph = out / 'lane.yaml'
        spec = lane(video, out, name == 'controller', args.target_p99_ms)
        graph.write_text(yaml.safe_dump(spec, sort_keys=False))
        env = localhost_env(lease.domain_id)
        listener = Listener(lease.domain_id)
        total = args.warmup_sec + args.before_sec + args.burn_sec + args.recover_sec + args.after_sec
        report = out / 'report.json'
        run = processes.start(processes.python_cmd('-m', 'schnitzel_stream_ros', 'run', str(graph), '--quiet',
                                                   '--duration', str(total), '--report-json', str(report)),
                              env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        burners: list[subprocess.Popen] = []
        try:
            t0 = time.time()
            marks = {'before': t0 + args.warmup_sec}
            marks['burn'] = marks['before'] + args.before_sec
            marks['recover'] = marks['burn'] + args.burn_sec
            marks['after'] = marks['recover'] + args.recover_sec
            marks['end'] = marks['after'] + args.after_sec
            time.sleep(max(0.0, marks['burn'] - time.time()))
            burners = [processes.start(processes.python_cmd('-c', BURNER.format(sec=args.burn_sec)), env)
                       for _ in range(args.burners)]
            time.sleep(max(0.0, marks['recover'] - time.time()))
            for burner in burners:
                burner.wait(timeout=30)
            run.wait(timeout=total + 120)
        finally:
            for burner in burners:
                processes.stop(burner)
            stderr = run.stderr.read().decode(errors='replace') if run.stderr else ''
            processes.stop(run)
            listener.close()
        result = {
            'exit_code': run.returncode,
            'before': phase(listener, marks['before'], marks['burn']),
            'contention': phase(listener, marks['burn'], marks['recover']),
            'after': phase(listener, marks['after'], marks['end']),
        }
        if report.exists():
            metrics = json.loads(report.read_text())['metrics']
            result['frames_skipped_at_camera_total'] = metrics.get('node.cam0.frames_skipped_total', 0)
            result['knob_cam_fps_at_end'] = metrics.get('node.ctl.knob.cam_fps')
        if run.returncode != 0:
            result['stderr_tail'] = stderr[-2000:]
        decisions = out / 'decisions.jsonl'
        if decisions.exists():
            result['decisions'] = [
                {k: d[k] for k in ('t', 'rule', 'action', 'knob', 'old', 'new', 'guardrail', 'metrics')}
                | {'t': round(d['t'] - t0, 1)}
                for d in map(json.loads, decisions.read_text().splitlines())]
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--video', default=str(REPO / 'assets' / 'vtest.avi'))
    parser.add_argument('--warmup-sec', type=float, default=20.0)
    parser.add_argument('--before-sec', type=float, default=30.0)
    parser.add_argument('--burn-sec', type=float, default=60.0)
    parser.add_argument('--recover-sec', type=float, default=30.0, help='after the burner, not measured')
    parser.add_argument('--after-sec', type=float, default=30.0)
    parser.add_argument('--target-p99-ms', type=float, default=400.0)
    parser.add_argument('--burners', type=int, default=1,
                        help='busy processes during the contention (one core each)')
    args = parser.parse_args()
    if not Path(args.video).is_file():
        print(json.dumps({'error': f'{args.video}: missing (scripts/fetch-test-assets)'}))
        return 1
    results = {'manual': run_variant('manual', args.video, args),
               'controller': run_variant('controller', args.video, args)}
    verdict = {}
    manual, ctl = results['manual']['contention'], results['controller']['contention']
    if manual['latency_p99_ms'] is not None and ctl['latency_p99_ms'] is not None:
        verdict['contention_p99_under_target'] = {'manual': manual['latency_p99_ms'] <= args.target_p99_ms,
                                                  'controller': ctl['latency_p99_ms'] <= args.target_p99_ms}
    if manual['frames_shed_at_detector'] is not None and ctl['frames_shed_at_detector'] is not None:
        fewer = ctl['frames_shed_at_detector'] < manual['frames_shed_at_detector']
        verdict['controller_sheds_fewer_frames'] = fewer
    verdict['controller_back_to_full_rate'] = results['controller'].get('knob_cam_fps_at_end') == 10.0
    print(json.dumps({'bench': 'controller', 'target_p99_ms': args.target_p99_ms, 'burn_sec': args.burn_sec,
                      'burners': args.burners, 'cpu_count': os.cpu_count(),
                      'verdict': verdict, **results}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
