"""Upstream's backpressure-fairness experiment: its files load unchanged, its plugins behave as upstream's,
weighted_drop reaches the runtime, and the deterministic placement reproduces upstream's counts per seed.

The reference (test/graphs/upstream_exp/reference_inproc_seed12000.json) is the output of upstream's
own in-process runner for the 16 cells at seed_base 12000. Drops and misses in deterministic mode
depend on the seeds and the order of work only, never on time: the fast check below zeroes the
processing delays and the outage (kept as upstream wrote them in the one full-timing cell).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from schnitzel_stream_ros.experiments.fairness_configs import Experiment, compose
from schnitzel_stream_ros.experiments.fairness_metrics import percentile, run_metrics
from schnitzel_stream_ros.experiments.placements import run_deterministic
from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.model import DropWeights, Overflow
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate
from schnitzel_stream_ros.graph.wiring import node_load_request
from schnitzel_stream_ros.nodes.experiments.clock import VirtualClock, use
from schnitzel_stream_ros.nodes.experiments.event_plan import planned_count
from schnitzel_stream_ros.nodes.experiments.risk_source import SyntheticRiskEventSource
from schnitzel_stream_ros.nodes.experiments.slow_scoring import SlowScoringNode
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.runtime.load_spec import parse_load_request

UPSTREAM = Path(__file__).resolve().parents[1] / 'graphs' / 'upstream_exp'
REFERENCE = {(r['policy_id'], r['workload_id']): r
             for r in json.loads((UPSTREAM / 'reference_inproc_seed12000.json').read_text())['runs']}
#: upstream's runner on the virtual clock (SOURCE.md): every figure, harm included, follows from the seeds
REFERENCE_VCLOCK = {(r['policy_id'], r['workload_id']): r
                    for r in json.loads((UPSTREAM / 'reference_inproc_vclock_seed12000.json').read_text())[
                        'runs']}
#: upstream's own run files of the four `error` cells (SOURCE.md), without ts, duration and paths
REFERENCE_ERROR_RUNS = {r['workload_id']: r for r in json.loads(
    (UPSTREAM / 'reference_error_runs_seed12000.json').read_text())['runs']}


def experiment() -> Experiment:
    return Experiment.load(UPSTREAM / 'bench_base.yaml', sorted(UPSTREAM.glob('policy_*.yaml')),
                           sorted(UPSTREAM.glob('workloads_*.yaml')))


def make(cls, **params):
    ctx = SimpleContext(node_id=cls.__name__, params=resolve_params(cls, params))
    plugin = cls(ctx)
    plugin.setup()
    return plugin, ctx


def test_every_cell_composes_to_a_valid_graph_with_upstreams_expected_counts(tmp_path):
    exp = experiment()
    assert [p['policy_id'] for p in exp.policies] == ['drop_new', 'drop_oldest', 'error', 'weighted_drop']
    for pi, policy in enumerate(exp.policies):
        for wi, workload in enumerate(exp.workloads):
            seed = exp.seed(12000, 0, pi, wi)
            plan = compose(exp, pi, wi, 0, seed, tmp_path / 'events.jsonl')
            ref = REFERENCE[(policy['policy_id'], workload['workload_id'])]
            assert (plan.seed, plan.expected_total, plan.expected_by_group) == (
                ref['seed'], ref['expected_total'], ref['expected_by_group'])
            result = load_and_validate(plan.write_graph(tmp_path / f'{plan.run_id}.yaml'))
            assert result.errors == [] and list(result.warnings) == []
            (into,) = result.graph.inputs_of('processor')
            assert str(into.overflow) == policy['policy_id']
            if into.overflow is Overflow.WEIGHTED_DROP:
                assert into.drop_weights == DropWeights('group_id', (('group_a', 1.0), ('group_b', 2.0)), 1.0)
            assert result.graph.node('src').params['seed'] == seed
            assert result.graph.node('processor').params['seed'] == seed + 977


def test_deterministic_placement_reproduces_upstreams_drops_and_misses_for_every_cell(tmp_path):
    exp = experiment()
    for pi, policy in enumerate(exp.policies):
        for wi, workload in enumerate(exp.workloads):
            plan = compose(exp, pi, wi, 0, exp.seed(12000, 0, pi, wi), tmp_path / f'{pi}{wi}.jsonl')
            plan.node_config('processor').update(delay_ms=0.0, group_delay_ms={})  # counts do not
            plan.node_config('source').update(outage_sleep_ms=0.0)                 # depend on time
            run = run_deterministic(plan, tmp_path)
            ref = REFERENCE[(policy['policy_id'], workload['workload_id'])]
            where = f"{policy['policy_id']}/{workload['workload_id']}"
            assert run['status'] == ref['status'], where
            assert run['metrics']['observed_total'] == ref['observed_total'], where
            assert run['metrics']['drop_total_runtime'] == ref['drop_total_runtime'], where
            rates = (run['drop_rate'], run['event_miss_rate'])
            assert rates == (ref['drop_rate'], ref['event_miss_rate']), where
            assert run['group_metrics']['observed_by_group'] == ref['observed_by_group'], where
            assert run['weighted_miss_rate'] == pytest.approx(ref['weighted_miss_rate'], abs=1e-12), where
            if run['status'] == 'error':  # upstream raised at the first overflow: nothing reached the sink
                assert "overflow policy is 'error'" in run['error']
                assert run['runtime_metrics']['packets.refused_by_error_policy'] == 1


def test_error_runs_fail_as_upstreams_do_run_file_for_run_file(tmp_path):
    """Upstream's runner raises at the first packet an `error` inbox cannot take — the (max+1)-th burst
    copy of the first event, before the processor has taken one — and writes a run file with status
    `error`, no sink line and nothing counted (its runtime_metrics stay empty: the exception leaves
    before they are read). Ours, timing as upstream wrote it: the same run file, field for field, but
    the error's wording and the counters we add (the refused packet and the queued copies are
    counted apart from policy drops: policy_drops in experiments/placements.py)."""
    exp = experiment()
    pi = [p['policy_id'] for p in exp.policies].index('error')
    assert len(REFERENCE_ERROR_RUNS) == len(exp.workloads) == 4
    for wi, workload in enumerate(exp.workloads):
        plan = compose(exp, pi, wi, 0, exp.seed(12000, 0, pi, wi), tmp_path / f'{wi}.jsonl')
        run = run_deterministic(plan, tmp_path)
        ref = REFERENCE_ERROR_RUNS[workload['workload_id']]
        inbox_max = plan.node_config('processor')['__runtime__']['inbox_max']
        for key, value in ref.items():
            if key not in ('error', 'runtime_metrics'):
                assert run[key] == value, (workload['workload_id'], key)
        assert run['status'] == 'error' and run['metrics']['observed_total'] == 0
        assert f'node=processor max={inbox_max} policy=error (src=burst)' in ref['error']
        assert run['error'] == (f"inbox 'processor.in' is full ({inbox_max} packets) and its overflow "
                                "policy is 'error'")
        assert ref['runtime_metrics'] == {}  # upstream counted nothing; ours: no policy drop either
        assert run['runtime_metrics'] == {'packets.dropped_total': 0, 'packets.refused_by_error_policy': 1,
                                          'packets.discarded_at_end': inbox_max,
                                          'packets.source_emitted_total': 1}
        assert run['ts'].endswith('+00:00')


def test_one_cell_with_upstreams_timing_unchanged(tmp_path):
    exp = experiment()
    plan = compose(exp, 0, 0, 0, exp.seed(12000, 0, 0, 0), tmp_path / 'events.jsonl')
    run = run_deterministic(plan, tmp_path)
    ref = REFERENCE[('drop_new', 'balanced')]
    assert (run['status'], run['drop_rate'], run['event_miss_rate']) == ('ok', ref['drop_rate'],
                                                                         ref['event_miss_rate'])
    lines = [json.loads(t) for t in Path(run['paths']['events_path']).read_text().splitlines()]
    assert len(lines) == ref['observed_total'] == 600
    assert set(lines[0]) == {'node_id', 'packet_id', 'seq', 'group_id', 'source_id', 'kind',
                             'logical_ts_ms', 'latency_ms', 'observed_mono_ns', 'emitted_mono_ns',
                             'recovery_marker'}
    assert all(line['latency_ms'] > 0 for line in lines)
    assert sum(line['recovery_marker'] for line in lines) == 2  # 2 of the marker's 3 copies got in
    assert run['recovery_time_ms'] is not None and run['recovery_time_ms'] > 0


def test_on_the_virtual_clock_every_cell_gives_upstreams_latencies_and_harm(tmp_path):
    """Upstream's timing unchanged (delays, jitter, outage), time on the virtual clock for both runners:
    our deterministic placement's latencies and harm equal upstream's runner's (SOURCE.md), per cell."""
    exp = experiment()
    for pi, policy in enumerate(exp.policies):
        for wi, workload in enumerate(exp.workloads):
            plan = compose(exp, pi, wi, 0, exp.seed(12000, 0, pi, wi), tmp_path / f'{pi}{wi}.jsonl')
            with use(VirtualClock()):
                run = run_deterministic(plan, tmp_path)
            ref = REFERENCE_VCLOCK[(policy['policy_id'], workload['workload_id'])]
            where = f"{policy['policy_id']}/{workload['workload_id']}"
            counts = (run['status'], run['metrics']['observed_total'], run['metrics']['drop_total_runtime'])
            assert counts == (ref['status'], ref['observed_total'], ref['drop_total_runtime']), where
            for key in ('p50_latency_ms', 'p95_latency_ms', 'p99_latency_ms', 'recovery_time_ms',
                        'weighted_latency_ratio', 'harm_weighted_cost'):
                expected = ref[key] if ref[key] is None else pytest.approx(ref[key], rel=1e-9, abs=1e-9)
                assert run[key] == expected, (where, key)
            assert run['group_metrics']['group_latency_p95_ms'] == pytest.approx(ref['group_latency_p95_ms'])
            if ref['status'] == 'ok':
                assert ref['p95_latency_ms'] > 1.0  # the delays count: not a run of zero latencies


