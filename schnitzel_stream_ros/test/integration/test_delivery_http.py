"""Forwarder against real HTTP servers on 127.0.0.1: backend answers, dead letters, auth, TLS.

The reference backend runs on a thread of the test process; the TLS/header test uses a small
stdlib HTTPS server that records what it received.
"""

from __future__ import annotations

import http.server
import json
import logging
import ssl
import threading
import time
from typing import ClassVar

import pytest

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery import deadletter_cli
from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.http_client import HttpJsonClient, HttpTarget, Verdict
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.testing.tls import self_signed_certificate

pytestmark = pytest.mark.integration

FAST = dict(backoff=Backoff(base_sec=0.05, cap_sec=0.3), breaker_open_sec=0.2, idle_poll_sec=0.05)


def events(n: int, prefix: str = 'e') -> list[StreamPacket]:
    return [
        StreamPacket.new('event', 'cam0', {'i': i}, meta={'idempotency_key': f'{prefix}{i}'})
        for i in range(n)
    ]


def wait_until(predicate, timeout: float = 20.0, what: str = 'condition') -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f'timed out waiting for {what}')


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


def run_forwarder(queue, url, **config):
    target = HttpTarget(url, timeout_sec=config.pop('timeout_sec', 1.0),
                        pipeline_depth=config.pop('pipeline_depth', 32))
    return Forwarder(queue, target, ForwarderConfig(**{**FAST, **config})).start()


@pytest.mark.parametrize('pipeline_depth', [1, 32])
def test_5xx_is_retried_until_delivered(backend, queue, pipeline_depth):
    backend.set_control(mode='5xx', status=502, count=12)
    forwarder = run_forwarder(queue, backend.url + '/events', concurrency=2, pipeline_depth=pipeline_depth)
    try:
        queue.enqueue_many(events(50))
        assert forwarder.wait_idle(20)
    finally:
        forwarder.stop()
    stats = backend.stats()
    metrics = forwarder.metrics()
    assert stats['unique'] == 50 and stats['faulted_posts'] == 12
    assert metrics['posted_total'] == 50
    if pipeline_depth == 1:  # one at a time: every answer is read and judged
        assert metrics['retry_total'] == 12
    else:  # an answer to a request sent ahead may go unread when the circuit opens: that row is
        # given back untouched (no attempt counted) and sent again
        assert 1 <= metrics['retry_total'] <= 12
    assert metrics['dead_letter_total'] == 0 and queue.dead_count() == 0


def test_429_retry_after_is_honoured(backend, queue):
    backend.set_control(mode='429', retry_after=2)
    forwarder = run_forwarder(queue, backend.url + '/events', concurrency=1)
    try:
        before = time.time()
        [seq] = queue.enqueue_many(events(1))
        wait_until(lambda: forwarder.metrics()['retry_total'] >= 1, what='a 429')
        forwarder.stop()  # freeze the state to look at the row
        import sqlite3

        conn = sqlite3.connect(queue.path)
        next_attempt, attempts, error = conn.execute(
            'SELECT next_attempt_at, attempts, last_error FROM packets WHERE seq = ?', (seq,)
        ).fetchone()
        conn.close()
        assert attempts >= 1 and 'HTTP 429' in error
        assert next_attempt >= before + 2.0  # backoff cap is 0.3 s: only Retry-After explains this
        backend.set_control(mode='ok')
        forwarder = run_forwarder(queue, backend.url + '/events', concurrency=1)
        queue.release_backoff()
        assert forwarder.wait_idle(20)
    finally:
        forwarder.stop()
    assert backend.stats()['unique'] == 1


