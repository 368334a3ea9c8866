"""The graph's `config.state` and a node's `state`: validated with a line each, carried as reserved
wiring parameters to stateful nodes only; and `schnitzel-stream state list|inspect|clear`."""

from __future__ import annotations

import json
import textwrap

import pytest

from schnitzel_stream_ros.cli import main as cli_main
from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.state_config import StateSpec, state_from_params
from schnitzel_stream_ros.graph.validate import compile_graph, load_and_validate
from schnitzel_stream_ros.graph.wiring import is_reserved_param, node_load_request
from schnitzel_stream_ros.runtime.load_spec import LoadError, parse_load_request
from schnitzel_stream_ros.state.store import CheckpointStore

GRAPH = """
    version: 2
    config:
      state: STATE
    nodes:
      - {id: src, plugin: StaticSource, config: {kind: event}}
      - id: dedup
        plugin: DedupPolicyNode
        state: NODE
      - {id: out, kind: sink, plugin: PrintSink}
    edges:
      - {from: src, to: dedup}
      - {from: dedup, to: out}
"""


def _write(tmp_path, state: str, node: str = 'null'):
    path = tmp_path / 'g.yaml'
    path.write_text(textwrap.dedent(GRAPH).replace('STATE', state).replace('NODE', node))
    return path


def test_stateful_nodes_get_the_settings_with_their_own_over_the_graphs(tmp_path):
    graph = compile_graph(_write(tmp_path, '{path: s.db, checkpoint_sec: 2}', '{max_keys: 50}'))
    params = dict(node_load_request(graph, graph.node('dedup')).parameters)
    assert {k: v for k, v in params.items() if k.startswith('state.')} == {
        'state.path': 's.db', 'state.checkpoint_sec': 2.0, 'state.max_bytes': 16 * 1024 * 1024,
        'state.max_keys': 50,
    }
    assert all(is_reserved_param(k) for k in params if k.startswith('state.'))
    # a stateless plugin gets nothing, whatever the graph says
    assert not any(k.startswith('state.') for k in node_load_request(graph, graph.node('out')).parameters)
    spec = parse_load_request(
        package_name='schnitzel_stream_ros', plugin_name='DedupPolicyNode', node_name='dedup',
        node_namespace='/', remap_rules=(), parameters=params, registry=PluginRegistry(Allowlist()),
    )
    assert spec.state == StateSpec('s.db', 2.0, 16 * 1024 * 1024, 50)


@pytest.mark.parametrize(
    ('state', 'node', 'expected', 'line'),
    [
        ('{checkpoint_sec: 1}', 'null', 'state needs a path', 4),
        ('{path: s.db, checkpoint_sec: 0}', 'null', 'state checkpoint_sec must be a number in [0.05, 3600]',
         4),
        ('{path: s.db, every: 3}', 'null', "unknown state key 'every'", 4),
        ('{path: s.db}', '{max_keys: 0}', 'state max_keys must be an integer in [1, 100000000], got 0', 9),
        ('{path: s.db}', '{path: other.db}', "unknown state key 'path'", 9),
    ],
)
def test_bad_state_settings_are_one_line_naming_file_and_line(tmp_path, state, node, expected, line):
    result = load_and_validate(_write(tmp_path, state, node))
    lines = [str(e) for e in result.errors]
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert f'g.yaml:{line}:' in lines[0]


def test_the_container_refuses_a_bad_state_parameter():
    with pytest.raises(ValueError, match=r'wiring parameter state\.max_bytes'):
        state_from_params({'state.path': 'x.db', 'state.max_bytes': 'lots'})
    with pytest.raises(LoadError, match=r"node 'd': wiring parameter state\.path"):
        parse_load_request(
            package_name='schnitzel_stream_ros', plugin_name='DedupPolicyNode', node_name='d',
            node_namespace='/', remap_rules=(), parameters={'state.checkpoint_sec': 1.0},
            registry=PluginRegistry(Allowlist()),
        )


def test_state_verb_lists_inspects_and_clears_checkpoints(tmp_path, capsys):
    db = tmp_path / 's.db'
    store = CheckpointStore(db)
    store.write('/site/dedup', 'm:DedupPolicyNode', 1, '{"entries": []}', 0.5)
    store.write('/site/tracker', 'm:IouTrackerNode', 1, '{"cameras": {}}', 0.5)
    store.write('/site/tracker', 'm:IouTrackerNode', 1, '{"cameras": {"c": 1}}', 0.5)
    graph = _write(tmp_path, f'{{path: {db}}}')
    assert cli_main(['state', 'list', str(graph), '--json']) == 0  # the graph names the file
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r['node'], r['seq']) for r in rows] == [('/site/dedup', 1), ('/site/tracker', 2)]
    assert cli_main(['state', 'inspect', str(db), '--node', '/site/tracker']) == 0
    assert json.loads(capsys.readouterr().out)['state'] == {'cameras': {'c': 1}}
    assert cli_main(['state', 'clear', str(db), '--node', '/site/dedup']) == 0
    assert [r.node for r in CheckpointStore(db).list()] == ['/site/tracker']
    assert cli_main(['state', 'inspect', str(db), '--node', '/site/dedup']) == 1
    assert cli_main(['state', 'list', str(tmp_path / 'missing.db')]) == 2
    assert 'no checkpoint file' in capsys.readouterr().err
