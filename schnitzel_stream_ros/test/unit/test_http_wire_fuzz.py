"""Fuzzing the small hand-written HTTP/1.1 client (delivery/http_wire.py).

The forwarder keeps its own socket client because the same-run measurement in bench/queue_bench.py
shows a library client (urllib3) below the delivery goal and stalled by two-segment answers; the
price is that this part must hold against any bytes a server sends and never write a request head
a header value could break. Real sockets (a socketpair) carry the bytes; nothing is mocked.
"""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from schnitzel_stream_ros.delivery.http_wire import Response, UnsendableRequest, WireConnection

_STATUS_LINES = st.sampled_from(
    [b'HTTP/1.1 200 OK', b'HTTP/1.1 201 Created', b'HTTP/1.0 503 x', b'HTTP/1.1 100 Continue', b'HTP/1.1 200']
)
_HEADERS = st.lists(
    st.sampled_from(
        [
            b'Content-Length: 2',
            b'Content-Length: -1',
            b'Content-Length: 99999999999',
            b'Content-Length: x',
            b'Transfer-Encoding: chunked',
            b'Connection: close',
            b'Retry-After: 3',
            b'X: \xff\xfe',
            b'no colon here',
        ]
    ),
    max_size=4,
)


def _answer(raw: bytes) -> Response | BaseException:
    """Feed `raw` as the server's whole answer (then EOF) to a WireConnection; what it makes of it."""
    client, server = socket.socketpair()
    client.settimeout(1.0)
    wire = WireConnection('127.0.0.1', 80, 1.0)
    wire._sock = client
    try:
        server.sendall(raw)
        server.shutdown(socket.SHUT_WR)
        response, _keep_alive = wire._read_response('POST')
        return response
    except Exception as exc:  # judged by the caller
        return exc
    finally:
        client.close()
        server.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_a_response_or_a_transport_error(raw):
    result = _answer(raw)
    assert isinstance(result, Response | OSError), repr(result)


@settings(max_examples=300, deadline=None)
@given(_STATUS_LINES, _HEADERS, st.binary(max_size=64))
def test_http_shaped_answers_give_a_response_or_a_transport_error(status, headers, body):
    raw = b'\r\n'.join([status, *headers]) + b'\r\n\r\n' + body
    result = _answer(raw)
    assert isinstance(result, Response | OSError), repr(result)
    if isinstance(result, Response):
        assert 100 <= result.status <= 999 and len(result.body) <= 64 * 1024


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_no_header_value_can_add_a_header_or_break_the_head(value):
    client, server = socket.socketpair()
    server.settimeout(1.0)
    wire = WireConnection('127.0.0.1', 80, 1.0)
    wire._sock = client
    try:
        server.sendall(b'HTTP/1.1 204 No Content\r\n\r\n')
        try:
            wire.request('POST', '/events', {'Idempotency-Key': value}, b'{}')
        except UnsendableRequest:
            assert any((ord(c) < 0x20 and c != '\t') or ord(c) >= 0x7F for c in value)
            return
        sent = server.recv(65536)
        head = sent.split(b'\r\n\r\n', 1)[0].split(b'\r\n')
        assert [line.split(b':', 1)[0] for line in head[1:]] == [
            b'Host',
            b'Content-Length',
            b'Idempotency-Key',
        ]
    finally:
        wire.close()
        server.close()
