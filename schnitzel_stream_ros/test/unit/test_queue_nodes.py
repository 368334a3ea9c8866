"""The queue plugins in graphs (upstream plugin paths and keys), run by the deterministic engine."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

UP = 'schnitzel_stream.nodes'


def run(graph: dict, name: str = 'g.yaml'):
    loaded = load_graph_text(yaml.safe_dump(graph, sort_keys=False), name)
    assert not loaded.errors, loaded.errors
    result = validate(loaded.graph)
    assert result.ok, [str(e) for e in result.errors]
    return DeterministicEngine(result.graph).run()


def validation_errors(graph: dict) -> list[str]:
    loaded = load_graph_text(yaml.safe_dump(graph, sort_keys=False), 'bad.yaml')
    if loaded.errors:
        return [str(e) for e in loaded.errors]
    return [str(e) for e in validate(loaded.graph).errors]


def events(n: int) -> list[dict]:
    return [
        {'kind': 'event', 'source_id': 'cam1', 'payload': {'i': i}, 'meta': {'idempotency_key': f'ev-{i}'}}
        for i in range(n)
    ]


def producer_graph(queue: str, n: int) -> dict:
    return {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': f'{UP}.dev:StaticSource',
                'config': {'packets': events(n)},
            },
            {
                'id': 'q',
                'kind': 'sink',
                'plugin': f'{UP}.durable_sqlite:SqliteQueueSink',
                'config': {'path': queue},
            },
        ],
        'edges': [{'from': 'src', 'to': 'q'}],
    }


def test_upstream_store_and_forward_pattern(tmp_path):
    queue = str(tmp_path / 'q.db')
    out = tmp_path / 'out.jsonl'
    first = run(producer_graph(queue, 5))
    assert first.errors == []
    run(producer_graph(queue, 5))  # replaying the same events: idempotent, still 5 rows
    conn = sqlite3.connect(queue)
    assert conn.execute('SELECT COUNT(*) FROM packets').fetchone()[0] == 5
    conn.close()

    drain = {
        'version': 2,
        'nodes': [
            {
                'id': 'qsrc',
                'kind': 'source',
                'plugin': f'{UP}.durable_sqlite:SqliteQueueSource',
                'config': {'path': queue, 'limit': 3},
            },
            # kind written out: upstream's default kind is node; ours would take the plugin's role (sink)
            {
                'id': 'file',
                'kind': 'node',
                'plugin': f'{UP}.file_sink:JsonlSink',
                'config': {'path': str(out), 'forward': True},
            },
            {
                'id': 'ack',
                'kind': 'sink',
                'plugin': f'{UP}.durable_sqlite:SqliteQueueAckSink',
                'config': {'path': queue},
            },
        ],
        'edges': [{'from': 'qsrc', 'to': 'file'}, {'from': 'file', 'to': 'ack'}],
    }
    outcome = run(drain)
    assert outcome.errors == []
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r['payload']['i'] for r in records] == [0, 1, 2]  # limit 3, seq order
    durable = records[0]['meta']['durable']
    assert durable['queue'] == 'sqlite' and durable['seq'] == 1 and durable['node_id'] == 'qsrc'
    run(drain)  # the next run takes the rest
    conn = sqlite3.connect(queue)
    assert conn.execute('SELECT COUNT(*) FROM packets').fetchone()[0] == 0
    assert conn.execute("SELECT value FROM queue_counters WHERE name = 'acked_total'").fetchone()[0] == 5
    conn.close()
    assert len(out.read_text().splitlines()) == 5


def test_unacked_rows_come_back_on_the_next_run(tmp_path):
    queue = str(tmp_path / 'q.db')
    run(producer_graph(queue, 3))
    no_ack = {
        'version': 2,
        'nodes': [
            {
                'id': 'qsrc',
                'kind': 'source',
                'plugin': f'{UP}.durable_sqlite:SqliteQueueSource',
                'config': {'path': queue},
            },
            {
                'id': 'print',
                'kind': 'sink',
                'plugin': f'{UP}.file_sink:JsonlSink',
                'config': {'path': str(tmp_path / 'seen.jsonl')},
            },
        ],
        'edges': [{'from': 'qsrc', 'to': 'print'}],
    }
    run(no_ack)
    run(no_ack)  # nothing acked the rows: the new run sees them again (the lease ended with the run)
    assert len((tmp_path / 'seen.jsonl').read_text().splitlines()) == 6


def test_ack_sink_names_the_problem(tmp_path):
    queue = str(tmp_path / 'q.db')
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': f'{UP}.dev:StaticSource',
                'config': {'packets': events(1)},
            },
            {
                'id': 'ack',
                'kind': 'sink',
                'plugin': f'{UP}.durable_sqlite:SqliteQueueAckSink',
                'config': {'path': queue},
            },
        ],
        'edges': [{'from': 'src', 'to': 'ack'}],
    }
    outcome = run(graph)
    assert (
        outcome.errors
        and "node 'ack'" in str(outcome.errors[0])
        and "meta['durable']" in str(outcome.errors[0])
    )


def test_non_json_payload_is_refused_by_name(tmp_path):
    from schnitzel_stream_ros.delivery.errors import NotJsonError
    from schnitzel_stream_ros.nodes.delivery.sqlite_queue_sink import SqliteQueueSink
    from schnitzel_stream_ros.packet import StreamPacket
    from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

    ctx = SimpleContext('events_q', resolve_params(SqliteQueueSink, {'path': str(tmp_path / 'q.db')}))
    sink = SqliteQueueSink(ctx)
    sink.setup()
    try:
        with pytest.raises(NotJsonError, match=r"node 'events_q'.*kind='detection'.*source_id='cam9'"):
            sink.process(StreamPacket.new('detection', 'cam9', {'frame': bytearray(3)}))
        assert ctx.counters['refused_total'] == 1
    finally:
        sink.close()
    assert ctx.counters['queue_depth'] == 0  # the gauges were reported


@pytest.mark.parametrize(
    ('config', 'message'),
    [
        ({'url': 'ftp://x/y'}, "parameter 'url'"),
        ({'url': 'http://127.0.0.1:1/e', 'headers': {'Authorization': 'Bearer abc'}}, 'auth_token_env'),
        ({'url': 'http://127.0.0.1:1/e', 'retry_on_status': [503, 'x']}, "'retry_on_status'[1]"),
    ],
)
def test_http_parameters_are_checked_before_start(tmp_path, config, message):
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': f'{UP}.dev:StaticSource',
                'config': {'packets': events(1)},
            },
            {'id': 'post', 'kind': 'sink', 'plugin': f'{UP}.http:HttpJsonSink', 'config': config},
        ],
        'edges': [{'from': 'src', 'to': 'post'}],
    }
    errors = validation_errors(graph)
    assert any(message in e for e in errors), errors