def test_virtual_clock_moves_only_by_what_plugins_sleep():
    stop = __import__('threading').Event()
    clock = VirtualClock()
    with use(clock):
        scorer, _ = make(SlowScoringNode, delay_ms=2.0, jitter_ms=0.0, group_delay_ms={'group_b': 1.5})
        source, _ = make(SyntheticRiskEventSource, total_events=2, recovery_marker_seq=1,
                         outage_sleep_ms=100.0, group_probs={'group_a': 0.0, 'group_b': 1.0})
        packets = list(source.produce())
        assert packets[1].meta['emitted_mono_ns'] - packets[0].meta['emitted_mono_ns'] == 100_000_000
        start = clock.now
        scorer.process(packets[0])
        assert clock.now - start == 3_500_000
    stop.set()
    assert clock.wait(stop, 5.0) is True and clock.now - start == 3_500_000  # a set stop waits nothing


# -- plugins ------------------------------------------------------------------------------------
def test_source_emits_the_seeded_plan_with_upstreams_fields():
    source, _ = make(SyntheticRiskEventSource, source_id='lab', seed=7, total_events=10, burst_every=4,
                       burst_size=3, event_interval_ms=5.0, recovery_marker_seq=5, signal_scale=2.0,
                       group_probs={'group_a': 0.0, 'group_b': 1.0})
    packets = list(source.produce())
    assert len(packets) == planned_count(10, 4, 3) == 16
    assert [p.payload['logical_ts_ms'] for p in packets[:5]] == [0.0, 0.0, 0.0, 5.0, 10.0]
    assert {p.payload['group_id'] for p in packets} == {'group_b'}  # probability 1
    fifth = packets[5]
    assert fifth.payload == {'event_id': 'lab:00000005', 'seq': 5, 'group_id': 'group_b',
                             'logical_ts_ms': 15.0, 'signal': 1.0}
    assert fifth.meta['recovery_marker'] is True and fifth.meta['expected_total'] == 16
    assert fifth.meta['emitted_mono_ns'] > packets[0].meta['emitted_mono_ns']
    too_big = resolve_params(SyntheticRiskEventSource,
                             {'total_events': 10**6, 'burst_every': 1, 'burst_size': 5})
    assert 'over the limit' in SyntheticRiskEventSource.check_params(too_big)[0]


