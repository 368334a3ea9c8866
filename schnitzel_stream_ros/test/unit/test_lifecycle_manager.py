"""The lifecycle manager's plan: which order, which containers, what it accepts as a plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.runtime.lifecycle_manager import BringUpPlan, bring_up_order
from schnitzel_stream_ros.runtime.start_gate import GatePlan

GRAPHS = Path(__file__).resolve().parents[1] / 'graphs' / 'valid'


def _graph(name: str):
    return compile_graph(GRAPHS / name, PluginRegistry(Allowlist()))


@pytest.mark.parametrize('name', ['chain.yaml', 'fan_in_out.yaml', 'two_containers.yaml'])
def test_every_node_comes_after_all_its_consumers(name):
    graph = _graph(name)
    order = bring_up_order(graph)
    assert sorted(order) == sorted(n.id for n in graph.nodes)
    position = {node: i for i, node in enumerate(order)}
    for edge in graph.edges:
        assert position[edge.dst] < position[edge.src], f'{edge.src} -> {edge.dst} activated producer first'


def test_fan_in_out_order_is_sinks_then_the_merge_then_its_producers():
    order = bring_up_order(_graph('fan_in_out.yaml'))
    assert order[:2] == ('screen', 'log') and order[2] == 'merge'
    assert set(order[3:]) == {'burst', 'beacon', 'cam'} and order.index('cam') > order.index('burst')


def test_the_plan_names_full_node_names_and_waits_for_crossing_topics_even_when_managed(tmp_path):
    text = (GRAPHS / 'two_containers.yaml').read_text().replace('config: {}', 'config: {autostart: false}')
    managed = tmp_path / 'managed.yaml'
    managed.write_text(text)
    graph = compile_graph(managed, PluginRegistry(Allowlist()))
    plan = BringUpPlan.from_graph(graph)
    assert GatePlan.from_graph(graph).cross_topics == {}  # the start gate leaves managed nodes alone
    # the manager waits for them, between configure and activate
    assert plan.gate.cross_topics and plan.gate.cross_topics == GatePlan.from_graph(
        _graph('two_containers.yaml')).cross_topics
    held = [n for nodes in plan.gate.containers.values() for n in nodes]
    assert sorted(plan.order) == sorted(held) and all(n.startswith('/') for n in plan.order)
    assert BringUpPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize('text, message', [
    ('[', 'not JSON'),
    ('{"containers": {"/box": ["/a"]}, "cross_topics": {}}', "expected an object with"),
    ('{"containers": {"/box": ["/a"]}, "cross_topics": {}, "order": ["/a", "/b"]}', "every node of"),
    ('{"containers": {"/box": ["/a", "/b"]}, "cross_topics": {}, "order": ["/a", "/a"]}', "once"),
    ('{"containers": {"box": ["/a"]}, "cross_topics": {}, "order": ["/a"]}', "container names"),
])
def test_a_malformed_plan_is_refused_in_one_line(text, message):
    with pytest.raises(ValueError, match=message):
        BringUpPlan.from_json(text)
