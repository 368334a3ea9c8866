"""The durable forwarder delivering into a real 3-node NATS JetStream cluster (issue 15, item 4).

Debian's nats-server, three servers clustered on 127.0.0.1 and free ports, streams with replicas 3,
started by the test (testing/nats_cluster.py). The oracle is the stream itself: every stored
message's Nats-Msg-Id is read back by sequence, so "nothing lost" is every accepted key in the
stream and "nothing duplicated" is no key stored twice (JetStream's duplicate window takes the
retries). Waits are event-driven with generous bounds; nothing asserts a rate.
"""

from __future__ import annotations

import collections
import json
import threading
import time

import pytest
import yaml

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig, body_for
from schnitzel_stream_ros.delivery.http_client import Verdict
from schnitzel_stream_ros.delivery.jetstream_target import JetStreamTarget
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine
from schnitzel_stream_ros.testing.nats_cluster import (
    LeafNode,
    NatsCluster,
    add_stream,
    nats_server_path,
    stream_leader,
    stream_msg_ids,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        nats_server_path() is None, reason='nats-server not installed (scripts/install-system-deps)'
    ),
]

#: How long every server of the cluster stays down in the outage test (the issue's figure).
OUTAGE_SEC = 60.0
FAST = dict(
    backoff=Backoff(base_sec=0.1, cap_sec=1.0),
    breaker_open_sec=0.5,
    idle_poll_sec=0.05,
    concurrency=4,
    batch_size=64,
)


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    with NatsCluster(tmp_path_factory.mktemp('nats'), size=3) as running:
        yield running


def event_packets(n: int, tag: str, start: int = 0) -> list[StreamPacket]:
    return [
        StreamPacket.new(
            'event',
            'cam0',
            {'site_id': 'site-1', 'camera_id': f'cam{i % 2}', 'event_type': 'PERSON', 'i': i, 'tag': tag},
            meta={'idempotency_key': f'{tag}:{i}'},
        )
        for i in range(start, start + n)
    ]


def nats_target(urls, stream: str, prefix: str) -> JetStreamTarget:
    return JetStreamTarget(servers=tuple(urls), stream=stream, subject_prefix=prefix, timeout_sec=2.0)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}')


def assert_each_key_once(ids: list[str], keys: set[str]) -> None:
    counts = collections.Counter(ids)
    missing = keys - set(counts)
    repeated = {k: c for k, c in counts.items() if c > 1}
    assert not missing, f'{len(missing)} accepted events not in the stream, e.g. {sorted(missing)[:5]}'
    assert not repeated, f'{len(repeated)} keys stored more than once, e.g. {list(repeated.items())[:5]}'
    assert set(counts) == keys


def test_subject_from_the_event_and_a_config_error_parks(cluster, tmp_path):
    add_stream(cluster.urls, 'ROUTE', ['route.>'])
    target = nats_target(cluster.urls, 'ROUTE', 'route')
    try:
        client = target.new_client()
        hostile = {'site_id': 'a.b *>', 'camera_id': 'c\x00d\n', 'event_type': '', 'x': 1}
        assert client.post(json.dumps(hostile).encode(), 'hostile-1').verdict is Verdict.DELIVERED
        again = client.post(json.dumps(hostile).encode(), 'hostile-1')  # same key: JetStream dedups
        assert again.verdict is Verdict.DELIVERED
        assert stream_msg_ids(cluster.urls, 'ROUTE') == ['hostile-1']
        assert target.link().duplicate_acks_total == 1  # the stream answered the repeat `duplicate`
        too_big = json.dumps({'site_id': 's', 'blob': 'x' * 1_600_000}).encode()  # max_payload: 1MB
        assert client.post(too_big, 'big-1').verdict is Verdict.REJECTED  # a dead letter, never retried
        import asyncio

        import nats

        async def subject_of_first() -> str:
            nc = await nats.connect(servers=cluster.urls)
            try:
                return (await nc.jetstream().get_msg('ROUTE', 1)).subject
            finally:
                await nc.close()

        assert asyncio.run(subject_of_first()) == 'route.a%2Eb%20%2A%3E.c%00d%0A._'
    finally:
        target.close()
    wrong = nats_target(cluster.urls, 'NOT_THIS_ONE', 'route')  # the subject belongs to ROUTE
    try:
        result = wrong.new_client().post(b'{"site_id":"s"}', 'k')
        assert result.verdict is Verdict.PARKED and 'expected stream' in result.error
    finally:
        wrong.close()


