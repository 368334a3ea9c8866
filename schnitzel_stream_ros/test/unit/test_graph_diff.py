"""graph/diff.py: what `schnitzel-stream apply` would change, classified node by node."""

from __future__ import annotations

import textwrap

from schnitzel_stream_ros.graph.diff import diff_graphs, union_inputs
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.graph.wiring import node_load_request

BASE = """
    version: 2
    namespace: /d
    nodes:
      - {id: src, plugin: SyntheticSource, config: {rate_hz: 10.0, count: 5, kind: event}}
      - {id: dedup, plugin: DedupPolicyNode, config: {cooldown_sec: 5.0}}
      - {id: out, kind: sink, plugin: PrintSink}
    edges:
      - {from: src, to: dedup}
      - {from: dedup, to: out}
"""


def _graph(tmp_path, text: str, name: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return compile_graph(path)


def test_each_kind_of_change_is_classified(tmp_path):
    old = _graph(tmp_path, BASE, 'old.yaml')
    assert diff_graphs(old, old).empty
    # rate_hz is dynamic on SyntheticSource: set in place; count is not: a new instance
    dynamic = _graph(tmp_path, BASE.replace('rate_hz: 10.0', 'rate_hz: 20.0'), 'a.yaml')
    assert dict(diff_graphs(old, dynamic).reparameterised) == {'src': {'rate_hz': 20.0}}
    static = _graph(tmp_path, BASE.replace('count: 5', 'count: 6'), 'b.yaml')
    assert diff_graphs(old, static).replaced == ('src',)
    swapped = _graph(tmp_path, BASE.replace('plugin: DedupPolicyNode, config: {cooldown_sec: 5.0}',
                                            'plugin: Identity'), 'c.yaml')
    assert diff_graphs(old, swapped).replaced == ('dedup',)
    inserted = _graph(tmp_path, BASE.replace(
        '      - {id: out,', '      - {id: mark, plugin: Identity}\n      - {id: out,').replace(
        '{from: dedup, to: out}', '{from: dedup, to: mark}\n      - {from: mark, to: out}'), 'd.yaml')
    diff = diff_graphs(old, inserted)
    assert (diff.added, diff.rewired, diff.removed) == (('mark',), ('out',), ())
    assert diff.edges_added == ('dedup.out->mark.in', 'mark.out->out.in')
    assert diff.edges_removed == ('dedup.out->out.in',)
    back = diff_graphs(inserted, old)
    assert (back.removed, back.rewired) == (('mark',), ('out',))
    # what cannot change in place is reloaded: another inbox size, another container group
    resized = BASE.replace('{from: src, to: dedup}', '{from: src, to: dedup, inbox: {max: 5}}')
    resized = _graph(tmp_path, resized, 'e.yaml')
    assert diff_graphs(old, resized).reloaded == ('dedup',)


def test_what_apply_cannot_do_is_said_and_nothing_else(tmp_path):
    old = _graph(tmp_path, BASE, 'old.yaml')
    moved = BASE.replace('{id: out, kind: sink, plugin: PrintSink}',
                         '{id: out, kind: sink, plugin: PrintSink, container: other}')
    moved = _graph(tmp_path, moved, 'm.yaml')
    assert diff_graphs(old, moved).problems == (
        "container group 'other' is new: apply changes running containers only "
        '(restart the graph to add a container)',
    )
    renamed = _graph(tmp_path, BASE.replace('namespace: /d', 'namespace: /e'), 'n.yaml')
    assert 'the graph namespace changes (/d -> /e)' in diff_graphs(old, renamed).problems[0]


def test_a_node_fed_by_a_leaving_node_reads_both_while_it_drains(tmp_path):
    old = _graph(tmp_path, BASE.replace(
        '      - {id: out,', '      - {id: mark, plugin: Identity}\n      - {id: out,').replace(
        '{from: dedup, to: out}', '{from: dedup, to: mark}\n      - {from: mark, to: out}'), 'old.yaml')
    new = _graph(tmp_path, BASE, 'new.yaml')
    both = union_inputs(node_load_request(old, old.node('out')), node_load_request(new, new.node('out')))
    assert both.parameters['inputs.in'] == ['/d/dedup/out', '/d/mark/out']
