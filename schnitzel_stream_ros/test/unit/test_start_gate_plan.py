"""GatePlan: what a graph needs before it starts, its JSON form (a command-line input), and `missing`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.runtime.start_gate import (
    MAX_PLAN_BYTES,
    GatePlan,
    matched_subscriptions,
    pace_reporters,
    parse_await,
)

PACKAGE = Path(__file__).resolve().parents[2]


def plan_of(name: str) -> GatePlan:
    graph = compile_graph(PACKAGE / 'test/graphs/valid' / name, PluginRegistry(Allowlist()))
    return GatePlan.from_graph(graph)


def test_plan_of_two_containers_lists_nodes_per_container_and_the_crossing_topic():
    plan = plan_of('two_containers.yaml')
    assert plan.containers == {
        '/camera': ('/grabber', '/to_ref'),
        '/storage': ('/from_ref', '/files', '/sampled_out'),
    }
    assert plan.cross_topics == {'/to_ref/out': 2}  # consumed by two nodes of the other container
    assert GatePlan.from_json(plan.to_json()) == plan


def test_missing_names_every_absent_node_container_and_unmatched_topic():
    plan = plan_of('two_containers.yaml')
    loaded = {'/camera': ['/grabber', '/to_ref'], '/storage': ['/files']}
    assert plan.missing(loaded, {'/to_ref/out': 1}) == [
        'node /from_ref not loaded in /storage',
        'node /sampled_out not loaded in /storage',
        'topic /to_ref/out: 1/2 subscriptions matched',
    ]
    assert plan.missing({'/camera': ['/grabber', '/to_ref']}, {})[0] == 'container /storage not reachable'
    everything = {'/camera': ['/grabber', '/to_ref'],
                  '/storage': ['/from_ref', '/files', '/sampled_out', '/x']}
    assert plan.missing(everything, {'/to_ref/out': 2}) == []


def test_a_paced_graph_also_waits_until_each_crossing_topic_is_credited_by_its_consumer_containers(tmp_path):
    text = (PACKAGE / 'test/graphs/valid/two_containers.yaml').read_text()
    assert text.count('\nconfig: {}\n') == 1
    paced = tmp_path / 'paced.yaml'
    paced.write_text(text.replace('\nconfig: {}\n', '\nconfig: {pace_sources: true}\n'))
    plan = GatePlan.from_graph(compile_graph(paced, PluginRegistry(Allowlist())))
    assert plan.pace_topics == {'/to_ref/out': 1}  # two consumer nodes, one consumer container
    assert plan_of('two_containers.yaml').pace_topics == {}  # unpaced: nothing more to wait for
    assert GatePlan.from_json(plan.to_json()) == plan
    assert 'pace_topics' not in plan_of('two_containers.yaml').to_json()  # older plans stay as they were
    everything = {'/camera': ['/grabber', '/to_ref'], '/storage': ['/from_ref', '/files', '/sampled_out']}
    assert plan.missing(everything, {'/to_ref/out': 2}) == [
        'topic /to_ref/out: pace credits heard from 0/1 containers']
    heard = pace_reporters([{'topics': {'/to_ref/out': {'external_subscribers': 2, 'pace_reporters': 1}}}])
    assert plan.missing(everything, {'/to_ref/out': 2}, heard) == []
    with pytest.raises(ValueError, match="'pace_topics' must map topic names to positive counts"):
        GatePlan.from_json('{"containers": {}, "cross_topics": {}, "pace_topics": {"/t": 0}}')


def test_matched_counts_come_from_the_publishing_containers_snapshot():
    snaps = [{'topics': {'/a/out': {'external_subscribers': n}}} for n in (1, 0)]
    assert matched_subscriptions(snaps) == {'/a/out': 1}


@pytest.mark.parametrize('text, problem', [
    ('not json', 'not JSON'),
    ('[]', "expected an object with 'containers' and 'cross_topics'"),
    ('{"containers": {}, "cross_topics": {}, "x": 1}', "expected an object"),
    ('{"containers": {"c": ["/n"]}, "cross_topics": {}}', "'containers' must map"),
    ('{"containers": {"/c": [1]}, "cross_topics": {}}', "'containers' must map"),
    ('{"containers": {}, "cross_topics": {"/t": 0}}', "'cross_topics' must map"),
    ('{"containers": {}, "cross_topics": {"/t": true}}', "'cross_topics' must map"),
    ('[' * 100_000 + ']' * 100_000, 'not JSON'),
    (' ' * (MAX_PLAN_BYTES + 1), 'bytes, more than'),
    (json.dumps({'containers': {'/c': [f'/n{i}' for i in range(10_001)]}, 'cross_topics': {}}),
     'more than 10000'),
])
def test_a_bad_plan_is_one_line_naming_the_problem(text, problem):
    with pytest.raises(ValueError) as refused:
        GatePlan.from_json(text)
    assert problem in str(refused.value) and '\n' not in str(refused.value)


def test_awaited_outside_subscribers_add_to_the_graphs_own():
    plan = plan_of('two_containers.yaml').awaiting(parse_await(['/to_ref/out', '/grabber/out=2']))
    assert plan.cross_topics == {'/to_ref/out': 3, '/grabber/out': 2}
    for bad in ('to_ref/out', '/x=0', '/x=two'):
        with pytest.raises(ValueError, match='expected /topic or /topic=N'):
            parse_await([bad])
