"""Reference backend: `schnitzel-stream backend [--host 127.0.0.1 --port 18080 --db PATH]`.

The demo's default backend and the fault suite's oracle. It takes event POSTs on any path, keeps
each Idempotency-Key once (SQLite), and reports what it saw:
  GET  /stats              {"unique", "duplicates", "total_posts", "faulted_posts", "invalid_posts", "mode"}
  GET  /events?limit=&after=  stored events in arrival order (paged by id)
  GET  /healthz            {"ok": true}
  POST /control            {"mode": "ok|5xx|4xx|429|400|slow|two_segments", "status": 503, "delay_ms": 0,
                            "retry_after": null, "count": null}  -> fault injection for tests
  POST <any other path>    an event: 201 new, 200 duplicate, 400 body is not JSON (or over EVENT_JSON_LIMITS)

Why asyncio with a small HTTP/1.1 reader instead of http.server: the benchmark needs thousands of
POSTs per second on two cores, and http.server's per-request email-parser and thread cost would
make the oracle, not the forwarder, the thing being measured. Only what clients of this suite
send is supported: Content-Length bodies, keep-alive, no chunked uploads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from schnitzel_stream_ros.delivery.backend_store import BackendStore, Incoming, key_for
from schnitzel_stream_ros.document_limits import EVENT_JSON_LIMITS, DocumentError, load_json

_LOG = logging.getLogger('schnitzel_stream.delivery.backend')

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
MODES = ('ok', '5xx', '4xx', '429', '400', 'slow', 'two_segments')


@dataclass
class FaultControl:
    """How the backend answers event POSTs right now (tests flip it through POST /control)."""

    mode: str = 'ok'
    status: int = 503  # for modes 5xx (500..599) and 4xx (400..499, e.g. 401 for a rotated token)
    delay_ms: int = 0  # for mode slow (stored first, answered late)
    retry_after: float | None = None  # Retry-After header for 429 / 5xx
    count: int | None = None  # apply to the next N event POSTs, then back to ok; None = until changed

    @classmethod
    def parse(cls, data: Any) -> FaultControl:
        if not isinstance(data, dict):
            raise ValueError('control: expected a JSON object')
        unknown = sorted(set(data) - {'mode', 'status', 'delay_ms', 'retry_after', 'count'})
        if unknown:
            raise ValueError(f'control: unknown field {unknown[0]!r}')
        control = cls(**data)
        if control.mode not in MODES:
            raise ValueError(f'control.mode: expected one of {list(MODES)}, got {control.mode!r}')
        low = 400 if control.mode == '4xx' else 500
        if not isinstance(control.status, int) or not low <= control.status <= low + 99:
            raise ValueError(f'control.status: expected {low}..{low + 99}, got {control.status!r}')
        if not isinstance(control.delay_ms, int | float) or control.delay_ms < 0:
            raise ValueError(f'control.delay_ms: expected >= 0, got {control.delay_ms!r}')
        if control.count is not None and (not isinstance(control.count, int) or control.count < 0):
            raise ValueError(f'control.count: expected an int >= 0 or null, got {control.count!r}')
        return control

    def take(self) -> FaultControl:
        """The behaviour for one event POST; counts down `count`."""
        current = FaultControl(self.mode, self.status, self.delay_ms, self.retry_after, None)
        if self.count is not None:
            self.count -= 1
            if self.count <= 0:
                self.mode, self.count = 'ok', None
        return current


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


class RunningBackend:
    """A BackendServer on its own event-loop thread (tests, benchmarks)."""

    def __init__(
        self, server: BackendServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        self.server = server
        self._loop = loop
        self._thread = thread

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def stats(self) -> dict[str, int]:
        with self.server.store_lock:
            return self.server.store.stats()

    def keys(self) -> set[str]:
        with self.server.store_lock:
            return self.server.store.keys()

    def set_control(self, **fields: Any) -> None:
        self.server.set_control(**fields)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def serve_in_thread(
    host: str = '127.0.0.1', port: int = 0, db: str = ':memory:', synchronous: str = 'NORMAL'
) -> RunningBackend:
    """Start a backend on a daemon thread; returns once it listens (port 0 = any free port)."""
    server = BackendServer(host, port, db, synchronous)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name='reference-backend', daemon=True)
    thread.start()
    started.wait(10)
    if failure:
        raise failure[0]
    return RunningBackend(server, loop, thread)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='schnitzel-stream backend', description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    parser.add_argument('--port', type=int, default=18080, help='port (default 18080; 0 = any free port)')
    parser.add_argument('--db', default='backend.db', help="SQLite file for the events (':memory:' for none)")
    parser.add_argument(
        '--synchronous',
        default='NORMAL',
        choices=('OFF', 'NORMAL', 'FULL'),
        help='SQLite synchronous of the event store (NORMAL survives a killed process)',
    )
    parser.add_argument('--mode', default='ok', choices=MODES, help='initial fault mode (tests)')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the backend until SIGINT/SIGTERM. Prints one JSON line with the URL once it listens."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s backend %(levelname)s %(message)s')

    async def run() -> None:
        try:
            server = BackendServer(args.host, args.port, args.db, args.synchronous)
        except Exception as exc:
            raise SystemExit(f'backend: cannot open --db {args.db}: {exc}') from None
        server.control = FaultControl(mode=args.mode)
        try:
            await server.start()
        except OSError as exc:
            raise SystemExit(f'backend: cannot listen on {args.host}:{args.port}: {exc}') from None
        print(json.dumps({'backend': 'listening', 'url': server.url, 'db': args.db}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == '__main__':
    sys.exit(main())
