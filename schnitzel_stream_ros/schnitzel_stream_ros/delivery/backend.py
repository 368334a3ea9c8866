"""Reference backend: `schnitzel-stream backend [--host 127.0.0.1 --port 18080 --db PATH]`.

The demo's default backend and the fault suite's oracle. It takes event POSTs on any path, keeps
each Idempotency-Key once (SQLite), and reports what it saw:
  GET  /stats              {"unique", "duplicates", "total_posts", "faulted_posts", "invalid_posts", "mode"}
  GET  /events?limit=&after=  stored events in arrival order (paged by id)
  GET  /healthz            {"ok": true}
  POST /control            {"mode": "ok|5xx|4xx|429|400|slow|two_segments", "status": 503, "delay_ms": 0,
                            "retry_after": null, "count": null}  -> fault injection for tests
  POST <any other path>    an event: 201 new, 200 duplicate, 400 body is not JSON (or over EVENT_JSON_LIMITS),
                           413 body over EVENT_JSON_LIMITS.max_bytes

HTTP is uvicorn, the ASGI server the control plane runs on (one server to know, patch and pin), here
with its C parser (httptools) on uvloop: the backend's CPU per event is what limits a delivery
benchmark on two shared cores, and bench/queue_bench.py measures this setup against uvicorn with
h11 on asyncio (the control plane's) and httptools on asyncio in the same run (figures in
docs/delivery.md). Request parsing, keep-alive and chunked uploads are the server's; this module is
a plain ASGI application (no framework: five routes). What is left here is the oracle: events
stored once per key in batches (everything that arrived in one event-loop turn goes into one SQLite
transaction, so the store is not what a delivery benchmark measures), counters, and fault injection
(backend_faults.py). Bounds: request head `_MAX_HEAD` (400 and close beyond; counted here for
httptools, which has no bound of its own; with `--http h11` it is h11's bound on an incomplete
head), body `_MAX_BODY` (413 here, from Content-Length before reading or while reading a chunked
body), at most `_MAX_CONNECTIONS` connections (503 beyond).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs

from schnitzel_stream_ros.delivery.backend_faults import MODES, FaultControl
from schnitzel_stream_ros.delivery.backend_store import BackendStore, Incoming, key_for
from schnitzel_stream_ros.document_limits import EVENT_JSON_LIMITS, DocumentError, load_json

_LOG = logging.getLogger('schnitzel_stream.delivery.backend')

_MAX_BODY = EVENT_JSON_LIMITS.max_bytes  # 16 MiB, then bounded in depth (document_limits)
_MAX_HEAD = 16 * 1024  # request line + headers; enforced in the httptools protocol below
_MAX_CONNECTIONS = 512
_KEEP_ALIVE_SEC = 75.0  # forwarder connections idle between bursts; reconnecting costs more than a socket
_SHUTDOWN_SEC = 1.0  # answers still held back (mode slow) when stopping: not worth waiting for
_START_TIMEOUT_SEC = 10.0
#: uvicorn's HTTP/1.1 implementation: 'httptools' (C, llhttp) or 'h11' (pure Python). See the module doc.
HTTP_IMPLEMENTATIONS = ('httptools', 'h11')
#: The event loop under it: 'uvloop' (libuv, C) or 'asyncio' (the standard library's). See the module doc.
LOOP_KINDS = ('uvloop', 'asyncio')
_JSON_HEADERS = [(b'content-type', b'application/json')]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(',', ':')).encode()


class _StoreFailed(Exception):
    """The batch this event was in could not be stored (the client is told to retry)."""


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    """The client disconnected before its body was complete: nothing to store, nobody to answer."""


def _protocol_class(http: str) -> type:
    """uvicorn's protocol for `http`, handing each connection's socket to the application (in the
    scope's `state`, per connection): fault mode two_segments turns Nagle back on for the answer, as
    Python's http.server has it. The httptools protocol is also given h11's bound on a request head
    (llhttp has none of its own)."""
    if http == 'h11':
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base
    elif http == 'httptools':
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    else:
        raise ValueError(f'http: expected one of {list(HTTP_IMPLEMENTATIONS)}, got {http!r}')

    class SocketInScope(Base):  # type: ignore[misc, valid-type]
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_OneWritePerTurn(transport))
            self.app_state = {**self.app_state, 'socket': transport.get_extra_info('socket')}

        if http == 'httptools':

            def on_message_begin(self) -> None:
                self._head_bytes = 0
                super().on_message_begin()

            def on_url(self, url: bytes) -> None:
                self._bound_head(len(url))
                super().on_url(url)

            def on_header(self, name: bytes, value: bytes) -> None:
                self._bound_head(len(name) + len(value) + 4)
                super().on_header(name, value)

            def _bound_head(self, n: int) -> None:
                self._head_bytes += n
                if self._head_bytes > _MAX_HEAD:
                    from httptools import HttpParserError

                    raise HttpParserError('request head too large')  # uvicorn: 400 and close

    return SocketInScope


class _OneWritePerTurn:
    """The connection's transport, with what uvicorn writes in one event-loop turn sent in one
    send(): uvicorn writes an answer's head and body separately, i.e. two syscalls and two TCP
    segments per event; joined, the backend spends measurably less CPU per event (bench/queue_bench.py
    `backend_cpu_us_per_event`). Order is kept (every write goes through here); close() sends what is
    pending first. Everything else is the transport's."""

    __slots__ = ('_loop', '_pending', '_transport')

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b''.join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BackendServer:
    """The ASGI application and its uvicorn server. Use `serve_in_thread()` in tests, `main()` from
    the command line."""

    def __init__(
        self,
        host: str = '127.0.0.1',
        port: int = 18080,
        db: str = ':memory:',
        synchronous: str = 'NORMAL',
        http: str = 'httptools',
    ) -> None:
        self.host = host
        self.port = port
        self.http = http
        self._protocol = _protocol_class(http)
        self.store = BackendStore(db, synchronous)
        self.store_lock = threading.Lock()
        self.control = FaultControl()
        self._pending: list[tuple[Incoming, asyncio.Future[bool]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._serving: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        import uvicorn

        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ':' in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(512)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            http=self._protocol,
            ws='none',
            lifespan='off',
            loop='none',
            log_level='warning',
            access_log=False,
            server_header=False,
            date_header=False,
            proxy_headers=False,  # no proxy in front of a test oracle; saves a middleware per request
            limit_concurrency=_MAX_CONNECTIONS,
            timeout_keep_alive=_KEEP_ALIVE_SEC,
            timeout_graceful_shutdown=_SHUTDOWN_SEC,
            h11_max_incomplete_event_size=_MAX_HEAD,
        )
        self._server = uvicorn.Server(config)
        self._serving = self._loop.create_task(self._server.serve(sockets=[sock]))
        deadline = time.monotonic() + _START_TIMEOUT_SEC
        while not self._server.started:
            if self._serving.done() or time.monotonic() > deadline:
                self._server.should_exit = True
                sock.close()
                raise OSError(f'backend: uvicorn did not start on {self.host}:{self.port}')
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._serving is not None:
                await self._serving
            self._server = None
        self._flush()
        with self.store_lock:
            self.store.close()

    @property
    def url(self) -> str:
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'http://{host}:{self.port}'

    # -- the ASGI application ------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope['type'] != 'http':
            return
        method = scope['method']
        path = scope['path']
        if method == 'GET':
            status, body = self._get(path, scope['query_string'])
        elif method in ('POST', 'PUT'):
            try:
                data = await _read_body(scope, receive)
            except _BodyTooLarge:
                self._count('invalid_posts')
                await _answer(send, 413, b'{"error":"body too large"}', close=True)
                return
            except _ClientGone:
                return
            if method == 'POST' and path == '/control':
                status, body = self._set_control(data)
            else:
                await self._event(scope, send, path, data)
                return
        else:
            status, body = 405, b'{"error":"method not allowed"}'
        await _answer(send, status, body)

    def _get(self, path: str, query_string: bytes) -> tuple[int, bytes]:
        if path == '/stats':
            with self.store_lock:
                stats = self.store.stats()
            return 200, _json({**stats, 'mode': self.control.mode})
        if path == '/events':
            query = parse_qs(query_string.decode('latin-1'), max_num_fields=8)
            try:
                limit = min(10_000, int(query.get('limit', ['100'])[0]))
                after = int(query.get('after', ['0'])[0])
            except ValueError:
                return 400, b'{"error":"limit and after must be integers"}'
            with self.store_lock:
                events = self.store.events(limit, after)
            next_after = events[-1]['id'] if events else after
            return 200, _json({'events': events, 'next_after': next_after})
        if path == '/healthz':
            return 200, b'{"ok":true}'
        if path == '/control':
            return 200, _json(asdict(self.control))
        return 404, b'{"error":"not found"}'

    def _set_control(self, body: bytes) -> tuple[int, bytes]:
        try:
            self.control = FaultControl.parse(load_json(body.decode('utf-8') or '{}', EVENT_JSON_LIMITS))
        except (ValueError, TypeError) as exc:  # DocumentError and UnicodeDecodeError are ValueErrors
            return 400, _json({'error': str(exc)})
        _LOG.info('fault mode: %s', asdict(self.control))
        return 200, _json(asdict(self.control))

    def set_control(self, **fields: Any) -> None:
        """Fault switch for in-process tests (one reference assignment: thread-safe)."""
        self.control = FaultControl.parse(fields)

    def _count(self, name: str) -> None:
        with self.store_lock:
            self.store.count(name)

    async def _event(self, scope: dict, send: Any, path: str, body: bytes) -> None:
        fault = self.control.take()
        if fault.mode in ('5xx', '4xx', '429', '400'):
            status = {'5xx': fault.status, '4xx': fault.status, '429': 429, '400': 400}[fault.mode]
            extra = (
                [(b'retry-after', f'{fault.retry_after:g}'.encode())] if fault.retry_after is not None else []
            )
            self._count('faulted_posts')
            await _answer(send, status, _json({'error': f'fault mode {fault.mode}'}), extra=extra)
            return
        try:
            text = body.decode('utf-8')
            load_json(text, EVENT_JSON_LIMITS)
        except DocumentError as exc:  # over a limit (nesting) or a NUL: say which
            self._count('invalid_posts')
            await _answer(send, 400, _json({'error': f'event refused: {exc}'}))
            return
        except (UnicodeDecodeError, ValueError):
            self._count('invalid_posts')
            await _answer(send, 400, b'{"error":"body is not JSON"}')
            return
        key = key_for(_header(scope, b'idempotency-key'), body)
        try:
            new = await self._stored(Incoming(key, path, text))
        except _StoreFailed as exc:
            await _answer(send, 503, _json({'error': f'store failed: {exc}'}))
            return
        status = 201 if new else 200
        answer = _json({'status': 'created' if new else 'duplicate', 'key': key})
        if fault.mode == 'slow' and fault.delay_ms > 0:
            await asyncio.sleep(fault.delay_ms / 1000.0)  # stored first, answered late
        if fault.mode == 'two_segments':
            # As Python's http.server answers: the head, then the body in a second write, Nagle
            # on (the fault the forwarder's client defends against with TCP_QUICKACK). uvicorn
            # writes the head at http.response.start and the body at http.response.body; the turn
            # of the loop between them sends the head on its own (_OneWritePerTurn).
            sock = scope['state'].get('socket')
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            await send({'type': 'http.response.start', 'status': status, 'headers': _head(answer)})
            await asyncio.sleep(0)
            await send({'type': 'http.response.body', 'body': answer})
            return
        await _answer(send, status, answer)

    async def _stored(self, item: Incoming) -> bool:
        """Queue `item` for this loop turn's batch; True when its key was new."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Store everything that arrived in this loop turn in one transaction, then answer."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self.store_lock:
                created = self.store.store([item for item, _ in batch])
        except Exception as exc:  # storage trouble: tell the clients to retry
            _LOG.exception('backend store failed')
            for _, future in batch:
                if not future.done():
                    future.set_exception(_StoreFailed(str(exc)))
            return
        for (_, future), new in zip(batch, created, strict=True):
            if not future.done():
                future.set_result(new)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope['headers']:
        if key == name:
            return value.decode('latin-1')
    return None


async def _read_body(scope: dict, receive: Any) -> bytes:
    """The request body, refused (before reading it) beyond _MAX_BODY."""
    declared = _header(scope, b'content-length')
    if declared is not None and declared.isdigit() and int(declared) > _MAX_BODY:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message['type'] != 'http.request':  # http.disconnect: the client went away
            raise _ClientGone
        chunk = message.get('body', b'')
        size += len(chunk)
        if size > _MAX_BODY:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get('more_body', False):
            return chunks[0] if len(chunks) == 1 else b''.join(chunks)


def _head(body: bytes) -> list[tuple[bytes, bytes]]:
    return [*_JSON_HEADERS, (b'content-length', str(len(body)).encode())]


async def _answer(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None, close: bool = False
) -> None:
    headers = _head(body)
    if extra:
        headers.extend(extra)
    if close:
        headers.append((b'connection', b'close'))
    await send({'type': 'http.response.start', 'status': status, 'headers': headers})
    await send({'type': 'http.response.body', 'body': body})


class RunningBackend:
    """A BackendServer on its own event-loop thread (tests, benchmarks, the command line)."""

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
    host: str = '127.0.0.1',
    port: int = 0,
    db: str = ':memory:',
    synchronous: str = 'NORMAL',
    http: str = 'httptools',
    loop_kind: str = 'uvloop',
) -> RunningBackend:
    """Start a backend on a daemon thread; returns once it listens (port 0 = any free port)."""
    return run_in_thread(BackendServer(host, port, db, synchronous, http), loop_kind)


def run_in_thread(server: BackendServer, loop_kind: str = 'uvloop') -> RunningBackend:
    """Run `server` on its own event-loop thread; returns once it listens."""
    if loop_kind == 'uvloop':
        import uvloop

        loop = uvloop.new_event_loop()
    else:
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
    started.wait(_START_TIMEOUT_SEC)
    if failure:
        raise failure[0]
    return RunningBackend(server, loop, thread)


def build_parser(prog: str = 'schnitzel-stream backend', description: str = '') -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0])
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
    parser.add_argument(
        '--loop',
        default='uvloop',
        choices=LOOP_KINDS,
        help="event loop (default uvloop; asyncio = the standard library's, for the benchmark's comparison)",
    )
    parser.add_argument(
        '--http',
        default='httptools',
        choices=HTTP_IMPLEMENTATIONS,
        help="uvicorn's HTTP/1.1 parser (default httptools; h11: pure Python, for the benchmark)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the backend until SIGINT/SIGTERM. Prints one JSON line with the URL once it listens."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s backend %(levelname)s %(message)s')
    try:
        server = BackendServer(args.host, args.port, args.db, args.synchronous, args.http)
    except Exception as exc:
        raise SystemExit(f'backend: cannot open --db {args.db}: {exc}') from None
    server.control = FaultControl(mode=args.mode)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        running = run_in_thread(server, args.loop)
    except OSError as exc:
        raise SystemExit(f'backend: cannot listen on {args.host}:{args.port}: {exc}') from None
    print(json.dumps({'backend': 'listening', 'url': server.url, 'db': args.db}), flush=True)
    while not stop.wait(0.5):
        pass
    running.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
