"""runtime/hot_replace.py: whether a new plugin instance fits a running node's wiring, and why not."""

from __future__ import annotations

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.runtime.hot_replace import wiring_problems
from schnitzel_stream_ros.runtime.load_spec import parse_load_request

WIRED = {'inputs.in': ['/g/src/out'], 'qos.in.depth': 10, 'inbox.in.max': 64}


def _spec(plugin: str, params: dict, remaps: tuple[str, ...] = ()):
    return parse_load_request(
        package_name='schnitzel_stream_ros', plugin_name=plugin, node_name='n', node_namespace='/g',
        remap_rules=remaps, parameters=params, registry=PluginRegistry(Allowlist()),
    )


def test_same_ports_fit_and_new_topics_are_a_rewire_not_a_problem():
    running = _spec('Identity', WIRED)
    assert wiring_problems(running, _spec('DedupPolicyNode', WIRED)) == []
    assert wiring_problems(running, _spec('Identity', {**WIRED, 'inputs.in': ['/g/other/out']})) == []


def test_each_misfit_is_named():
    running = _spec('Identity', WIRED)
    problems = wiring_problems(running, _spec('PrintSink', WIRED))
    assert problems == ['the new plugin is a sink, the running node a node']
    assert wiring_problems(running, _spec('Identity', {**WIRED, 'inbox.in.max': 5})) == [
        "input 'in': its QoS or inbox differs from the running node's (apply reloads such a node)"
    ]
    assert wiring_problems(running, _spec('Identity', WIRED, ('~/out:=/g/elsewhere',))) == [
        "remap rules differ from the running node's"
    ]
