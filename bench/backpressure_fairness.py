"""Upstream's backpressure-fairness benchmark through this runtime, placements side by side.

    python bench/backpressure_fairness.py [--repeats 1] [--seed-base 12000] [--policies drop_new,...]
        [--workloads balanced,...] [--placements deterministic,deterministic_vclock,live_paced,...]
        [--no-baseline] [--upstream DIR [--upstream-python PY] [--upstream-runs 2]] [--out DIR]

Upstream's experiment files (schnitzel-stream-platform, exp/backpressure-paper-submission; copies in
schnitzel_stream_ros/test/graphs/upstream_exp/) are composed into one graph per run exactly as
upstream's runner does (schnitzel_stream_ros/experiments/fairness_configs.py), then run in:
- `deterministic`: one thread, upstream's in-process order (drain after every emission);
- `deterministic_vclock`: the same on the virtual clock (nodes/experiments/clock.py): latency is the
  sum of the seeded delays a packet waited for, exactly, so harm is a function of the seeds alone;
- `live_paced`: `schnitzel-stream run`, every node on its own thread, one container, with the graph
  option `config.pace_sources: true` — the source emits its next packet once the graph has drained
  the previous one, upstream's in-process pacing (docs/runtime.md);
- `live`: the same, unpaced;
- `live_2c`: the same with processor and sink in a second container, the burst -> processor edge over DDS;
- `live_2c_paced`: `live_2c` with `config.pace_sources`: the source waits for the second container's
  credit (runtime/pace_link.py) as well as for its own container's graph.
With `--upstream DIR` (a checkout of upstream's branch) upstream's own runner runs every cell right
after ours, on the same seed (experiments/upstream_runner.py): `upstream` on the machine's clock
(`--upstream-runs` times, to show its own spread), `upstream_vclock` on the virtual clock. The output's
`comparison` then holds, per cell, drop/miss equality and harm of ours against upstream's on each
clock, and the live placements' p95, miss and harm against upstream's wall-clock figures.
Unpaced, the source emits its plan as fast as it can (plus upstream's outage pause), so the
processor's inbox policy decides what gets through. Upstream leaves the other inboxes
unbounded; here they are bounded at the run's packet count, and both ends of the DDS edge keep that
many in their history (KEEP_LAST: a writer's depth-10 history overwrites what a slow reader has not
acknowledged yet; the runtime counts such transport losses as edge drops), so the processor's
policy is the only place a packet may be dropped. Each live run checks it: packets the burst
published = packets the processor took + the processor's counted policy drops.

Baseline in the same run (`rclpy`): the same graph as two plain rclpy processes — a publisher (the
same plan, the burst copies, JSON std_msgs/String, reliable, depth 10 as one writes by default) and a
subscriber whose callback applies the same inbox policy to a deque drained by a worker thread with
the same scoring delay and the same sink lines. What DDS loses there counts as missed, not dropped.

Output: one run file per run in upstream's run schema (`<out>/<placement>/runs/<run_id>.json`, plus
`copies_through_per_event`: how many copies of each planned event reached the sink, where the miss
rate comes from) and one JSON object on stdout: per placement, the summary table (means per policy x
workload) and the checks (`unaccounted_runs`; `pace_trouble_runs`: live runs whose pace credits had to
be waited out or written off, whose credit reporter erred, or with an incomplete batch); with
`--upstream`, the per-cell `comparison`. A live run's status is that of
its report's errors (the runner's exit code also counts the inbox policy's drops, which here are the
experiment). Cheap run: `--policies drop_new --workloads balanced --placements deterministic_vclock,
live_2c_paced --no-baseline`.
Metrics are defined in schnitzel_stream_ros/experiments/fairness_metrics.py (and bench/README.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.experiments.fairness_compare import compare_cells  # noqa: E402
from schnitzel_stream_ros.experiments.fairness_configs import Experiment, RunPlan, compose  # noqa: E402
from schnitzel_stream_ros.experiments.fairness_metrics import run_metrics, run_record  # noqa: E402
from schnitzel_stream_ros.experiments.placements import read_lines, run_deterministic  # noqa: E402
from schnitzel_stream_ros.experiments.upstream_runner import run_upstream_cell  # noqa: E402
from schnitzel_stream_ros.nodes.experiments.clock import VirtualClock, use  # noqa: E402
from schnitzel_stream_ros.testing import processes  # noqa: E402
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env  # noqa: E402

EXPERIMENT_DIR = REPO / 'schnitzel_stream_ros' / 'test' / 'graphs' / 'upstream_exp'
PLACEMENTS = ('deterministic', 'deterministic_vclock', 'live_paced', 'live', 'live_2c', 'live_2c_paced')
RUN_TIMEOUT_SEC = 300
#: a live run's transport counters that say its pacing or batching did not hold (runtime/pace_link.py,
#: runtime/batch_mark.py); a run with any of them non-zero is listed in the output's `pace_trouble_runs`
PACE_TROUBLE = ('pace_credit_grace_expired_total', 'pace_credit_written_off_total',
                'pace_credit_report_errors_total', 'batches_incomplete_total')
#: DDS history of the baseline's topic: what a plain rclpy user writes (create_publisher(..., 10))
BASELINE_DEPTH = 10

BASELINE_PUBLISHER = r'''
import json, sys, time
import rclpy
from std_msgs.msg import String
from schnitzel_stream_ros.nodes.experiments.risk_source import SyntheticRiskEventSource
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
cfg, copies, depth = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
source = SyntheticRiskEventSource(SimpleContext('src', resolve_params(SyntheticRiskEventSource, cfg)))
source.setup()
rclpy.init()
node = rclpy.create_node('bench_publisher')
pub = node.create_publisher(String, '/bench/events', depth)
while pub.get_subscription_count() < 1:
    time.sleep(0.01)
time.sleep(0.3)
published = 0
for packet in source.produce():
    for i in range(copies):
        meta = dict(packet.meta, burst_seq=i)
        pub.publish(String(data=json.dumps({'payload': packet.payload, 'meta': meta})))
        published += 1
time.sleep(0.5)
pub.publish(String(data=json.dumps({'end': published})))
time.sleep(0.5)
print(json.dumps({'published': published}), flush=True)
'''

BASELINE_SUBSCRIBER = r'''
import collections, json, sys, threading, time
import rclpy
from std_msgs.msg import String
from schnitzel_stream_ros.nodes.experiments.slow_scoring import SlowScoringNode
from schnitzel_stream_ros.nodes.experiments.metrics_sink import BackpressureMetricsSink
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
proc_cfg, sink_cfg, policy, inbox_max, weights, depth = (json.loads(a) for a in sys.argv[1:7])
proc_cfg.pop('__runtime__', None)
scorer = SlowScoringNode(SimpleContext('processor', resolve_params(SlowScoringNode, proc_cfg)))
sink = BackpressureMetricsSink(SimpleContext('sink', resolve_params(BackpressureMetricsSink, sink_cfg)))
scorer.setup(); sink.setup()
inbox, lock, wake = collections.deque(), threading.Lock(), threading.Event()
state = {'received': 0, 'dropped': 0, 'error': '', 'end': None, 'processed': 0}
def weight(p):
    value = p.meta.get(weights['key'])
    return weights['table'].get(str(value), weights['default'])
def on_msg(msg):
    data = json.loads(msg.data)
    if 'end' in data:
        state['end'] = data['end']; wake.set(); return
    state['received'] += 1
    packet = StreamPacket.new('event', 'fairness_lab', data['payload'], data['meta'])
    with lock:
        if len(inbox) >= inbox_max:
            if policy == 'error':
                state['error'] = state['error'] or 'inbox overflow with policy error'; return
            state['dropped'] += 1
            if policy == 'drop_new':
                return
            if policy == 'drop_oldest':
                inbox.popleft()
            else:
                ranks = [weight(p) for p in inbox]
                del inbox[ranks.index(min(ranks))]
        inbox.append(packet)
    wake.set()
def worker():
    while True:
        wake.wait(0.05)
        with lock:
            packet = inbox.popleft() if inbox and not state['error'] else None
            if packet is None:
                wake.clear()
        if packet is not None:
            sink.process(scorer.process(packet)); state['processed'] += 1
        elif state['error'] or (state['end'] is not None and not inbox):
            return
rclpy.init()
node = rclpy.create_node('bench_subscriber')
node.create_subscription(String, '/bench/events', on_msg, depth)
thread = threading.Thread(target=worker, daemon=True); thread.start()
print('ready', flush=True)
deadline = time.monotonic() + float(sys.argv[7])
while thread.is_alive() and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.05)
sink.close()
print(json.dumps(state), flush=True)
'''


def _runtime_block(node: dict[str, Any], **settings: Any) -> None:
    config = node.setdefault('config', {})
    config['__runtime__'] = {**(config.get('__runtime__') or {}), **settings}


def live_graph(plan: RunPlan, two_containers: bool, paced: bool = False) -> dict[str, Any]:
    """The plan's graph for a live run: only the processor's inbox is bounded as upstream wrote it."""
    graph = json.loads(json.dumps(plan.graph))
    if paced:
        graph['config'] = {**(graph.get('config') or {}), 'pace_sources': True}
    room = max(1, plan.expected_total)
    ids = plan.node_ids
    for node in graph['nodes']:
        if node['id'] in (ids['burst'], ids['sink']):
            _runtime_block(node, inbox_max=room, inbox_overflow='block')
        if two_containers and node['id'] in (ids['processor'], ids['sink']):
            node['container'] = 'second'
        if two_containers and node['id'] == ids['burst']:  # the writer's history: KEEP_LAST depth
            node['qos'] = {'out': {'reliability': 'reliable', 'depth': min(room, 100_000)}}
    if two_containers:
        for edge in graph['edges']:
            if edge.get('to') == ids['processor']:
                edge['qos'] = {'reliability': 'reliable', 'depth': min(room, 100_000)}
    return graph


def run_live(plan: RunPlan, run_dir: Path, placement: str) -> dict[str, Any]:
    graph = live_graph(plan, placement.startswith('live_2c'), placement.endswith('_paced'))
    graph_path = run_dir / 'graphs' / f'{plan.run_id}.yaml'
    graph_path.parent.mkdir(parents=True, exist_ok=True)
    graph_path.write_text(json.dumps(graph))  # JSON is YAML: the loader reads it
    report_path = run_dir / 'reports' / f'{plan.run_id}.json'
    report_path.parent.mkdir(parents=True, exist_ok=True)
    events_path = Path(plan.node_config('sink')['output_path'])
    with lease_domain() as lease:
        t0 = time.monotonic_ns()
        done = subprocess.run(
            [sys.executable, '-m', 'schnitzel_stream_ros.cli', 'run', str(graph_path), '--report-json',
             str(report_path)], env=localhost_env(lease.domain_id), capture_output=True, text=True,
            timeout=RUN_TIMEOUT_SEC,
        )
        duration = (time.monotonic_ns() - t0) / 1e9
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    metrics_in = report.get('metrics', {})
    ids = plan.node_ids
    published = int(metrics_in.get(f"node.{ids['burst']}.produced", 0))
    taken = int(metrics_in.get(f"node.{ids['processor']}.consumed", 0))
    dropped = int(metrics_in.get(f"node.{ids['processor']}.inbox_dropped_total", 0))
    other_drops = int(metrics_in.get('packets.dropped_total', 0)) - dropped
    # the run's exit code says `failed` when packets were dropped: here the inbox policy's drops are the
    # experiment, so only the report's errors (upstream's `error` policy, a plugin failing) fail a run
    errors = report.get('errors', []) if report else [done.stderr.strip()[-300:] or f'exit {done.returncode}']
    ok = not errors
    metrics, breakdown = run_metrics(
        read_lines(events_path), expected_total=plan.expected_total,
        expected_by_group=plan.expected_by_group,
        duration_sec=float(report.get('duration_sec') or duration), dropped=dropped,
        group_weights=plan.group_weights, latency_budget_ms=plan.latency_budget_ms, ok=ok,
    )
    counters = {'packets.dropped_total': dropped, 'packets.dropped_elsewhere': other_drops,
                'burst_published': published, 'processor_taken': taken,
                'accounted': published == taken + dropped and other_drops == 0,
                # what may leave a paced run (partly) unpaced or a batch split: each names its cause
                **{key: int(metrics_in.get(f'transport.{key}', 0)) for key in PACE_TROUBLE}}
    return run_record(plan, metrics, breakdown, status='ok' if ok else 'error', error='; '.join(errors),
                      duration_sec=duration, placement=placement, counters=counters,
                      paths={'events_path': str(events_path), 'graph_path': str(graph_path),
                             'report_path': str(report_path)})


def run_baseline(plan: RunPlan, run_dir: Path) -> dict[str, Any]:
    """The same graph as plain rclpy publisher and subscriber processes (module docstring)."""
    scripts = run_dir / 'scripts'
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / 'publisher.py').write_text(BASELINE_PUBLISHER)
    (scripts / 'subscriber.py').write_text(BASELINE_SUBSCRIBER)
    processor = dict(plan.node_config('processor'))
    runtime = processor.get('__runtime__') or {}
    sink_cfg = {k: v for k, v in plan.node_config('sink').items() if k != '__runtime__'}
    events_path = Path(sink_cfg['output_path'])
    weights = {'key': runtime.get('overflow_weight_key', 'group_id'),
               'table': {str(k): float(v) for k, v in (runtime.get('overflow_weights') or {}).items()},
               'default': float(runtime.get('overflow_default_weight', 1.0))}
    source_cfg = {k: v for k, v in plan.node_config('source').items() if k != '__runtime__'}
    copies = int(plan.node_config('burst').get('count', 1))
    args = [json.dumps(a) for a in (processor, sink_cfg, runtime.get('inbox_overflow', 'drop_new'),
                                    int(runtime.get('inbox_max', 64)), weights, BASELINE_DEPTH)]
    with lease_domain() as lease:
        env = localhost_env(lease.domain_id)
        t0 = time.monotonic_ns()
        sub = processes.start([sys.executable, str(scripts / 'subscriber.py'), *args, str(RUN_TIMEOUT_SEC)],
                              env, stdout=subprocess.PIPE, text=True)
        try:
            assert sub.stdout.readline().strip() == 'ready'
            pub = subprocess.run([sys.executable, str(scripts / 'publisher.py'), json.dumps(source_cfg),
                                  str(copies), str(BASELINE_DEPTH)], env=env, capture_output=True, text=True,
                                 timeout=RUN_TIMEOUT_SEC)
            out, _ = sub.communicate(timeout=RUN_TIMEOUT_SEC)
        finally:
            processes.stop(sub)
        duration = (time.monotonic_ns() - t0) / 1e9
    state = json.loads(out.strip().splitlines()[-1])
    published = json.loads(pub.stdout.strip().splitlines()[-1])['published'] if pub.returncode == 0 else 0
    ok = not state['error'] and pub.returncode == 0
    metrics, breakdown = run_metrics(
        read_lines(events_path), expected_total=plan.expected_total,
        expected_by_group=plan.expected_by_group, duration_sec=duration, dropped=state['dropped'],
        group_weights=plan.group_weights,
        latency_budget_ms=plan.latency_budget_ms, ok=ok,
    )
    counters = {'packets.dropped_total': state['dropped'], 'published': published,
                'received': state['received'], 'lost_in_dds': published - state['received'],
                'processed': state['processed']}
    return run_record(plan, metrics, breakdown, status='ok' if ok else 'error', error=state['error'],
                      duration_sec=duration, placement='rclpy', counters=counters,
                      paths={'events_path': str(events_path)})


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault((run['policy_id'], run['workload_id']), []).append(run)
    rows = []
    for (policy, workload), group in sorted(cells.items()):
        def mean(key: str, group=group) -> float | None:
            values = [r[key] for r in group if isinstance(r.get(key), int | float)]
            return round(statistics.fmean(values), 4) if values else None
        rows.append({'policy_id': policy, 'workload_id': workload, 'runs': len(group),
                     'failed': sum(r['status'] != 'ok' for r in group), 'throughput': mean('throughput'),
                     'p95_latency_ms': mean('p95_latency_ms'), 'drop_rate': mean('drop_rate'),
                     'event_miss_rate': mean('event_miss_rate'),
                     'harm_weighted_cost': mean('harm_weighted_cost')})
    return rows


def copies_through(record: dict[str, Any]) -> dict[str, int]:
    """{copies of one planned event that reached the sink: events}: where the miss rate comes from.

    Upstream's runner puts all the burst's copies of an event into the processor's inbox before the
    processor takes one, so with drop_new exactly min(copies, inbox_max) get through, every event. The
    live runtime delivers the outputs of one call together (docs/runtime.md; across containers the
    receiver holds a call's packets until all arrived), so a paced live run gives the same histogram;
    an incomplete batch (`transport.batches_incomplete_total` in the run's report) shows here."""
    path = (record.get('paths') or {}).get('events_path')
    per_event: dict[int, int] = {}
    for line in read_lines(Path(path)) if path else []:
        seq = line.get('seq')
        if isinstance(seq, int):
            per_event[seq] = per_event.get(seq, 0) + 1
    histogram: dict[str, int] = {}
    for count in per_event.values():
        histogram[str(count)] = histogram.get(str(count), 0) + 1
    return dict(sorted(histogram.items()))


def run_virtual(plan: RunPlan, run_dir: Path) -> dict[str, Any]:
    """The deterministic placement on the virtual clock (exact latencies, see the module docstring)."""
    with use(VirtualClock()):
        record = run_deterministic(plan, run_dir)
    record['placement'] = 'deterministic_vclock'
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--experiment-dir', type=Path, default=EXPERIMENT_DIR)
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--seed-base', type=int, default=12000)
    parser.add_argument('--policies', default='', help='policy ids, comma-separated (default: all)')
    parser.add_argument('--workloads', default='', help='workload ids, comma-separated (default: all)')
    parser.add_argument('--placements', default=','.join(PLACEMENTS))
    parser.add_argument('--no-baseline', action='store_true')
    parser.add_argument('--upstream', type=Path, default=None,
                        help="a checkout of upstream's exp/backpressure-paper-submission: its runner runs "
                             'every cell too (placements upstream, upstream_vclock)')
    parser.add_argument('--upstream-python', default=sys.executable,
                        help="interpreter with upstream's requirements (omegaconf)")
    parser.add_argument('--upstream-runs', type=int, default=2,
                        help="upstream's runner on the machine's clock, runs per cell (its own spread)")
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args()
    directory = args.experiment_dir
    policy_files = sorted(directory.glob('policy_*.yaml'))
    workload_files = sorted(directory.glob('workloads_*.yaml'))
    exp = Experiment.load(directory / 'bench_base.yaml', policy_files, workload_files)
    wanted_p = {p for p in args.policies.split(',') if p}
    wanted_w = {w for w in args.workloads.split(',') if w}
    placements = [p for p in args.placements.split(',') if p]
    unknown = sorted(set(placements) - set(PLACEMENTS))
    if unknown:
        parser.error(f'--placements: unknown {unknown} (known: {list(PLACEMENTS)})')
    upstream_script = 'scripts/experiments/run_backpressure_bench.py'
    if args.upstream is not None and not (args.upstream / upstream_script).exists():
        parser.error(f"--upstream {args.upstream}: no scripts/experiments/run_backpressure_bench.py there")
    if not args.no_baseline:
        placements.append('rclpy')
    out = args.out or Path(tempfile.mkdtemp(prefix='backpressure_fairness_'))
    runners = {'deterministic': lambda plan, d: run_deterministic(plan, d),
               'deterministic_vclock': run_virtual,
               'rclpy': run_baseline}
    for live in ('live_paced', 'live', 'live_2c', 'live_2c_paced'):
        runners[live] = lambda plan, d, live=live: run_live(plan, d, live)
    upstream_placements = ['upstream', 'upstream_vclock'] if args.upstream is not None else []
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in placements + upstream_placements}
    for repeat in range(args.repeats):
        for pi, policy in enumerate(exp.policies):
            for wi, workload in enumerate(exp.workloads):
                if (wanted_p and policy['policy_id'] not in wanted_p) or (
                        wanted_w and workload['workload_id'] not in wanted_w):
                    continue
                seed = exp.seed(args.seed_base, repeat, pi, wi)
                for placement in placements:  # interleaved: machine load hits every placement alike
                    run_dir = out / placement
                    plan = compose(exp, pi, wi, repeat, seed, run_dir / 'events' / f'{policy["policy_id"]}_'
                                   f'{workload["workload_id"]}_r{repeat:02d}_s{seed}.jsonl')
                    record = runners[placement](plan, run_dir)
                    record['copies_through_per_event'] = copies_through(record)
                    (run_dir / 'runs').mkdir(parents=True, exist_ok=True)
                    (run_dir / 'runs' / f'{plan.run_id}.json').write_text(json.dumps(record, indent=1))
                    runs[placement].append(record)
                    _progress(placement, plan.run_id, record)
                upstream_jobs = [('upstream_vclock', 'virtual')] * bool(upstream_placements) + [
                    ('upstream', 'wall')] * (args.upstream_runs if upstream_placements else 0)
                for index, (placement, clock) in enumerate(upstream_jobs):
                    record = run_upstream_cell(
                        upstream_dir=args.upstream, python=args.upstream_python,
                        base=directory / 'bench_base.yaml', policy=policy_files[pi],
                        workload=workload_files[wi],
                        seed=seed, out_dir=out / placement / f'session_{seed}_{index}', clock=clock)
                    record.update(placement=placement, repeat=repeat, seed=seed,
                                  policy_id=policy['policy_id'],
                                  workload_id=workload['workload_id'])
                    record['copies_through_per_event'] = copies_through(record)
                    runs[placement].append(record)
                    cell = f'run_{policy["policy_id"]}_{workload["workload_id"]}_s{seed}'
                    _progress(placement, cell, record)
    result = {'out': str(out), 'repeats': args.repeats, 'seed_base': args.seed_base, 'placements': {}}
    for placement, records in runs.items():
        entry: dict[str, Any] = {'summary': summary(records)}
        if placement.startswith('live'):
            entry['unaccounted_runs'] = [r['run_id'] for r in records
                                         if not r['runtime_metrics']['accounted']]
            entry['pace_trouble_runs'] = {r['run_id']: {k: r['runtime_metrics'][k] for k in PACE_TROUBLE
                                                        if r['runtime_metrics'].get(k)}
                                          for r in records
                                          if any(r['runtime_metrics'].get(k) for k in PACE_TROUBLE)}
        if placement == 'rclpy':
            entry['lost_in_dds_total'] = sum(r['runtime_metrics']['lost_in_dds'] for r in records)
        result['placements'][placement] = entry
    if upstream_placements:
        result['comparison'] = compare_cells(runs)
    print(json.dumps(result, indent=1))
    return 0


def _progress(placement: str, run_id: str, record: dict[str, Any]) -> None:
    if record.get('status') not in ('ok', 'error') or 'event_miss_rate' not in record:
        print(f"{placement:13} {run_id}: {record.get('status')} {record.get('error', '')}", file=sys.stderr,
              flush=True)
        return
    print(f"{placement:13} {run_id}: {record['status']} miss {record['event_miss_rate']:.3f} "
          f"p95 {record['p95_latency_ms']:.2f} ms harm {record['harm_weighted_cost']:.4f}", file=sys.stderr,
          flush=True)


if __name__ == '__main__':
    raise SystemExit(main())
