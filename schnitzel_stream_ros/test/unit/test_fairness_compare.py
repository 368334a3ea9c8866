"""The per-cell comparison of bench/backpressure_fairness.py (experiments/fairness_compare.py)."""
from __future__ import annotations

import pytest

from schnitzel_stream_ros.experiments.fairness_compare import compare_cells


def record(placement: str, harm: float, p95: float, miss: float, observed: int = 10, status: str = 'ok'):
    return {'placement': placement, 'policy_id': 'drop_new', 'workload_id': 'balanced', 'seed': 12000,
            'status': status, 'harm_weighted_cost': harm, 'p95_latency_ms': p95, 'event_miss_rate': miss,
            'drop_rate': miss, 'metrics': {'observed_total': observed, 'drop_total_runtime': 5}}


def test_cells_pair_ours_with_upstreams_runs_of_the_same_seed_on_each_clock():
    runs = {
        'deterministic_vclock': [record('deterministic_vclock', 33.7, 3.0, 1 / 3)],
        'upstream_vclock': [record('upstream_vclock', 33.7, 3.0, 1 / 3)],
        'deterministic': [record('deterministic', 34.0, 5.0, 1 / 3)],
        'upstream': [record('upstream', 33.8, 4.0, 1 / 3), record('upstream', 34.2, 4.4, 1 / 3)],
        'live_2c_paced': [record('live_2c_paced', 20.0, 8.4, 0.1, observed=12)],
    }
    out = compare_cells(runs)
    (cell,) = out['cells']
    assert cell['vclock']['counts_equal'] and cell['vclock']['harm_rel_diff'] == 0.0
    assert cell['wall']['harm_rel_diff'] == pytest.approx(0.0)  # 34.0 against the mean of 33.8 and 34.2
    assert cell['wall']['upstream_harm_spread_rel'] == pytest.approx(0.4 / 34.0)
    live = cell['live']['live_2c_paced']
    assert live['p95_ratio'] == pytest.approx(2.0) and live['harm_ratio'] == pytest.approx(20.0 / 34.0)
    assert live['event_miss_rate'] == [0.1, 1 / 3]
    assert out['totals']['vclock']['cells_within_0.1pct'] == 1
    assert out['totals']['live_2c_paced']['miss_equal_cells'] == 0


def test_different_counts_are_reported_not_hidden():
    runs = {'deterministic_vclock': [record('deterministic_vclock', 33.7, 3.0, 1 / 3, observed=9)],
            'upstream_vclock': [record('upstream_vclock', 33.7, 3.0, 1 / 3)]}
    out = compare_cells(runs)
    assert out['cells'][0]['vclock']['counts_equal'] is False
    assert out['totals']['vclock']['counts_equal_cells'] == 0