def test_400_goes_to_dead_letters_and_is_redriven_from_the_cli(backend, queue, capsys):
    backend.set_control(mode='400', count=3)
    forwarder = run_forwarder(queue, backend.url + '/events', concurrency=1)
    try:
        queue.enqueue_many(events(20))
        wait_until(lambda: forwarder.metrics()['acked_total'] == 17, what='17 deliveries')
        assert queue.dead_count() == 3 and queue.depth() == 0
        metrics = forwarder.metrics()
        assert metrics['rejected_total'] == 3 and metrics['retry_total'] == 0  # 400 is not retried

        assert deadletter_cli.main(['list', str(queue.path), '--json']) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(listed) == 3
        assert all(d['http_status'] == 400 and 'HTTP 400' in d['reason'] for d in listed)
        assert {d['idempotency_key'] for d in listed} <= {f'e{i}' for i in range(20)}

        assert deadletter_cli.main(['redrive', str(queue.path), '--all']) == 0  # backend is fixed
        assert json.loads(capsys.readouterr().out)['moved'] == 3
        assert forwarder.wait_idle(20)
    finally:
        forwarder.stop()
    assert backend.stats()['unique'] == 20
    assert queue.dead_count() == 0


def test_attempt_budget_dead_letters_instead_of_retrying_forever(backend, queue):
    backend.set_control(mode='5xx', status=500)
    forwarder = run_forwarder(
        queue, backend.url + '/events', concurrency=1, max_attempts=3, breaker_failure_threshold=100
    )
    try:
        queue.enqueue_many(events(2))
        wait_until(lambda: queue.dead_count() == 2, what='budget exhaustion')
    finally:
        forwarder.stop()
    dead = queue.list_dead()
    assert [d.attempts for d in dead] == [3, 3]
    assert all('gave up after 3 attempts' in d.reason and d.http_status == 500 for d in dead)
    assert backend.stats()['faulted_posts'] == 6


def test_slow_backend_past_the_timeout_gives_duplicates_never_loss(backend, queue):
    backend.set_control(mode='slow', delay_ms=600, count=4)
    forwarder = run_forwarder(queue, backend.url + '/events', concurrency=2, timeout_sec=0.25)
    try:
        queue.enqueue_many(events(30))
        assert forwarder.wait_idle(30)
    finally:
        forwarder.stop()
    stats = backend.stats()
    assert stats['unique'] == 30
    assert stats['duplicates'] >= 1  # stored, answered too late, sent again: deduplicated by key
    assert forwarder.metrics()['failed_total'] >= 4


def test_backend_shutdown_and_restart_same_store(tmp_path, queue):
    db = str(tmp_path / 'backend.db')
    first = serve_in_thread(db=db)
    port = first.port
    forwarder = run_forwarder(queue, first.url + '/events', concurrency=2)
    try:
        queue.enqueue_many(events(100, 'a'))
        assert forwarder.wait_idle(20)
        first.stop()
        queue.enqueue_many(events(100, 'b'))  # accepted while the backend is gone
        wait_until(lambda: forwarder.breaker.opened_total >= 1, what='breaker to open')
        assert queue.depth() == 100
        second = serve_in_thread(port=port, db=db)
        try:
            assert forwarder.wait_idle(20)
            assert second.stats()['unique'] == 200
        finally:
            second.stop()
    finally:
        forwarder.stop()
    assert forwarder.metrics()['breaker_state'] == 'closed'


# -- headers, auth and TLS against a recording HTTPS server -----------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        type(self).seen.append({'path': self.path, 'headers': dict(self.headers), 'body': body})
        answer = b'{"ok":true}'
        self.send_response(201)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def https_recorder(tmp_path):
    made = self_signed_certificate(tmp_path)
    if made is None:
        pytest.skip('openssl CLI not installed: cannot make a self-signed certificate')
    cert, key = made
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


