"""What `/<ns>/_graph/apply` does with the text it is sent (hostile input): bounded, validated, one
line per problem, the label cleaned before it names anything."""

from __future__ import annotations

from schnitzel_stream_ros.runtime.graph_service import MAX_GRAPH_TEXT, MAX_LABEL, validate_text

VALID = """
version: 2
nodes:
  - {id: src, plugin: SyntheticSource, config: {count: 1}}
  - {id: out, kind: sink, plugin: PrintSink}
edges:
  - {from: src, to: out}
"""


def test_a_valid_graph_comes_back_validated():
    graph, errors = validate_text(VALID, 'v2.yaml')
    assert errors == [] and [n.id for n in graph.nodes] == ['src', 'out']


def test_oversized_text_invalid_text_and_hostile_labels_are_refused_in_one_line_each():
    assert validate_text('a' * (MAX_GRAPH_TEXT + 1), 'big.yaml') == (
        None, [f'big.yaml: the graph text is larger than {MAX_GRAPH_TEXT} bytes'])
    graph, errors = validate_text(VALID.replace('count: 1', 'count: 1, colour: red'), 'v3.yaml')
    assert graph is None and len(errors) == 1
    assert errors[0].startswith("v3.yaml:4: node 'src': unknown parameter 'colour'")
    graph, errors = validate_text('{', 'x\n\x1b[2J' * 1000)
    assert graph is None
    label = errors[0].split(':', 1)[0]
    assert len(label) <= MAX_LABEL and label.isprintable()