def test_slow_scoring_scores_keeps_the_id_and_draws_jitter_from_the_seed():
    source, _ = make(SyntheticRiskEventSource, total_events=4, seed=1)
    node, _ = make(SlowScoringNode, delay_ms=0.0, jitter_ms=0.5, seed=3, group_delay_ms={'group_b': 0.1})
    out = [node.process(p) for p in source.produce()]
    assert [o.payload['risk_score'] for o in out] == [0.0, round(0.1 * 0.75 + 0.05, 6),
                                                      round(0.2 * 0.75 + 0.1, 6), round(0.3 * 0.75 + 0.15, 6)]
    assert all(o.meta['processed_mono_ns'] >= o.meta['emitted_mono_ns'] for o in out)
    assert all(o.payload['policy_group'] == o.payload['group_id'] for o in out)


def test_metrics_follow_upstreams_definitions():
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    lines = [{'group_id': 'a', 'latency_ms': 10.0}, {'group_id': 'a', 'latency_ms': 30.0},
             {'group_id': 'b', 'latency_ms': 20.0, 'recovery_marker': True}]
    metrics, groups = run_metrics(lines, expected_total=6, expected_by_group={'a': 2, 'b': 4},
                                  duration_sec=2.0, dropped=3, group_weights={'b': 3.0},
                                  latency_budget_ms=20.0, ok=True)
    assert (metrics['throughput'], metrics['drop_rate'], metrics['event_miss_rate']) == (1.5, 0.5, 0.5)
    assert groups['group_miss_rate'] == {'a': 0.0, 'b': 0.75} and metrics['worst_group_id'] == 'b'
    weighted_miss = (1 * 0.0 + 3 * 0.75) / 4
    weighted_ratio = (1 * min(5.0, 29.0 / 20.0) + 3 * (20.0 / 20.0)) / 4
    assert metrics['harm_weighted_cost'] == pytest.approx(weighted_miss * 100 + weighted_ratio * 10)
    assert metrics['recovery_time_ms'] == 20.0 and metrics['group_latency_gap_ms'] == pytest.approx(9.0)


