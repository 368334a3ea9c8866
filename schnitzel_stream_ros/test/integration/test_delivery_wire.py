"""The minimal HTTP/1.1 client against scripted servers on 127.0.0.1 (real sockets).

Each server reads one request at a time and answers with the exact bytes a test gives it, so the
client is checked against the response shapes real backends produce: chunked bodies, 100
Continue, HTTP/1.0 read-to-close, Connection: close, a keep-alive connection the server dropped.
"""

from __future__ import annotations

import socket
import threading

import pytest

from schnitzel_stream_ros.delivery.http_client import HttpJsonClient, HttpTarget, Verdict
from schnitzel_stream_ros.delivery.http_wire import ClosedBeforeResponse, WireConnection

pytestmark = pytest.mark.integration


class ScriptedServer:
    """Accepts connections; for each request answers with the next scripted reply.

    A reply is bytes to send, optionally followed by 'close' (close after sending) or a reply of
    None (close without answering, like a server that dropped an idle keep-alive connection).
    """

    def __init__(self, replies: list[tuple[bytes | None, bool]]) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, conn: socket.socket, buffer: bytearray) -> bytes | None:
        while b'\r\n\r\n' not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buffer += chunk
        head, _, rest = bytes(buffer).partition(b'\r\n\r\n')
        length = 0
        for line in head.split(b'\r\n')[1:]:
            name, _, value = line.partition(b':')
            if name.strip().lower() == b'content-length':
                length = int(value)
        while len(rest) < length:
            rest += conn.recv(65536)
        buffer[:] = rest[length:]
        return head + b'\r\n\r\n' + rest[:length]

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            buffer = bytearray()
            with conn:
                while self.replies:
                    request = self._read_request(conn, buffer)
                    if request is None:
                        break
                    self.requests.append(request)
                    reply, close = self.replies.pop(0)
                    if reply is None:
                        break  # drop the connection without an answer
                    conn.sendall(reply)
                    if close:
                        break

    def stop(self) -> None:
        self.sock.close()
        self.thread.join(5)


def ok(body: bytes = b'{}', extra: bytes = b'') -> bytes:
    return b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s' % (len(body), extra, body)


@pytest.fixture
def scripted():
    servers: list[ScriptedServer] = []

    def make(replies):
        server = ScriptedServer(replies)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_keep_alive_and_request_shape(scripted):
    server = scripted([(ok(), False), (ok(), False)])
    wire = WireConnection('127.0.0.1', server.port, timeout=2)
    for i in range(2):
        response = wire.request('POST', '/e?x=1', {'Idempotency-Key': f'k{i}'}, b'{"a":1}')
        assert response.status == 200
    assert wire.connects_total == 1 and server.connections == 1
    head, _, body = server.requests[0].partition(b'\r\n\r\n')
    lines = head.split(b'\r\n')
    assert lines[0] == b'POST /e?x=1 HTTP/1.1'
    assert f'Host: 127.0.0.1:{server.port}'.encode() in lines
    assert b'Content-Length: 7' in lines and b'Idempotency-Key: k0' in lines
    assert body == b'{"a":1}'
    wire.close()


def test_chunked_body_and_100_continue(scripted):
    chunked = (
        b'HTTP/1.1 100 Continue\r\n\r\n'
        b'HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n'
        b'5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    server = scripted([(chunked, False), (ok(), False)])
    wire = WireConnection('127.0.0.1', server.port, timeout=2)
    response = wire.request('POST', '/', {}, b'{}')
    assert (response.status, response.body, response.header('retry-after')) == (503, b'hello, world', '3')
    assert wire.request('POST', '/', {}, b'{}').status == 200  # same connection still usable
    assert server.connections == 1


def test_http10_read_to_close_and_connection_close(scripted):
    server = scripted(
        [
            (b'HTTP/1.0 201 Created\r\n\r\n{"no":"length"}', True),
            (ok(extra=b'Connection: close\r\n'), True),
            (ok(), False),
        ]
    )
    wire = WireConnection('127.0.0.1', server.port, timeout=2)
    response = wire.request('POST', '/', {}, b'{}')
    assert (response.status, response.body) == (201, b'{"no":"length"}')
    assert not wire.is_open
    assert wire.request('POST', '/', {}, b'{}').status == 200
    assert not wire.is_open  # the server said close
    assert wire.request('POST', '/', {}, b'{}').status == 200
    assert wire.connects_total == 3


def test_stale_keep_alive_is_retried_once_on_a_fresh_connection(scripted):
    server = scripted([(ok(b'{"first":1}'), False), (None, False), (ok(b'{"second":2}'), False)])
    client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{server.port}/events', timeout_sec=2))
    assert client.post(b'{}', 'k1').verdict is Verdict.DELIVERED
    result = client.post(b'{}', 'k2')  # server dropped the idle connection: resent transparently
    assert result.verdict is Verdict.DELIVERED and result.status == 200
    assert client.connects_total == 2
    assert [b'Idempotency-Key: k2' in r for r in server.requests] == [False, True, True]


def test_fresh_connection_closed_without_answer_is_a_retryable_failure(scripted):
    server = scripted([(None, False)])
    wire = WireConnection('127.0.0.1', server.port, timeout=2)
    with pytest.raises(ClosedBeforeResponse):
        wire.request('POST', '/', {}, b'{}')
    client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{scripted([(None, False)]).port}/', timeout_sec=2))
    result = client.post(b'{}', 'k')
    assert result.verdict is Verdict.RETRY and result.status is None and 'closed' in result.error


def test_garbage_answer_and_timeout_are_retryable(scripted):
    server = scripted([(b'SSH-2.0-OpenSSH_9.2\r\n\r\n', True)])
    client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{server.port}/', timeout_sec=2))
    result = client.post(b'{}', 'k')
    assert result.verdict is Verdict.RETRY and 'not an HTTP/1.x status line' in result.error

    silent = socket.create_server(('127.0.0.1', 0))  # accepts (backlog) but never answers
    try:
        client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{silent.getsockname()[1]}/', timeout_sec=0.3))
        result = client.post(b'{}', 'k')
        assert result.verdict is Verdict.RETRY and result.error.startswith('timeout')
    finally:
        silent.close()


def test_header_injection_in_config_is_refused():
    with pytest.raises(ValueError, match='invalid header'):
        HttpTarget('http://127.0.0.1:9/', headers={'X-Evil': 'a\r\nHost: other'})
    with pytest.raises(ValueError, match='set by the client'):
        HttpTarget('http://127.0.0.1:9/', headers={'Content-Length': '5'})
    with pytest.raises(ValueError, match='url'):
        HttpTarget('ftp://127.0.0.1/')
