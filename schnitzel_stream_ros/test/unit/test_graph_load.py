"""Graph loader: v2 format, upstream aliases, ${oc.env:...}, JSON, and the line of every element."""
from __future__ import annotations

import json

import pytest

from schnitzel_stream_ros.graph.interpolate import EnvText, InterpolationError, interpolate_text
from schnitzel_stream_ros.graph.load import load_graph, load_graph_text
from schnitzel_stream_ros.graph.model import NodeKind, Overflow, Reliability

ALIASES = """\
nodes:
  - node_id: a
    plugin: StaticSource
    kind: source
  - id: b
    plugin: PrintSink
    config:
      prefix: x
      __runtime__: {inbox_max: 3, inbox_overflow: error}
edges:
  - {src: a, dst: b, src_port: out, dst_port: in}
  - from: a
    to: b
    from_port: out
    to_port: in
    qos: {reliability: best_effort, depth: 2}
    inbox: {max: 5, overflow: drop_oldest}
"""


def test_aliases_and_no_version_means_v2_with_positions():
    result = load_graph_text(ALIASES, 'g.yaml')
    assert result.errors == []
    graph = result.graph
    assert graph.version == 2 and graph.source == 'g.yaml' and len(graph.sha256) == 64
    a, b = graph.nodes
    assert (a.id, a.kind, a.position.line) == ('a', NodeKind.SOURCE, 2)
    assert (b.id, b.kind, b.position.line) == ('b', None, 5)  # kind not written: the plugin decides
    assert b.params == {'prefix': 'x'} and b.param_position('prefix').line == 8
    assert (b.runtime.inbox_max, b.runtime.inbox_overflow) == (3, Overflow.ERROR)
    first, second = graph.edges
    assert (first.src, first.dst, first.src_port, first.dst_port) == ('a', 'b', 'out', 'in')
    assert first.position.line == 11
    assert second.position.line == 12
    assert second.delivery.qos.reliability is Reliability.BEST_EFFORT and second.delivery.qos.depth == 2
    assert (second.delivery.inbox_max, second.delivery.overflow) == (5, Overflow.DROP_OLDEST)
    assert str(first.position) == 'g.yaml:11'


def test_json_graph_keeps_json_semantics_and_lines(tmp_path):
    path = tmp_path / 'g.json'
    path.write_text(json.dumps({
        'version': 2,
        'nodes': [{'id': 'a', 'plugin': 'StaticSource', 'config': {'packets': [{'payload': {'n': 1e3}}]}},
                  {'id': 'b', 'plugin': 'PrintSink'}],
        'edges': [{'from': 'a', 'to': 'b'}],
    }, indent='\t'))
    result = load_graph(path)
    assert result.errors == []
    a, b = result.graph.nodes
    assert a.params['packets'][0]['payload']['n'] == 1000.0  # JSON number, not YAML 1.1's string '1e3'
    assert b.position.line > a.position.line > 1


def test_interpolation_whole_value_partial_default_and_escape():
    env = {'HOST': 'cam.local', 'PORT': '8554'}
    port = interpolate_text('${oc.env:PORT}', env)
    assert port == '8554' and isinstance(port, EnvText)
    assert interpolate_text('rtsp://${oc.env:HOST}:${oc.env:PORT}/s', env) == 'rtsp://cam.local:8554/s'
    assert interpolate_text('${oc.env:MISSING,fallback}', env) == 'fallback'
    assert interpolate_text("${oc.env:MISSING,'a b '}", env) == 'a b '
    assert interpolate_text('${oc.env:MISSING,null}', env) is None
    assert interpolate_text(r'\${oc.env:HOST}', env) == '${oc.env:HOST}'
    with pytest.raises(InterpolationError, match='MISSING is not set'):
        interpolate_text('${oc.env:MISSING}', env)
    with pytest.raises(InterpolationError, match='unsupported interpolation'):
        interpolate_text('${oc.select:x}', env)


def test_interpolated_values_reach_the_graph():
    text = ('nodes:\n  - id: a\n    plugin: ${oc.env:PLUGIN,StaticSource}\n'
            '    config: {kind: "${oc.env:K}"}\nedges: []\n')
    graph = load_graph_text(text, 'g.yaml', env={'K': 'sensor'}).graph
    assert graph.nodes[0].plugin == 'StaticSource' and graph.nodes[0].params == {'kind': 'sensor'}


@pytest.mark.parametrize(('text', 'message'), [
    ('job: {name: x}\n', "the v1 'job:' format is no longer supported"),
    ('version: 3\nnodes: []\n', 'unsupported graph version 3'),
    ('version: "two"\nnodes: []\n', "unsupported graph version 'two'"),
    ('- a\n- b\n', 'must be a mapping at the top level'),
    ('nodes: [\n', 'not valid YAML'),
    ('{}\n', 'not a graph file'),
])
def test_files_that_are_not_v2_graphs_yield_no_graph(text, message):
    result = load_graph_text(text, 'g.yaml')
    assert result.graph is None
    assert len(result.errors) == 1 and message in str(result.errors[0])
    assert str(result.errors[0]).startswith('g.yaml:')


def test_unreadable_file_is_one_error(tmp_path):
    result = load_graph(tmp_path / 'missing.yaml')
    assert result.graph is None and 'cannot read graph file' in str(result.errors[0])