# -- weighted_drop from the graph file to the container ----------------------------------------
def test_weights_travel_from_runtime_block_and_edge_inbox_to_the_load_request(tmp_path):
    graph = tmp_path / 'g.yaml'
    graph.write_text("""version: 2
nodes:
  - {id: src, plugin: StaticSource}
  - id: a
    plugin: Identity
    config:
      __runtime__: {inbox_max: 2, inbox_overflow: weighted_drop, overflow_weights: {hi: 3, lo: 0.5}}
  - {id: b, plugin: PrintSink}
edges:
  - {from: src, to: a}
  - from: a
    to: b
    inbox: {overflow: weighted_drop, weights: {x: 2.0}, weight_key: lane, default_weight: 0.1}
""")
    result = load_and_validate(graph)
    assert result.errors == []
    (into_a,) = result.graph.inputs_of('a')
    assert into_a.drop_weights == DropWeights('group_id', (('hi', 3.0), ('lo', 0.5)), 1.0)
    request = node_load_request(result.graph, result.graph.node('b'))
    assert request.parameters['inbox.in.weights'] == '{"x":2.0}'
    spec = parse_load_request(package_name=request.package_name, plugin_name=request.plugin_name,
                              node_name='b', node_namespace='/', parameters=request.parameters,
                              remap_rules=request.remap_rules, registry=PluginRegistry(Allowlist()))
    assert spec.inputs['in'].drop_weights == DropWeights('lane', (('x', 2.0),), 0.1)
    bad = tmp_path / 'bad.yaml'
    bad.write_text(graph.read_text().replace('hi: 3', 'hi: many'))
    (error,) = load_and_validate(bad).errors
    assert str(error).startswith(f"{bad}:7: node 'a': overflow_weights.hi must be a finite number")
