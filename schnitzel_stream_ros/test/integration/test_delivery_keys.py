"""Hostile idempotency keys against real HTTP servers on 127.0.0.1 (issue 11, items 1 and 2).

A key comes from packet meta, which any DDS publisher can write: non-Latin-1 text, CR/LF, 8 KB.
Every such event must be delivered under its fixed wire form, never stall its batch, never put a
header of its own on the wire; a row that cannot be sent at all becomes a dead letter with its
reason after max_attempts.
"""

from __future__ import annotations

import http.server
import threading
import time
from typing import ClassVar

import pytest

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.http_client import HttpJsonClient, HttpTarget
from schnitzel_stream_ros.delivery.idempotency_key import wire_key
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket

pytestmark = pytest.mark.integration

FAST = dict(backoff=Backoff(base_sec=0.05, cap_sec=0.2), breaker_open_sec=0.2, idle_poll_sec=0.05)
HOSTILE = (
    'event:Łódź:cam0:7',
    'k1\r\nX-Injected: yes',
    'k2\nX-Injected: yes',
    'z' * 8192,
    'tab\there\x00nul',
)


def packets(keys) -> list[StreamPacket]:
    return [
        StreamPacket.new('event', 'cam0', {'i': i}, meta={'idempotency_key': key})
        for i, key in enumerate(keys)
    ]


@pytest.fixture
def backend():
    running = serve_in_thread()
    yield running
    running.stop()


@pytest.fixture
def queue(tmp_path):
    q = DurableQueue(tmp_path / 'queue.db', node_id='events_q')
    yield q
    q.close()


def test_hostile_keys_are_delivered_with_their_wire_form_and_never_stall_the_batch(backend, queue):
    keys = [f'plain-{i}' for i in range(10)] + list(HOSTILE) + [f'after-{i}' for i in range(10)]
    forwarder = Forwarder(
        queue,
        HttpTarget(backend.url + '/events', timeout_sec=2.0),
        ForwarderConfig(concurrency=1, max_attempts=3, **FAST),
    ).start()
    try:
        queue.enqueue_many(packets(keys))
        assert forwarder.wait_idle(20), f'still queued: {queue.depth()}, in flight: {queue.in_flight()}'
    finally:
        forwarder.stop()
    assert backend.keys() == {wire_key(k) for k in keys}
    assert queue.dead_count() == 0
    assert forwarder.metrics()['worker_errors_total'] == 0


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:  # http.server's naming
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        type(self).seen.append(dict(self.headers))
        self.send_response(201)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}/events'
    server.shutdown()
    server.server_close()


def test_crlf_in_a_key_never_becomes_a_header(recorder):
    client = HttpJsonClient(HttpTarget(recorder))
    try:
        # A raw key as an older or upstream queue file may hold it: the client encodes it too.
        for key in ('k1\r\nX-Injected: yes', 'k2\nX-Injected: yes', 'k3\rX-Injected: yes'):
            assert client.post(b'{}', key).status == 201
    finally:
        client.close()
    assert len(_Recorder.seen) == 3
    for headers, key in zip(
        _Recorder.seen, ('k1\r\nX-Injected: yes', 'k2\nX-Injected: yes', 'k3\rX-Injected: yes'), strict=True
    ):
        assert 'X-Injected' not in headers
        assert headers['Idempotency-Key'] == wire_key(key)


class _FailsForOneKey:
    """Fault injection: the real client, except that posting one key raises (a client defect we
    cannot provoke otherwise once keys are encoded). Everything else goes over the real socket."""

    def __init__(self, target: HttpTarget, bad_key: str) -> None:
        self._client = HttpJsonClient(target)
        self._bad = bad_key

    def post(self, body: bytes, key: str | None):
        if key == self._bad:
            raise UnicodeEncodeError('latin-1', key, 0, 1, 'injected')
        return self._client.post(body, key)

    def close(self) -> None:
        self._client.close()


def test_a_row_that_cannot_be_sent_is_dead_lettered_after_max_attempts_and_its_batch_delivered(
    backend, queue
):
    target = HttpTarget(backend.url + '/events', timeout_sec=2.0)
    keys = [f'k{i}' for i in range(30)]
    forwarder = Forwarder(
        queue,
        target,
        ForwarderConfig(concurrency=1, batch_size=64, max_attempts=3, lease_sec=300, **FAST),
        client_factory=lambda: _FailsForOneKey(target, 'k7'),
    ).start()
    try:
        queue.enqueue_many(packets(keys))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (queue.depth() == 0 and queue.in_flight() == 0):
            time.sleep(0.05)
    finally:
        forwarder.stop()
    assert backend.keys() == {k for k in keys if k != 'k7'}
    [dead] = queue.list_dead()
    assert dead.idempotency_key == 'k7' and dead.attempts == 3
    assert 'gave up after 3 attempts' in dead.reason and 'UnicodeEncodeError' in dead.reason
    assert queue.depth() == 0 and queue.in_flight() == 0
