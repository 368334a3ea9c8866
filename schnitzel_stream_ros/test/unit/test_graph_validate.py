"""Validator decisions on valid graphs: ports, delivery, topics, cycles, pass-through typing."""
from __future__ import annotations

import sys
from pathlib import Path

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.model import NodeKind, Overflow, Reliability
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph, validate

GRAPHS = Path(__file__).resolve().parents[1] / 'graphs'
sys.path.insert(0, str(GRAPHS))  # graph_test_plugins
REGISTRY = PluginRegistry(Allowlist(('schnitzel_stream_ros', 'graph_test_plugins')))


def check(text: str, env: dict[str, str] | None = None):
    loaded = load_graph_text(text, 'g.yaml', env=env or {})
    assert loaded.errors == []
    return validate(loaded.graph, REGISTRY)


def valid(text: str, env: dict[str, str] | None = None):
    result = check(text, env)
    assert result.errors == [], [str(e) for e in result.errors]
    return result.graph


def messages(text: str, env: dict[str, str] | None = None) -> list[str]:
    return [e.message for e in check(text, env).errors]


def test_fan_in_out_graph_is_fully_decided():
    graph = compile_graph(GRAPHS / 'valid' / 'fan_in_out.yaml', REGISTRY)
    cam = graph.node('cam')
    assert cam.kind is NodeKind.SOURCE and cam.namespace == '/plant/line1'
    assert cam.output_topics == {'out': '/plant/line1/camera/events'}
    assert (cam.output_qos['out'].reliability, cam.output_qos['out'].depth) == (Reliability.BEST_EFFORT, 5)
    (into_burst,) = graph.inputs_of('burst')
    assert into_burst.topics == ('/plant/line1/camera/events',)
    assert (into_burst.reliability, into_burst.depth) == (Reliability.BEST_EFFORT, 5)
    (into_merge,) = graph.inputs_of('merge')
    assert into_merge.topics == ('/plant/line1/burst/out', '/plant/line1/beacon/out')  # fan-in, edge order
    assert (into_merge.inbox_max, into_merge.overflow) == (32, Overflow.DROP_OLDEST)  # __runtime__
    (into_log,) = graph.inputs_of('log')
    assert (into_log.inbox_max, into_log.overflow) == (128, Overflow.BLOCK)  # edge beats __runtime__ default
    assert graph.node('log').namespace == '/plant/sinks'
    (into_screen,) = graph.inputs_of('screen')
    assert (into_screen.reliability, into_screen.depth) == (Reliability.RELIABLE, 1)
    assert into_screen.inbox_max == 64
    assert graph.node('burst').params == {'count': 3, 'meta_key': 'copy'}
    rate = graph.node('beacon').params['rate_hz']
    assert rate == 5.0 and isinstance(rate, float)


def test_edge_ports_default_to_out_in_or_the_only_port():
    graph = valid("""
nodes:
  - {id: src, plugin: StaticSource}
  - {id: split, plugin: 'graph_test_plugins:TwoOutNode'}
  - {id: opt, plugin: 'graph_test_plugins:OptionalInNode'}
  - {id: out, plugin: PrintSink}
edges:
  - {from: src, to: split}
  - {from: split, from_port: right, to: opt}
  - {from: opt, to: out}
""")
    assert [(e.src_port, e.dst_port) for e in graph.edges] == [('out', 'in'), ('right', 'in'), ('out', 'in')]
    assert [p.name for p in graph.node('opt').inputs] == ['in', 'control']  # optional input may stay open


def test_subscription_inherits_best_effort_from_its_publisher():
    graph = valid("""
nodes:
  - {id: src, plugin: StaticSource, qos: {out: {reliability: best_effort}}}
  - {id: out, plugin: PrintSink}
edges:
  - {from: src, to: out}
""")
    assert graph.edges[0].reliability is Reliability.BEST_EFFORT


def test_cycles_pass_only_through_delay_nodes_when_enabled():
    text = """
config: {allow_cycles: %s}
nodes:
  - {id: src, plugin: StaticSource}
  - {id: a, plugin: Identity}
  - {id: d, kind: delay, plugin: Delay}
edges:
  - {from: src, to: a}
  - {from: a, to: d}
  - {from: d, to: a}
"""
    assert messages(text % 'false') == [
        'closes a cycle (strict mode): a -> d -> a (set config.allow_cycles: true to allow cycles through '
        'delay/initial nodes)']
    graph = valid(text % 'true')
    assert graph.node('d').kind is NodeKind.DELAY


def test_pass_through_nodes_carry_the_kinds_and_profile_of_their_input():
    portable = """
nodes:
  - {id: src, plugin: StaticSource, config: {packets: [{kind: %s, payload: {n: 1}}]}}
  - {id: a, plugin: Identity}
  - {id: b, plugin: BurstNode}
  - {id: sink, plugin: JsonlSink, config: {path: /tmp/unused.jsonl}}
edges:
  - {from: src, to: a}
  - {from: a, to: b}
  - {from: b, to: sink}
"""
    valid(portable % 'event')  # Identity's declared inproc_any output does not block JSON data
    assert messages(portable % 'frame') == [
        "non-portable kind 'frame' from b.out into portable-only input sink.in (json_portable)"]
    assert messages("""
nodes:
  - {id: raw, plugin: 'graph_test_plugins:InprocSource'}
  - {id: a, plugin: Identity}
  - {id: sink, plugin: JsonlSink, config: {path: /tmp/unused.jsonl}}
edges:
  - {from: raw, to: a}
  - {from: a, to: sink}
""") == ['payload profile inproc_any of a.out is not accepted by sink.in (json_portable)']


def test_references_may_cross_containers_raw_bytes_may_not():
    compile_graph(GRAPHS / 'valid' / 'two_containers.yaml', REGISTRY)
    assert messages("""
nodes:
  - {id: grab, plugin: SyntheticSource, container: camera, config: {payload: bytes}}
  - {id: out, plugin: PrintSink, container: sinks}
edges:
  - {from: grab, to: out}
""") == ["raw kind 'bytes' cannot cross from container 'camera' to 'sinks' unencoded (encode it first, e.g. "
         'BytesToFileRefNode, or keep both nodes in one container)']


def test_env_text_takes_the_declared_parameter_type():
    text = """
nodes:
  - id: src
    plugin: SyntheticSource
    config: {count: '${oc.env:N,3}', rate_hz: '${oc.env:R}', kind: '${oc.env:K,7}'}
  - {id: out, plugin: PrintSink, config: {forward: '${oc.env:F,false}'}}
edges:
  - {from: src, to: out}
"""
    graph = valid(text, env={'R': '2.5'})
    assert graph.node('src').params['count'] == 3 and graph.node('src').params['rate_hz'] == 2.5
    assert graph.node('src').params['kind'] == '7' and type(graph.node('src').params['kind']) is str
    assert graph.node('out').params['forward'] is False
    assert messages(text.replace("'${oc.env:N,3}'", "'${oc.env:N,three}'"), env={'R': '1'}) == [
        "parameter 'count': expected int, got str 'three'"]


def test_container_group_named_like_a_node_is_refused():
    assert messages("""
nodes:
  - {id: src, plugin: StaticSource, container: out}
  - {id: out, plugin: PrintSink, container: out}
edges:
  - {from: src, to: out}
""") == ["container 'out' has the same ROS name as node 'out'"]
