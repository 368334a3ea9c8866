"""Fuzzing the hand-written HTTP/1.1 server (delivery/backend_handwritten.py).

The reference backend is aiohttp's server; the hand-written one is kept only because the same-run
measurement in bench/queue_bench.py shows it delivering faster on two cores. The price is that its
request reader must hold against any bytes a client sends: every answer it writes is a well-formed
HTTP/1.1 response, a bad request closes the connection, nothing crashes the server, and it keeps
serving the next client. Real sockets on loopback; nothing is mocked.
"""

from __future__ import annotations

import json
import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schnitzel_stream_ros.delivery.backend_handwritten import serve_in_thread

READ_TIMEOUT_SEC = 3.0


class _Errors(logging.Handler):
    """Collects what the server's event loop logs at ERROR: a callback that raised (asyncio closes
    the connection then, which alone would look like a legitimate close)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope='module')
def backend():
    errors = _Errors()
    watched = [logging.getLogger(name) for name in ('asyncio', 'schnitzel_stream')]
    for logger in watched:
        logger.addHandler(errors)
    running = serve_in_thread()
    running.errors = errors.records
    yield running
    running.stop()
    for logger in watched:
        logger.removeHandler(errors)


def _exchange(port: int, raw: bytes) -> bytes:
    """Send `raw`, half-close, and read everything the server answers until it closes."""
    with socket.create_connection(('127.0.0.1', port), timeout=READ_TIMEOUT_SEC) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while True:
            chunk = sock.recv(65536)  # a timeout here fails the test: the server hung on us
            if not chunk:
                return bytes(answer)
            answer += chunk


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split `data` into HTTP/1.1 responses; fails on anything that is not one."""
    found = []
    while data:
        end = data.find(b'\r\n\r\n')
        assert end > 0, f'unterminated response head: {data[:80]!r}'
        lines = data[:end].decode('latin-1').split('\r\n')
        version, status, _reason = lines[0].split(' ', 2)
        assert version == 'HTTP/1.1' and status.isdigit() and 100 <= int(status) <= 599, lines[0]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(': ')
            assert sep and name and '\r' not in value and '\n' not in value, line
            headers[name.lower()] = value
        length = int(headers['content-length'])
        body = data[end + 4 : end + 4 + length]
        assert len(body) == length, 'body shorter than its Content-Length'
        json.loads(body)  # every answer of this server is JSON
        found.append((int(status), headers, body))
        data = data[end + 4 + length :]
    return found


def _still_serving(backend) -> None:
    health = b'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
    answers = _responses(_exchange(backend.port, health))
    assert [status for status, _, _ in answers] == [200]
    assert not backend.errors, [r.getMessage() for r in backend.errors]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2048))
def test_arbitrary_bytes_give_well_formed_answers_and_the_server_keeps_serving(backend, raw):
    _responses(_exchange(backend.port, raw))
    _still_serving(backend)


_METHODS = st.sampled_from([b'GET', b'POST', b'PUT', b'DELETE', b'POST', b'G\x00T', b''])
_TARGETS = st.sampled_from([b'/events', b'/stats', b'/events?limit=x', b'/control', b'/', b'/%ff', b'*'])
_VERSIONS = st.sampled_from([b'HTTP/1.1', b'HTTP/1.0', b'HTTP/2', b'', b'HTTP/1.1 extra'])
_HEADERS = st.lists(
    st.sampled_from(
        [
            b'Content-Length: 2',
            b'Content-Length: -1',
            b'Content-Length: 99999999999999999999',
            b'Content-Length: x',
            b'Content-Length:',
            b'Transfer-Encoding: chunked',
            b'Connection: close',
            b'Connection: keep-alive',
            b'Idempotency-Key: k1',
            b'Idempotency-Key: \xc5\x81\xc3\xb3d\xc5\xba',
            b'no colon here',
            b': empty name',
            b'X: ' + b'a' * 5000,
        ]
    ),
    max_size=5,
)
_BODIES = st.one_of(st.binary(max_size=64), st.sampled_from([b'{}', b'{"a":1}', b'[' * 300, b'{"a":"\x00"}']))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=_METHODS, target=_TARGETS, version=_VERSIONS, headers=_HEADERS, body=_BODIES, repeat=st.booleans()
)
def test_http_shaped_requests_give_well_formed_answers(
    backend, method, target, version, headers, body, repeat
):
    request = b' '.join(part for part in (method, target, version) if part) + b'\r\n'
    request += b''.join(h + b'\r\n' for h in headers) + b'\r\n' + body
    before = backend.stats()
    answers = _responses(_exchange(backend.port, request * (2 if repeat else 1)))
    after = backend.stats()
    for status, _, answer in answers:
        if status in (200, 201):
            continue
        assert 400 <= status <= 599, status
        assert 'error' in json.loads(answer)
    # every stored event is one that was answered 201 (a new key); nothing is stored unanswered
    created = sum(1 for status, _, answer in answers if status == 201 and b'"created"' in answer)
    assert after['unique'] - before['unique'] == created
    _still_serving(backend)