def test_rows_sent_again_after_a_crash_before_their_settle_are_stored_once(cluster, tmp_path):
    """A process that published rows and died before settling them leaves them due again: the
    next forwarder sends them again, with the same Nats-Msg-Id, and the duplicate window stores
    each once (the acks say `duplicate`)."""
    add_stream(cluster.urls, 'RESEND', ['resend.>'], replicas=3, duplicate_window_sec=600)
    queue = DurableQueue(tmp_path / 'queue.db', node_id='to_nats')
    try:
        queue.enqueue_many(event_packets(200, 'resend'))
        crashed = nats_target(cluster.urls, 'RESEND', 'resend')  # the process that died
        rows = queue.claim(100, lease_sec=60)
        client = crashed.new_client()
        assert all(
            client.post(body_for(row, 'payload'), row.idempotency_key).verdict is Verdict.DELIVERED
            for row in rows
        )
        crashed.close()
        queue.release([row.seq for row in rows])  # what a restart does: leases live in memory
        forwarder = Forwarder(queue, nats_target(cluster.urls, 'RESEND', 'resend'), ForwarderConfig(**FAST))
        forwarder.start()
        try:
            assert forwarder.wait_idle(120)
            duplicates = forwarder.target.link().duplicate_acks_total
        finally:
            forwarder.stop()
            forwarder.target.close()
    finally:
        queue.close()
    assert duplicates == 100
    assert_each_key_once(stream_msg_ids(cluster.urls, 'RESEND'), {f'resend:{i}' for i in range(200)})


