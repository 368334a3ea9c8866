"""config.pace_sources: a live run paced like upstream's in-process runner, against the same run unpaced.

The graph (SyntheticRiskEventSource -> BurstNode x3 -> SlowScoringNode with an inbox of 4, drop_new
-> BackpressureMetricsSink) runs live with `schnitzel-stream run`. Paced, the source waits until the
graph has drained each event, so the processor's inbox never holds more than one event's 3 copies
and nothing may be dropped. Unpaced, the source emits all 60 events at once into a processor that
needs 2 ms per packet: its inbox overflows. Both runs account for every packet the burst published.

Across two containers (two real container processes, the burst -> processor edge over DDS), the
source's container learns from the second container's credits (runtime/pace_link.py) when the
packets it sent there have been taken in and drained: paced, nothing is dropped and no credit had to
be written off; the same two-container run unpaced overflows. The start gate opened only once the
source's container had heard the second container's credit (no gate warning, no first packet that
waited out the grace for a credit), and the credit reporters ran without an error.

The outcome of each run is stated exactly (observability/report.py, docs/runtime.md): paced, `ok`
(exit 0) — nothing lost, nothing to look at; unpaced, `failed` (exit 1) — and lost by nothing but
the processor's drop_new inbox. `degraded` (exit 3: lost nothing, but warnings or failure counters)
is never right here: on a loaded machine it could only come from a warning such as a start gate
that found a crossing topic unmatched after 15 s, and then the paced run's premise — wired before
the first packet — did not hold; the report's warnings are in the failure message.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from schnitzel_stream_ros.observability.report import OUTCOME_EXIT_CODES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EVENTS = 60
COPIES = 3


def graph(tmp_path: Path, paced: bool, two_containers: bool = False) -> Path:
    doc = {
        'version': 2,
        'config': {'pace_sources': paced},
        'nodes': [
            {'id': 'src', 'kind': 'source', 'plugin': 'SyntheticRiskEventSource',
             'config': {'total_events': EVENTS, 'seed': 5}},
            {'id': 'burst', 'plugin': 'BurstNode', 'config': {'count': COPIES}},
            {'id': 'processor', 'plugin': 'SlowScoringNode',
             'config': {'delay_ms': 2.0, '__runtime__': {'inbox_max': 4, 'inbox_overflow': 'drop_new'}}},
            {'id': 'sink', 'kind': 'sink', 'plugin': 'BackpressureMetricsSink',
             'config': {'output_path': str(tmp_path / f'events_{paced}.jsonl')}},
        ],
        'edges': [{'from': 'src', 'to': 'burst'}, {'from': 'burst', 'to': 'processor'},
                  {'from': 'processor', 'to': 'sink'}],
    }
    if two_containers:  # processor and sink in a second process; DDS keeps every packet of the run
        depth = EVENTS * COPIES
        doc['nodes'][1]['qos'] = {'out': {'reliability': 'reliable', 'depth': depth}}
        doc['edges'][1]['qos'] = {'reliability': 'reliable', 'depth': depth}
        for node in doc['nodes'][2:]:
            node['container'] = 'second'
    path = tmp_path / f'paced_{paced}_{two_containers}.yaml'
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(tmp_path: Path, env: dict, paced: bool, two_containers: bool = False) -> dict:
    """The run's metrics, after checking its outcome: paced `ok`, unpaced `failed` by inbox drops only."""
    report_path = tmp_path / f'report_{paced}_{two_containers}.json'
    path = graph(tmp_path, paced, two_containers)
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros.cli', 'run', str(path),
           '--report-json', str(report_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert report_path.exists(), done.stderr
    report: dict[str, Any] = json.loads(report_path.read_text())
    metrics = report['metrics']
    expected = 'ok' if paced else 'failed'
    why = (f"{report['outcome']}: lost {report['lost']}, warnings {report['warnings']}, "
           f"errors {report['errors']}")
    assert (report['outcome'], done.returncode) == (expected, OUTCOME_EXIT_CODES[expected]), why
    # unpaced, the only loss is the processor's inbox overflowing (drop_new counts as lost)
    drops = 0 if paced else metrics['node.processor.inbox_dropped_total']
    assert report['lost'] == {'dropped': drops, 'node_errors': 0, 'refused': 0, 'transport_failures': 0}, why
    assert not any('start gate' in w or 'pace' in w for w in report['warnings']), report['warnings']
    return metrics


def test_paced_sources_drop_nothing_where_the_same_run_unpaced_overflows(tmp_path, ros_env):
    paced, unpaced = run(tmp_path, ros_env, True), run(tmp_path, ros_env, False)
    for metrics in (paced, unpaced):
        assert metrics['node.burst.produced'] == EVENTS * COPIES
        assert metrics['node.burst.produced'] == (metrics['node.processor.consumed']
                                                  + metrics['node.processor.inbox_dropped_total'])
    assert paced['packets.dropped_total'] == 0
    assert paced['node.sink.written_total'] == EVENTS * COPIES
    assert unpaced['node.processor.inbox_dropped_total'] > 0


def test_paced_sources_across_two_container_processes_wait_for_the_second_containers_credit(
        tmp_path, ros_env):
    paced, unpaced = run(tmp_path, ros_env, True, True), run(tmp_path, ros_env, False, True)
    for metrics in (paced, unpaced):
        assert metrics['node.burst.produced'] == EVENTS * COPIES
        assert metrics['transport.dds_received_total'] == EVENTS * COPIES  # the edge really crossed
        assert metrics['node.burst.produced'] == (metrics['node.processor.consumed']
                                                  + metrics['node.processor.inbox_dropped_total'])
    assert paced['packets.dropped_total'] == 0
    assert paced['node.sink.written_total'] == EVENTS * COPIES
    assert paced['transport.pace_credits_published_total'] > 0
    assert paced['transport.pace_credit_timeouts_total'] == 0
    assert paced['transport.pace_credit_grace_expired_total'] == 0  # the gate waited for the credit
    assert paced['transport.pace_credit_report_errors_total'] == 0
    assert unpaced['node.processor.inbox_dropped_total'] > 0