def test_tls_is_verified_by_default_and_headers_carry_key_and_token(https_recorder, tmp_path, caplog):
    port, cert = https_recorder
    url = f'https://127.0.0.1:{port}/ingest'
    env = {'SITE_TOKEN': 'tok-very-secret-42'}
    caplog.set_level(logging.DEBUG)

    untrusted = HttpJsonClient(HttpTarget(url, auth_token_env='SITE_TOKEN'), environ=env)
    result = untrusted.post(b'{"a":1}', 'key-1')
    assert result.verdict is Verdict.RETRY and 'CERTIFICATE_VERIFY_FAILED' in result.error
    assert _Recorder.seen == []

    trusted = HttpJsonClient(
        HttpTarget(url, auth_token_env='SITE_TOKEN', ca_file=str(cert), headers={'X-Site': 'plant-7'}),
        environ=env,
    )
    assert trusted.post(b'{"a":1}', 'key-1').verdict is Verdict.DELIVERED
    assert trusted.post(b'{"a":2}', 'key-2').verdict is Verdict.DELIVERED
    assert trusted.connects_total == 1  # keep-alive: one TLS handshake for both
    [first, second] = _Recorder.seen
    assert first['path'] == '/ingest' and first['body'] == b'{"a":1}'
    assert first['headers']['Content-Type'] == 'application/json'
    assert first['headers']['Idempotency-Key'] == 'key-1' and second['headers']['Idempotency-Key'] == 'key-2'
    assert first['headers']['Authorization'] == 'Bearer tok-very-secret-42'
    assert first['headers']['X-Site'] == 'plant-7'
    assert 'tok-very-secret-42' not in caplog.text


def test_missing_token_env_is_a_clear_configuration_error():
    with pytest.raises(ValueError, match="auth_token_env: environment variable 'NOPE_TOKEN' is not set"):
        HttpJsonClient(HttpTarget('http://127.0.0.1:9/x', auth_token_env='NOPE_TOKEN'), environ={})


def test_url_credentials_become_basic_auth_and_never_reach_logs_or_metrics(backend, queue, caplog):
    caplog.set_level(logging.DEBUG)
    port = backend.port
    backend.set_control(mode='5xx', count=6)
    url = f'http://operator:pw-do-not-log@127.0.0.1:{port}/events?token=qs-secret'
    forwarder = run_forwarder(queue, url, concurrency=1, breaker_failure_threshold=3)
    try:
        queue.enqueue_many(events(5))
        assert forwarder.wait_idle(20)
        metrics_text = json.dumps(forwarder.metrics())
    finally:
        forwarder.stop()
    assert backend.stats()['unique'] == 5
    assert 'failing' in caplog.text  # the breaker opened and said so, with the URL
    for secret in ('pw-do-not-log', 'qs-secret'):
        assert secret not in caplog.text
        assert secret not in metrics_text
    assert 'operator:***@127.0.0.1' in caplog.text
    client = HttpJsonClient(HttpTarget(url))
    assert client._base_headers['Authorization'].startswith('Basic ')


@pytest.mark.parametrize('status', [401, 403, 404])
def test_auth_and_route_failures_park_delivery_and_lose_nothing(backend, queue, status, caplog):
    backend.set_control(mode='4xx', status=status)
    forwarder = run_forwarder(queue, backend.url + '/events', concurrency=2)
    try:
        queue.enqueue_many(events(60))
        wait_until(lambda: forwarder.metrics()['delivery_parked'] == 1, what='parked delivery')
        time.sleep(1.0)  # several probe intervals (0.2 s) while parked
        metrics = forwarder.metrics()
        assert metrics['breaker_state'] != 'closed' and f'HTTP {status}' in metrics['parked_reason']
        assert queue.dead_count() == 0 and queue.depth() == 60
        faulted = backend.stats()['faulted_posts']
        assert faulted <= 2 + 1.0 / 0.2 + 2  # one per worker, then one probe per interval: no hammering
        backend.set_control(mode='ok')  # the operator fixed the token / route
        assert forwarder.wait_idle(20)
    finally:
        forwarder.stop()
    assert backend.stats()['unique'] == 60 and queue.dead_count() == 0
    assert forwarder.metrics()['delivery_parked'] == 0
    assert 'delivery PARKED' in caplog.text


def test_per_event_refusals_stay_dead_letters(backend, queue):
    backend.set_control(mode='4xx', status=422, count=2)
    forwarder = run_forwarder(queue, backend.url + '/events', concurrency=1)
    try:
        queue.enqueue_many(events(10))
        assert forwarder.wait_idle(20)
    finally:
        forwarder.stop()
    assert queue.dead_count() == 2 and backend.stats()['unique'] == 8
    assert forwarder.metrics()['delivery_parked'] == 0
