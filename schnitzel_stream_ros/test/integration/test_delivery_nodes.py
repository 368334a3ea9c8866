"""Delivery plugins in graphs against the reference backend (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

pytestmark = pytest.mark.integration

UP = 'schnitzel_stream.nodes'
OURS = 'schnitzel_stream_ros.nodes.delivery'


def engine_for(graph: dict) -> DeterministicEngine:
    loaded = load_graph_text(yaml.safe_dump(graph, sort_keys=False), 'g.yaml')
    assert not loaded.errors, loaded.errors
    result = validate(loaded.graph)
    assert result.ok, [str(e) for e in result.errors]
    return DeterministicEngine(result.graph)


def events(n: int, prefix: str = 'ev') -> list[dict]:
    return [
        {
            'kind': 'event',
            'source_id': 'cam1',
            'payload': {'i': i},
            'meta': {'idempotency_key': f'{prefix}-{i}'},
        }
        for i in range(n)
    ]


@pytest.fixture
def backend():
    running = serve_in_thread()
    yield running
    running.stop()


def test_durable_forwarder_sink_accepts_and_delivers(tmp_path, backend):
    queue = str(tmp_path / 'q.db')
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': f'{UP}.dev:StaticSource',
                'config': {'packets': events(200)},
            },
            {
                'id': 'deliver',
                'kind': 'sink',
                'plugin': f'{OURS}.durable_forwarder_sink:DurableForwarderSink',
                'config': {
                    'path': queue,
                    'url': backend.url + '/events',
                    'drain_on_close_sec': 30,
                    'retry_backoff_sec': 0.05,
                    'retry_backoff_max_sec': 0.2,
                    'breaker_open_sec': 0.2,
                },
            },
        ],
        'edges': [{'from': 'src', 'to': 'deliver'}],
    }
    backend.set_control(mode='5xx', count=10)
    engine = engine_for(graph)
    outcome = engine.run()
    assert outcome.errors == []
    counters = engine.hosts['deliver'].metrics.counters
    assert counters['accepted_total'] == 200
    assert counters['acked_total'] == 200 and counters['queue_depth'] == 0
    assert counters['retry_total'] == 10 and counters['breaker_state_code'] == 0
    assert backend.stats()['unique'] == 200
    assert backend.keys() == {f'ev-{i}' for i in range(200)}


def test_durable_forwarder_sink_delivers_a_backlog_on_start(tmp_path, backend):
    queue_path = tmp_path / 'q.db'
    from schnitzel_stream_ros.packet import StreamPacket

    with DurableQueue(queue_path) as queue:  # left over from a run whose backend was down
        queue.enqueue_many(
            [
                StreamPacket.new('event', 'cam1', {'i': i}, meta={'idempotency_key': f'old-{i}'})
                for i in range(300)
            ]
        )
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': f'{UP}.dev:StaticSource',
                'config': {'packets': events(5)},
            },
            {
                'id': 'deliver',
                'kind': 'sink',
                'plugin': 'DurableForwarderSink',
                'config': {'path': str(queue_path), 'url': backend.url + '/e', 'drain_on_close_sec': 30},
            },
        ],
        'edges': [{'from': 'src', 'to': 'deliver'}],
    }
    assert engine_for(graph).run().errors == []
    assert backend.stats()['unique'] == 305


def test_upstream_pattern_queue_source_http_sink_ack(tmp_path, backend):
    """SqliteQueueSource -> HttpJsonSink(forward) -> SqliteQueueAckSink, upstream paths and keys."""
    queue = str(tmp_path / 'q.db')
    dead = str(tmp_path / 'dead.db')
    produce = {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': f'{UP}.dev:StaticSource',
                'config': {'packets': events(20)},
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
    assert engine_for(produce).run().errors == []
    drain = {
        'version': 2,
        'nodes': [
            {
                'id': 'qsrc',
                'kind': 'source',
                'plugin': f'{UP}.durable_sqlite:SqliteQueueSource',
                'config': {'path': queue, 'limit': 0},
            },
            {
                'id': 'post',
                'kind': 'node',
                'plugin': f'{UP}.http:HttpJsonSink',
                'config': {
                    'url': backend.url + '/events',
                    'forward': True,
                    'retry_backoff_sec': 0.01,
                    'retry_backoff_max_sec': 0.05,
                    'dead_letter_path': dead,
                    'body': 'packet',
                },
            },
            {
                'id': 'ack',
                'kind': 'sink',
                'plugin': f'{UP}.durable_sqlite:SqliteQueueAckSink',
                'config': {'path': queue},
            },
            {
                'id': 'failed',
                'kind': 'sink',
                'plugin': f'{UP}.file_sink:JsonlSink',
                'config': {'path': str(tmp_path / 'failed.jsonl')},
            },
        ],
        'edges': [
            {'from': 'qsrc', 'to': 'post'},
            {'from': 'post', 'to': 'ack'},
            {'from': 'post', 'from_port': 'failed', 'to': 'failed'},
        ],
    }
    backend.set_control(mode='5xx', count=2)  # retried inside the sink (3 attempts)
    engine = engine_for(drain)
    assert engine.run().errors == []
    assert engine.hosts['post'].metrics.counters['retry_total'] == 2
    assert backend.stats()['unique'] == 20
    with backend.server.store_lock:
        first = backend.server.store.events(1)[0]
    stored = json.loads(first['body'])  # body: packet -> the upstream envelope
    assert first['key'] == 'ev-0' and stored['payload'] == {'i': 0} and stored['kind'] == 'event'
    assert stored['meta']['idempotency_key'] == 'ev-0' and stored['meta']['durable']['node_id'] == 'qsrc'

    # a permanent refusal: not acked (stays queued), kept as a dead letter and emitted on `failed`
    assert engine_for(produce).run().errors == []  # replays: keys already delivered are queued again
    conn = sqlite3.connect(queue)
    requeued = conn.execute('SELECT COUNT(*) FROM packets').fetchone()[0]
    conn.close()
    assert requeued == 20  # the queue forgot delivered keys: at-least-once, the backend dedups
    backend.set_control(mode='400', count=1)
    engine = engine_for(drain)
    assert engine.run().errors == []
    counters = engine.hosts['post'].metrics.counters
    assert counters['failed_total'] == 1 and counters['dead_letter_total'] == 1
    assert len((tmp_path / 'failed.jsonl').read_text().splitlines()) == 1
    with DurableQueue(dead) as dead_queue:
        [row] = dead_queue.list_dead()
        assert row.http_status == 400 and 'rejected' in row.reason
    conn = sqlite3.connect(queue)
    assert conn.execute('SELECT COUNT(*) FROM packets').fetchone()[0] == 1  # the refused one, not acked
    conn.close()
    assert backend.stats()['duplicates'] == 19
