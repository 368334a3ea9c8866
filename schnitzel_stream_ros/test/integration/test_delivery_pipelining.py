"""HTTP/1.1 pipelining of a claimed batch (HttpJsonClient.begin): one write carries many requests,
one read many answers -- and nothing is lost or burst when the server refuses or closes mid-way.

Real servers on loopback: the reference backend (uvicorn), and for a server that closes a
connection with requests still unanswered, a small raw-socket server written here (the reference
backend never does that on its own).
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.http_client import HttpJsonClient, HttpTarget, Verdict

pytestmark = pytest.mark.integration


@pytest.fixture
def backend():
    running = serve_in_thread()
    yield running
    running.stop()


def _batch(n: int, prefix: str = 'p') -> list[tuple[bytes, str]]:
    return [(json.dumps({'event_id': f'{prefix}{i}', 'i': i}).encode(), f'{prefix}{i}') for i in range(n)]


def test_a_batch_goes_out_pipelined_on_one_connection_and_every_row_is_delivered_once(backend):
    client = HttpJsonClient(HttpTarget(backend.url + '/events', pipeline_depth=16))
    batch = _batch(60)
    try:
        client.begin(batch)
        results = [client.post(body, key) for body, key in batch]
    finally:
        client.close()
    assert [r.verdict for r in results] == [Verdict.DELIVERED] * 60
    assert client.pipelined_total == 60  # every answer came through the pipeline
    assert client.connects_total == 1
    stats = backend.stats()
    assert stats['unique'] == 60 and stats['duplicates'] == 0


def test_a_backend_that_refuses_sees_one_request_not_a_burst(backend):
    """Slow start: a rotated token costs one request per batch before the forwarder parks."""
    backend.set_control(mode='4xx', status=401)
    client = HttpJsonClient(HttpTarget(backend.url + '/events', pipeline_depth=32))
    batch = _batch(40)
    try:
        client.begin(batch)
        first = client.post(*batch[0])
    finally:
        client.close()
    assert first.verdict is Verdict.PARKED and first.status == 401
    assert backend.stats()['faulted_posts'] == 1


def test_rows_posted_out_of_order_go_one_at_a_time_and_all_arrive(backend):
    client = HttpJsonClient(HttpTarget(backend.url + '/events'))
    batch = _batch(6, 'o')
    try:
        client.begin(batch)
        assert client.post(*batch[0]).verdict is Verdict.DELIVERED
        # the forwarder never skips a row; should a caller do so, nothing answers for the wrong row
        results = [client.post(*batch[i]) for i in (3, 1, 2, 4, 5)]
    finally:
        client.close()
    assert [r.verdict for r in results] == [Verdict.DELIVERED] * 5
    assert backend.stats()['unique'] == 6


class _ClosingServer:
    """Answers `per_connection` requests of a connection (the last with `Connection: close`, or with
    nothing said when `silent`: a keep-alive that goes stale), then closes it with whatever else was
    sent still unanswered. Records every key it answered."""

    def __init__(self, per_connection: int, silent: bool = False, status_for=lambda key: 200) -> None:
        self.per_connection = per_connection
        self.silent = silent
        self.status_for = status_for
        self.answered: list[str] = []
        self.connections = 0
        self._sock = socket.create_server(('127.0.0.1', 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5.0)
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        buffer = b''
        for n in range(1, self.per_connection + 1):
            while b'\r\n\r\n' not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b'\r\n\r\n', 1)
            fields = dict(line.split(': ', 1) for line in head.decode().split('\r\n')[1:])
            length = int(fields['Content-Length'])
            while len(buffer) < length:
                buffer += conn.recv(65536)
            buffer = buffer[length:]
            self.answered.append(fields['Idempotency-Key'])
            last = n == self.per_connection and not self.silent
            status = self.status_for(fields['Idempotency-Key'])
            body = json.dumps({'key': fields['Idempotency-Key']}).encode()
            conn.sendall(f'HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n'.encode()
                         + (b'Connection: close\r\n' if last else b'') + b'\r\n' + body)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def _post_batch(server: _ClosingServer, batch: list[tuple[bytes, str]]) -> tuple[HttpJsonClient, list]:
    """One pipelined batch (depth 8) to `server`, every row posted in order; the server is stopped."""
    client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{server.port}/events', pipeline_depth=8))
    try:
        client.begin(batch)
        return client, [client.post(body, key) for body, key in batch]
    finally:
        client.close()
        server.stop()


def test_a_server_that_closes_with_requests_unanswered_loses_none_of_them():
    server = _ClosingServer(per_connection=3)
    batch = _batch(20, 'c')
    client, results = _post_batch(server, batch)
    assert [r.verdict for r in results] == [Verdict.DELIVERED] * 20
    assert sorted(server.answered) == sorted(key for _, key in batch)  # each answered once
    assert server.connections == 7  # 3 answers each: what a closed connection did not answer went again
    assert client.pipelined_total == 20  # ... pipelined on the next connection, not one at a time


def test_the_node_parameters_set_the_depth_and_no_idempotency_header_turns_it_off(backend):
    from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
    from schnitzel_stream_ros.nodes.delivery.params import target_from_params

    defaults = {p.name: p.default for p in DurableForwarderSink.PARAMS}
    params = {**defaults, 'url': backend.url + '/events', 'pipeline_depth': 4}
    assert target_from_params(params).pipeline_depth == 4
    for header, pipelined in (('Idempotency-Key', 10), ('', 0)):
        client = HttpJsonClient(target_from_params({**params, 'idempotency_header': header}))
        batch = _batch(10, f'h{header}')
        try:
            client.begin(batch)
            assert all(client.post(body, key).verdict is Verdict.DELIVERED for body, key in batch)
        finally:
            client.close()
        # without a key to deduplicate by, a request sent ahead and not settled would be a duplicate
        assert client.pipelined_total == pipelined


def test_a_keep_alive_gone_stale_between_batches_keeps_the_next_batch_pipelined():
    """The server closes each connection after 5 answers without saying so: the next batch's first
    request finds it closed, and what was not answered goes again on a fresh connection, pipelined."""
    server = _ClosingServer(per_connection=5, silent=True)
    client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{server.port}/events', pipeline_depth=8))
    try:
        for number in range(3):
            batch = _batch(5, f's{number}-')
            client.begin(batch)
            assert [client.post(body, key).verdict for body, key in batch] == [Verdict.DELIVERED] * 5
    finally:
        client.close()
        server.stop()
    assert client.pipelined_total == 15  # no batch fell back to one request at a time
    assert len(server.answered) == 15 and server.connections == 3


def test_each_answer_in_a_full_window_is_its_own_rows():
    """A refusal in the middle of a window of requests in flight lands on its own row only."""
    server = _ClosingServer(per_connection=1000, status_for=lambda key: 400 if key == 'w9' else 200)
    batch = _batch(20, 'w')
    client, results = _post_batch(server, batch)
    # rows 0..8 ramp the window up, so several rows were on the wire together when row 9 was refused
    expected = [Verdict.DELIVERED] * 9 + [Verdict.REJECTED] + [Verdict.DELIVERED] * 10
    assert [r.verdict for r in results] == expected
    assert '"w9"' in results[9].error  # the refusal's own text: the answer to w9
    assert client.pipelined_total == 20 and server.answered == [key for _, key in batch]


def test_a_probe_after_a_cut_batch_sends_nothing_left_over_from_it():
    server = _ClosingServer(per_connection=1000, status_for=lambda key: 401 if key.startswith('a') else 200)
    client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{server.port}/events'))
    batch = _batch(5, 'a')
    try:
        client.begin(batch)
        assert client.post(*batch[0]).verdict is Verdict.PARKED  # the forwarder ends the round here
        probe = _batch(1, 'b')[0]
        assert client.post(*probe).verdict is Verdict.DELIVERED  # even without begin() for it
    finally:
        client.close()
        server.stop()
    assert server.answered == ['a0', 'b0']


def test_a_fresh_connection_that_fails_costs_one_attempt_not_three():
    server = _ClosingServer(per_connection=0)  # accepts, then closes without a word
    client = HttpJsonClient(HttpTarget(f'http://127.0.0.1:{server.port}/events', timeout_sec=2.0))
    batch = _batch(4, 'f')
    try:
        client.begin(batch)
        first = client.post(*batch[0])
    finally:
        client.close()
        server.stop()
    assert first.verdict is Verdict.RETRY
    assert server.connections == 1
