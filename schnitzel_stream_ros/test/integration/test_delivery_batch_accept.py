"""Batch acceptance (issue 11, item 7): a durable sink commits what waits in its inbox at once.

One producer, one sink: group commit cannot help (there is one caller at a time), so the live
runtime hands the sink everything that gathered in its inbox during the previous commit
(Plugin.process_batch) and the sink commits it in one transaction. Each packet is still accepted
only once that commit is on disk; a bad packet or a batch that cannot fit as a whole never refuses
its neighbours.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import resolve_params
from schnitzel_stream_ros.runtime.plugin_host import PluginError, PluginHost

pytestmark = pytest.mark.integration

N_EVENTS = 3000
PLUGIN = 'schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink:DurableForwarderSink'


@pytest.fixture
def backend():
    running = serve_in_thread()
    yield running
    running.stop()


def _event(i: int, payload: object = None) -> StreamPacket:
    return StreamPacket.new(
        'event', 'cam1', {'i': i} if payload is None else payload, meta={'idempotency_key': f'ev-{i}'}
    )


def _rows(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [k for (k,) in conn.execute('SELECT idempotency_key FROM packets ORDER BY seq')]
    finally:
        conn.close()


def _sink(tmp_path: Path, url: str, **params) -> PluginHost:
    config = resolve_params(DurableForwarderSink, {'path': str(tmp_path / 'q.db'), 'url': url, **params})
    host = PluginHost('deliver', DurableForwarderSink, config, is_source=False, is_sink=True)
    host.setup()
    return host


def test_a_bad_packet_or_an_oversized_batch_never_refuses_its_neighbours(tmp_path):
    # nothing listens at port 9: the rows stay in the file
    host = _sink(tmp_path, 'http://127.0.0.1:9/events', max_rows=4, full_policy='refuse')
    try:
        batch = [_event(0), _event(1), _event(2, payload={'bad': {1, 2}}), _event(3)]
        with pytest.raises(PluginError, match='1 of 4 packets refused, the others accepted'):
            host.handle_batch(batch, 'in')
        assert _rows(tmp_path / 'q.db') == ['ev-0', 'ev-1', 'ev-3']
        with pytest.raises(PluginError, match='refused'):
            host.handle_batch([_event(i) for i in range(10, 16)], 'in')  # 6 > max_rows=4 together
        assert _rows(tmp_path / 'q.db') == ['ev-0', 'ev-1', 'ev-3', 'ev-10']  # what fitted went in
    finally:
        host.close()


def test_one_producer_through_the_live_runtime_is_committed_in_batches(tmp_path, backend, ros_env):
    backend.set_control(mode='5xx', status=503)  # keep the rows: settles must not blur the count
    packets = [
        {'kind': 'event', 'source_id': 'cam1', 'payload': {'i': i}, 'meta': {'idempotency_key': f'ev-{i}'}}
        for i in range(N_EVENTS)
    ]
    graph = {
        'version': 2,
        'nodes': [
            {'id': 'src', 'kind': 'source', 'plugin': 'StaticSource', 'config': {'packets': packets}},
            {
                'id': 'deliver',
                'kind': 'sink',
                'plugin': PLUGIN,
                'config': {
                    'path': str(tmp_path / 'q.db'),
                    'url': backend.url + '/events',
                    'breaker_open_sec': 30.0,
                },
            },
        ],
        'edges': [{'from': 'src', 'to': 'deliver', 'inbox': {'max': 4096, 'overflow': 'block'}}],
    }
    graph_path = tmp_path / 'graph.json'
    graph_path.write_text(json.dumps(graph))
    report_path = tmp_path / 'report.json'
    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'schnitzel_stream_ros',
            'run',
            graph_path,
            '--drain-timeout',
            '0.5',
            '--report-json',
            report_path,
        ],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr[-3000:]  # degraded: the backlog stays queued, nothing lost
    m = json.loads(report_path.read_text())['metrics']
    assert m['node.deliver.accepted_total'] == N_EVENTS
    assert len(_rows(tmp_path / 'q.db')) == N_EVENTS  # every accepted packet is in the file
    # one commit per process() call would be >= 3000; batches make it a small fraction
    assert m['node.deliver.commits_total'] < N_EVENTS / 4, m['node.deliver.commits_total']