def test_one_server_killed_mid_stream_loses_and_duplicates_nothing(cluster, tmp_path):
    add_stream(cluster.urls, 'KILL1', ['kill1.>'], replicas=3, duplicate_window_sec=600)
    queue = DurableQueue(tmp_path / 'queue.db', node_id='to_nats')
    forwarder = Forwarder(queue, nats_target(cluster.urls, 'KILL1', 'kill1'), ForwarderConfig(**FAST)).start()
    total, chunk = 3000, 50
    keys = {f'kill1:{i}' for i in range(total)}
    produced = threading.Event()

    def produce() -> None:
        for start in range(0, total, chunk):
            queue.enqueue_many(event_packets(chunk, 'kill1', start))
            time.sleep(0.02)
        produced.set()

    producer = threading.Thread(target=produce, daemon=True)
    killed = None
    try:
        producer.start()
        wait_for(lambda: queue.stats()['acked_total'] >= total // 4, 120, 'a quarter delivered')
        leader = stream_leader(cluster.urls, 'KILL1')
        killed = cluster.index_of(leader)
        cluster.kill_server(killed)  # SIGKILL of the stream's leader mid-stream
        acked_at_kill = queue.stats()['acked_total']
        assert produced.wait(300)
        assert forwarder.wait_idle(300), f'still queued: {queue.depth()}, in flight: {queue.in_flight()}'
        metrics = forwarder.metrics()
        link = forwarder.target.link()
        acks, duplicates = link.acks_total, link.duplicate_acks_total
    finally:
        forwarder.stop()
        forwarder.target.close()
        queue.close()
        if killed is not None:
            cluster.start_server(killed)
            cluster.wait_ready()
    print(f'one server killed: {metrics["retry_total"]} retries, {acks} acks, {duplicates} duplicates')
    assert metrics['acked_total'] == total and metrics['dead_letter_depth'] == 0
    assert metrics['acked_total'] > acked_at_kill  # delivery went on with two of three servers
    assert_each_key_once(stream_msg_ids(cluster.urls, 'KILL1'), keys)


def test_all_servers_down_then_the_backlog_is_delivered(cluster, tmp_path):
    add_stream(cluster.urls, 'OUTAGE', ['outage.>'], replicas=3, duplicate_window_sec=600)
    queue = DurableQueue(tmp_path / 'queue.db', node_id='to_nats')
    forwarder = Forwarder(
        queue, nats_target(cluster.urls, 'OUTAGE', 'outage'), ForwarderConfig(**FAST)
    ).start()
    keys = {f'outage:{i}' for i in range(600)}
    try:
        queue.enqueue_many(event_packets(200, 'outage'))
        assert forwarder.wait_idle(120)
        for index in range(cluster.size):
            cluster.kill_server(index)
        down_at = time.monotonic()
        for start in range(200, 600, 100):  # accepted while every server is down
            queue.enqueue_many(event_packets(100, 'outage', start))
            time.sleep(1.0)
        wait_for(lambda: forwarder.metrics()['breaker_state'] != 'closed', 60, 'the circuit to open')
        time.sleep(max(0.0, OUTAGE_SEC - (time.monotonic() - down_at)))
        assert queue.depth() == 400  # nothing delivered, nothing dropped while the cluster was away
        for index in range(cluster.size):
            cluster.start_server(index)
        back_at = time.monotonic()
        cluster.wait_ready(120)
        assert forwarder.wait_idle(180), f'still queued: {queue.depth()}, in flight: {queue.in_flight()}'
        drained_sec = time.monotonic() - back_at
        metrics = forwarder.metrics()
        link = forwarder.target.link()
        acks, duplicates = link.acks_total, link.duplicate_acks_total
    finally:
        forwarder.stop()
        forwarder.target.close()
        queue.close()
    print(
        f'backlog of 400 delivered {drained_sec:.1f} s after the servers were started again; '
        f'{metrics["retry_total"]} retries, {acks} acks, {duplicates} of them duplicates'
    )
    assert metrics['acked_total'] == 600 and metrics['dead_letter_depth'] == 0
    assert metrics['retry_total'] > 0 and metrics['breaker_opened_total'] >= 1
    assert_each_key_once(stream_msg_ids(cluster.urls, 'OUTAGE'), keys)


def test_edge_leaf_node_to_the_cloud_cluster_from_a_graph(cluster, tmp_path):
    """The edge→cloud layout of docs/buses.md: the edge's graph talks only to its local leaf
    server; the leaf connection carries publishes and acks to the cloud's R3 stream."""
    add_stream(cluster.urls, 'EDGE', ['edge.>'], replicas=3)
    with LeafNode(tmp_path / 'leaf', cluster.leaf_urls) as leaf:
        graph = {
            'version': 2,
            'nodes': [
                {
                    'id': 'src',
                    'kind': 'source',
                    'plugin': 'schnitzel_stream.nodes.dev:StaticSource',
                    'config': {
                        'packets': [
                            {
                                'kind': 'event',
                                'source_id': 'cam1',
                                'payload': {
                                    'site_id': 'edge-7',
                                    'camera_id': 'cam1',
                                    'event_type': 'PERSON',
                                    'i': i,
                                },
                                'meta': {'idempotency_key': f'edge:{i}'},
                            }
                            for i in range(300)
                        ]
                    },
                },
                {
                    'id': 'to_cloud',
                    'kind': 'sink',
                    'plugin': 'DurableForwarderSink',
                    'config': {
                        'path': str(tmp_path / 'edge_queue.db'),
                        'target': 'nats',
                        'nats_servers': [leaf.url],
                        'nats_stream': 'EDGE',
                        'nats_subject_prefix': 'edge',
                        'drain_on_close_sec': 120,
                        'retry_backoff_sec': 0.1,
                        'retry_backoff_max_sec': 1.0,
                    },
                },
            ],
            'edges': [{'from': 'src', 'to': 'to_cloud'}],
        }
        loaded = load_graph_text(yaml.safe_dump(graph, sort_keys=False), 'edge.yaml')
        assert not loaded.errors, loaded.errors
        result = validate(loaded.graph)
        assert result.ok, [str(e) for e in result.errors]
        engine = DeterministicEngine(result.graph)
        outcome = engine.run()
        assert outcome.errors == []
        counters = engine.hosts['to_cloud'].metrics.counters
        assert counters['accepted_total'] == 300 and counters['acked_total'] == 300
    assert_each_key_once(stream_msg_ids(cluster.urls, 'EDGE'), {f'edge:{i}' for i in range(300)})


def test_a_bus_target_without_its_parameters_is_refused_naming_them():
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'src',
                'kind': 'source',
                'plugin': 'schnitzel_stream.nodes.dev:StaticSource',
                'config': {'packets': []},
            },
            {
                'id': 'to_bus',
                'kind': 'sink',
                'plugin': 'DurableForwarderSink',
                'config': {'path': 'q.db', 'target': 'nats', 'nats_subject_prefix': 'a.*'},
            },
            {
                'id': 'to_mqtt',
                'kind': 'sink',
                'plugin': 'DurableForwarderSink',
                'config': {'path': 'q2.db', 'target': 'mqtt', 'mqtt_url': 'http://x'},
            },
        ],
        'edges': [{'from': 'src', 'to': 'to_bus'}, {'from': 'src', 'to': 'to_mqtt'}],
    }
    loaded = load_graph_text(yaml.safe_dump(graph, sort_keys=False), 'bus.yaml')
    result = validate(loaded.graph)
    text = '\n'.join(str(e) for e in result.errors)
    assert not result.ok
    assert "'nats_servers'" in text and 'nats_subject_prefix' in text and "'mqtt_url'" in text
    assert "'url'" not in text  # url belongs to target http only
