"""A backend that writes its answer in two segments (issue 11, item 8).

Python's http.server (unbuffered writes, no TCP_NODELAY) sends the status line and headers, then
the body: Nagle holds the body until the headers are acknowledged, and a client with delayed ACKs
acknowledges ~40 ms later. Every exchange then takes ~40 ms. The client acknowledges at once
(TCP_QUICKACK before each read), so an exchange takes about a millisecond on loopback.

The assertion is on the *stall*, not on throughput: a median exchange of 40 ms vs ~1 ms is the
delayed-ACK timer or its absence, whatever the load of the machine.
"""

from __future__ import annotations

import http.server
import socket
import statistics
import threading
import time

import pytest

from schnitzel_stream_ros.delivery import http_wire
from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.http_client import HttpJsonClient, HttpTarget, Verdict

pytestmark = pytest.mark.integration


class TwoSegmentHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive, like the forwarder's connections

    def do_POST(self) -> None:  # http.server's naming
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        body = b'{"status":"created"}'
        self.send_response(201)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()  # first segment: status line + headers
        self.wfile.write(body)  # second segment, held by Nagle until the first is acknowledged

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def two_segment_server():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), TwoSegmentHandler)
    assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}/events'
    server.shutdown()
    server.server_close()


def test_a_two_segment_answer_does_not_stall_on_delayed_acks(two_segment_server):
    client = HttpJsonClient(HttpTarget(two_segment_server, timeout_sec=2.0))
    try:
        durations = []
        for i in range(30):
            t0 = time.perf_counter()
            result = client.post(b'{"i":%d}' % i, f'k{i}')
            durations.append(time.perf_counter() - t0)
            assert result.verdict is Verdict.DELIVERED
        assert client.connects_total == 1  # one kept-alive connection: the case that stalls
    finally:
        client.close()
    median = statistics.median(durations[5:])
    assert median < 0.02, f'median exchange {median * 1000:.1f} ms: delayed-ACK stall'


def _median_exchange(url: str, tag: str) -> float:
    client = HttpJsonClient(HttpTarget(url, timeout_sec=2.0))
    try:
        durations = []
        for i in range(25):
            t0 = time.perf_counter()
            result = client.post(b'{"i":%d}' % i, f'{tag}{i}')
            durations.append(time.perf_counter() - t0)
            assert result.verdict is Verdict.DELIVERED
        assert client.connects_total == 1
    finally:
        client.close()
    return statistics.median(durations[5:])


def test_the_reference_backend_two_segments_mode_reproduces_the_stall(monkeypatch):
    """The fault soak's two-segment phase is the reference backend (uvicorn) in mode two_segments:
    it must answer as http.server does (head, then body, Nagle on), or the soak proves nothing.
    A client without TCP_QUICKACK (as before the fix) stalls on the delayed-ACK timer (>= 40 ms on
    Linux); the shipped client does not."""
    backend = serve_in_thread()
    shipped = http_wire._TCP_QUICKACK
    try:
        backend.set_control(mode='two_segments')
        monkeypatch.setattr(http_wire, '_TCP_QUICKACK', None)
        without_quickack = _median_exchange(backend.url + '/events', 'slow')
        monkeypatch.setattr(http_wire, '_TCP_QUICKACK', shipped)
        with_quickack = _median_exchange(backend.url + '/events', 'fast')
        stats = backend.stats()
    finally:
        backend.stop()
    assert stats['unique'] == 50  # stored like any other answer mode
    assert without_quickack >= 0.03, f'median {without_quickack * 1000:.1f} ms: the answer was not split'
    assert with_quickack < 0.02, f'median {with_quickack * 1000:.1f} ms: delayed-ACK stall'
