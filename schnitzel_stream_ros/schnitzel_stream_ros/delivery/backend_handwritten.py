"""The former reference backend on a hand-written HTTP/1.1 reader (asyncio Protocol), kept for speed.

    python -m schnitzel_stream_ros.delivery.backend_handwritten [--port 18080 --db PATH]

Same endpoints, store and fault modes as the reference backend (delivery/backend.py, on aiohttp),
which the tests, the demo and the fault soak use. This one stays for one job: a backend fast enough
that a delivery benchmark on two shared cores measures the forwarder, not the oracle. The
same-run figures that justify keeping it (delivery rate and backend CPU per event, aiohttp vs this
server) are printed by bench/queue_bench.py and kept in docs/delivery.md. Because it parses HTTP
itself, it is fuzzed (test/unit/test_backend_handwritten_fuzz.py): any bytes from a client give a
well-formed answer or a closed connection, never a crash, and the server keeps serving others.
Only what clients of this suite send is supported: Content-Length bodies, keep-alive, no chunked
uploads (refused with 501).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

from schnitzel_stream_ros.delivery.backend import (
    RunningBackend,
    build_parser,
    run_in_thread,
    serve_until_signal,
)
from schnitzel_stream_ros.delivery.backend_faults import FaultControl
from schnitzel_stream_ros.delivery.backend_store import BackendStore, Incoming, key_for
from schnitzel_stream_ros.document_limits import EVENT_JSON_LIMITS, DocumentError, load_json

_LOG = logging.getLogger('schnitzel_stream.delivery.backend_handwritten')

_MAX_HEAD = 64 * 1024
_MAX_BODY = EVENT_JSON_LIMITS.max_bytes  # 16 MiB; the event JSON is then bounded in depth (document_limits)
_REASONS = {
    200: 'OK',
    201: 'Created',
    400: 'Bad Request',
    404: 'Not Found',
    405: 'Method Not Allowed',
    408: 'Request Timeout',
    409: 'Conflict',
    411: 'Length Required',
    413: 'Payload Too Large',
    425: 'Too Early',
    429: 'Too Many Requests',
    500: 'Internal Server Error',
    501: 'Not Implemented',
    502: 'Bad Gateway',
    503: 'Service Unavailable',
    504: 'Gateway Timeout',
}
def _response(status: int, body: bytes, extra: dict[str, str] | None = None, close: bool = False) -> bytes:
    head = [
        f'HTTP/1.1 {status} {_REASONS.get(status, "Status")}',
        'Content-Type: application/json',
        f'Content-Length: {len(body)}',
    ]
    if extra:
        head.extend(f'{k}: {v}' for k, v in extra.items())
    if close:
        head.append('Connection: close')
    return ('\r\n'.join(head) + '\r\n\r\n').encode('latin-1') + body


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(',', ':')).encode()


class _Request:
    __slots__ = ('body', 'headers', 'keep_alive', 'method', 'target')

    def __init__(
        self, method: str, target: str, headers: dict[str, str], body: bytes, keep_alive: bool
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class _Connection(asyncio.Protocol):
    """One client connection: parse requests one at a time, answer in order."""

    def __init__(self, server: BackendServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being answered; later ones wait in the buffer
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.pump()

    def pump(self) -> None:
        while not self.busy and not self.closing:
            request = self._parse()
            if request is None:
                return
            self.busy = True
            self.server.dispatch(self, request)

    def _parse(self) -> _Request | None:
        end = self.buffer.find(b'\r\n\r\n')
        if end < 0:
            if len(self.buffer) > _MAX_HEAD:
                self.reply(_response(413, b'{"error":"header too large"}', close=True), keep_alive=False)
            return None
        lines = bytes(self.buffer[:end]).decode('latin-1').split('\r\n')
        try:
            method, target, version = lines[0].split(' ', 2)
        except ValueError:
            self.reply(_response(400, b'{"error":"bad request line"}', close=True), keep_alive=False)
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
        if 'chunked' in headers.get('transfer-encoding', '').lower():
            self.reply(
                _response(501, b'{"error":"chunked uploads are not supported"}', close=True), keep_alive=False
            )
            return None
        length_text = headers.get('content-length', '0')
        if not length_text.isdigit() or int(length_text) > _MAX_BODY:
            self.reply(
                _response(413, b'{"error":"bad or too large content-length"}', close=True), keep_alive=False
            )
            return None
        length = int(length_text)
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        connection = headers.get('connection', '').lower()
        keep_alive = connection != 'close' if version == 'HTTP/1.1' else connection == 'keep-alive'
        return _Request(method.upper(), target, headers, body, keep_alive)

    def reply(self, data: bytes, keep_alive: bool, two_segments: bool = False) -> None:
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        if two_segments:  # as http.server does it: headers, then body, Nagle on (tests)
            sock = self.transport.get_extra_info('socket')
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            split = data.find(b'\r\n\r\n') + 4
            self.transport.write(data[:split])
            data = data[split:]
        self.transport.write(data)
        if not keep_alive:
            self.closing = True
            self.transport.close()
            return
        self.busy = False
        self.pump()


class BackendServer:
    """The asyncio server. Use `serve_in_thread()` in tests, `main()` from the command line."""

    def __init__(
        self, host: str = '127.0.0.1', port: int = 18080, db: str = ':memory:', synchronous: str = 'NORMAL'
    ) -> None:
        self.host = host
        self.port = port
        self.store = BackendStore(db, synchronous)
        self.store_lock = threading.Lock()
        self.control = FaultControl()
        self.connections: set[_Connection] = set()
        self._pending: list[tuple[_Connection, _Request, Incoming, FaultControl]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
        self._flush()
        with self.store_lock:
            self.store.close()

    @property
    def url(self) -> str:
        return f'http://{self.host}:{self.port}'

    # -- requests ----------------------------------------------------------------------------
    def dispatch(self, conn: _Connection, request: _Request) -> None:
        parts = urlsplit(request.target)
        path = parts.path
        if request.method == 'GET':
            conn.reply(self._get(path, parse_qs(parts.query)), request.keep_alive)
        elif request.method == 'POST' and path == '/control':
            conn.reply(self._set_control(request.body), request.keep_alive)
        elif request.method in ('POST', 'PUT'):
            self._event(conn, request, path)
        else:
            conn.reply(_response(405, b'{"error":"method not allowed"}'), request.keep_alive)

    def _get(self, path: str, query: dict[str, list[str]]) -> bytes:
        if path == '/stats':
            with self.store_lock:
                stats = self.store.stats()
            return _response(200, _json({**stats, 'mode': self.control.mode}))
        if path == '/events':
            try:
                limit = min(10_000, int(query.get('limit', ['100'])[0]))
                after = int(query.get('after', ['0'])[0])
            except ValueError:
                return _response(400, b'{"error":"limit and after must be integers"}')
            with self.store_lock:
                events = self.store.events(limit, after)
            return _response(
                200, _json({'events': events, 'next_after': events[-1]['id'] if events else after})
            )
        if path == '/healthz':
            return _response(200, b'{"ok":true}')
        if path == '/control':
            return _response(200, _json(asdict(self.control)))
        return _response(404, b'{"error":"not found"}')

    def _set_control(self, body: bytes) -> bytes:
        try:
            self.control = FaultControl.parse(load_json(body.decode('utf-8') or '{}', EVENT_JSON_LIMITS))
        except (ValueError, TypeError) as exc:  # DocumentError and UnicodeDecodeError are ValueErrors
            return _response(400, _json({'error': str(exc)}))
        _LOG.info('fault mode: %s', asdict(self.control))
        return _response(200, _json(asdict(self.control)))

    def set_control(self, **fields: Any) -> None:
        """Thread-safe fault switch for in-process tests."""
        control = FaultControl.parse(fields)
        assert self._loop is not None
        done = threading.Event()

        def apply() -> None:
            self.control = control
            done.set()

        self._loop.call_soon_threadsafe(apply)
        done.wait(5.0)

    def _event(self, conn: _Connection, request: _Request, path: str) -> None:
        fault = self.control.take()
        if fault.mode in ('5xx', '4xx', '429', '400'):
            status = {'5xx': fault.status, '4xx': fault.status, '429': 429, '400': 400}[fault.mode]
            extra = {'Retry-After': f'{fault.retry_after:g}'} if fault.retry_after is not None else None
            with self.store_lock:
                self.store.count('faulted_posts')
            conn.reply(
                _response(status, _json({'error': f'fault mode {fault.mode}'}), extra), request.keep_alive
            )
            return
        try:
            text = request.body.decode('utf-8')
            load_json(text, EVENT_JSON_LIMITS)
        except DocumentError as exc:  # over a limit (nesting) or a NUL: say which
            with self.store_lock:
                self.store.count('invalid_posts')
            conn.reply(_response(400, _json({'error': f'event refused: {exc}'})), request.keep_alive)
            return
        except (UnicodeDecodeError, ValueError):
            with self.store_lock:
                self.store.count('invalid_posts')
            conn.reply(_response(400, b'{"error":"body is not JSON"}'), request.keep_alive)
            return
        key = key_for(request.headers.get('idempotency-key'), request.body)
        self._pending.append((conn, request, Incoming(key, path, text), fault))
        if len(self._pending) == 1:
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Store everything that arrived in this loop turn in one transaction, then answer."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self.store_lock:
                created = self.store.store([item for _, _, item, _ in batch])
        except Exception as exc:  # storage trouble: tell the clients to retry
            _LOG.exception('backend store failed')
            for conn, request, _, _ in batch:
                conn.reply(_response(503, _json({'error': f'store failed: {exc}'})), request.keep_alive)
            return
        assert self._loop is not None
        for (conn, request, item, fault), new in zip(batch, created, strict=True):
            body = _json({'status': 'created' if new else 'duplicate', 'key': item.key})
            data = _response(201 if new else 200, body)
            if fault.mode == 'slow' and fault.delay_ms > 0:
                self._loop.call_later(fault.delay_ms / 1000.0, conn.reply, data, request.keep_alive)
            else:
                conn.reply(data, request.keep_alive, two_segments=fault.mode == 'two_segments')


def serve_in_thread(
    host: str = '127.0.0.1', port: int = 0, db: str = ':memory:', synchronous: str = 'NORMAL'
) -> RunningBackend:
    """Start this server on a daemon thread; returns once it listens (port 0 = any free port)."""
    return run_in_thread(BackendServer(host, port, db, synchronous))


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM. Prints one JSON line with the URL once it listens."""
    prog = 'python -m schnitzel_stream_ros.delivery.backend_handwritten'
    parser = build_parser(prog, __doc__.splitlines()[0])
    return serve_until_signal(BackendServer, parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
