"""The `restart` key of a graph node: validated with a line each, carried as reserved wiring parameters."""

from __future__ import annotations

import textwrap

import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.restart import RestartPolicy, RestartSpec, restart_from_params
from schnitzel_stream_ros.graph.validate import compile_graph, load_and_validate
from schnitzel_stream_ros.graph.wiring import is_reserved_param, node_load_request
from schnitzel_stream_ros.runtime.load_spec import LoadError, parse_load_request

GRAPH = """
    version: 2
    nodes:
      - {id: src, plugin: SyntheticSource, config: {count: 1}}
      - id: ident
        plugin: Identity
        restart: RESTART
      - {id: out, kind: sink, plugin: PrintSink}
    edges:
      - {from: src, to: ident}
      - {from: ident, to: out}
"""


def _write(tmp_path, restart: str):
    path = tmp_path / 'g.yaml'
    path.write_text(textwrap.dedent(GRAPH).replace('RESTART', restart))
    return path


def test_a_valid_policy_becomes_reserved_parameters_the_container_reads_back(tmp_path):
    graph = compile_graph(_write(tmp_path, '{policy: on-failure, max_restarts: 4, backoff_sec: 0.5}'))
    request = node_load_request(graph, graph.node('ident'))
    params = dict(request.parameters)
    assert {k: v for k, v in params.items() if k.startswith('restart.')} == {
        'restart.policy': 'on-failure', 'restart.max_restarts': 4, 'restart.backoff_sec': 0.5,
    }
    assert all(is_reserved_param(k) for k in params if k.startswith('restart.'))
    spec = parse_load_request(
        package_name=request.package_name, plugin_name=request.plugin_name, node_name=request.node_name,
        node_namespace=request.node_namespace, remap_rules=request.remap_rules, parameters=params,
        registry=PluginRegistry(Allowlist()),
    )
    assert spec.restart == RestartSpec(RestartPolicy.ON_FAILURE, 4, 0.5)
    # no key: no parameters, today's behaviour
    plain = compile_graph(_write(tmp_path, 'null'))
    assert not any(k.startswith('restart.') for k in node_load_request(plain, plain.node('ident')).parameters)


@pytest.mark.parametrize(
    ('restart', 'expected'),
    [
        ('{policy: sometimes}', "restart policy 'sometimes' is not one of ['on-failure', 'never']"),
        ('{policy: never, max_restarts: -1}', 'max_restarts must be an integer >= 0, got -1'),
        ('{policy: on-failure, backoff_sec: fast}', "backoff_sec must be a number in [0, 3600], got 'fast'"),
        ('{policy: never, retries: 3}', "unknown restart key 'retries'"),
        ('on-failure', "restart must be a mapping {policy, max_restarts, backoff_sec}, got 'on-failure'"),
    ],
)
def test_a_bad_policy_is_one_error_line_naming_file_line_and_node(tmp_path, restart, expected):
    result = load_and_validate(_write(tmp_path, restart))
    assert not result.ok
    lines = [str(e) for e in result.errors]
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert lines[0].split(': ', 1)[0].rsplit(':', 1)[1] in ('5', '6', '7'), lines[0]  # file:line
    assert "node 'ident'" in lines[0]


def test_the_container_refuses_a_bad_restart_parameter():
    with pytest.raises(ValueError, match=r'wiring parameter restart\.policy'):
        restart_from_params({'restart.policy': 'maybe'})
    with pytest.raises(LoadError, match=r"node 'x': wiring parameter restart\.max_restarts"):
        parse_load_request(
            package_name='schnitzel_stream_ros', plugin_name='Identity', node_name='x', node_namespace='/',
            remap_rules=(), parameters={'restart.policy': 'never', 'restart.max_restarts': 'many'},
            registry=PluginRegistry(Allowlist()),
        )
