"""Reference backend: `schnitzel-stream backend [--host 127.0.0.1 --port 18080 --db PATH]`.

The demo's default backend and the fault suite's oracle. It takes event POSTs on any path, keeps
each Idempotency-Key once (SQLite), and reports what it saw:
  GET  /stats              {"unique", "duplicates", "total_posts", "faulted_posts", "invalid_posts", "mode"}
  GET  /events?limit=&after=  stored events in arrival order (paged by id)
  GET  /healthz            {"ok": true}
  POST /control            {"mode": "ok|5xx|4xx|429|400|slow|two_segments", "status": 503, "delay_ms": 0,
                            "retry_after": null, "count": null}  -> fault injection for tests
  POST <any other path>    an event: 201 new, 200 duplicate, 400 body is not JSON (or over EVENT_JSON_LIMITS)

HTTP is aiohttp's server (the maintained asyncio HTTP/1.1 server, C parser): request parsing,
keep-alive, chunked uploads and the limits on lines, headers and bodies are the library's, so the
oracle of the fault suite holds no protocol code of its own. What is left here is the oracle:
events stored once per key in batches (everything that arrived in one event-loop turn goes into
one SQLite transaction, so the store is not what a delivery benchmark measures), counters, and
fault injection (backend_faults.py). bench/queue_bench.py measures delivery into this server
against the former hand-written asyncio server (backend_handwritten.py, kept for its lower CPU
per event, and fuzzed) in the same run.

`serve_in_thread`, `run_in_thread`, `build_parser` and `serve_until_signal` serve both servers.
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
from dataclasses import asdict
from typing import Any

from aiohttp import web

from schnitzel_stream_ros.delivery.backend_faults import MODES, FaultControl
from schnitzel_stream_ros.delivery.backend_store import BackendStore, Incoming, key_for
from schnitzel_stream_ros.document_limits import EVENT_JSON_LIMITS, DocumentError, load_json

_LOG = logging.getLogger('schnitzel_stream.delivery.backend')

_MAX_BODY = EVENT_JSON_LIMITS.max_bytes  # 16 MiB (aiohttp answers 413 beyond); then bounded in depth
_SHUTDOWN_SEC = 1.0  # answers still held back (mode slow) when stopping: not worth waiting for


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(',', ':')).encode()


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=body, content_type='application/json', headers=headers)


class _StoreFailed(Exception):
    """The batch this event was in could not be stored (the client is told to retry)."""


class BackendServer:
    """The aiohttp server. Use `serve_in_thread()` in tests, `main()` from the command line."""

    def __init__(
        self, host: str = '127.0.0.1', port: int = 18080, db: str = ':memory:', synchronous: str = 'NORMAL'
    ) -> None:
        self.host = host
        self.port = port
        self.store = BackendStore(db, synchronous)
        self.store_lock = threading.Lock()
        self.control = FaultControl()
        self._pending: list[tuple[Incoming, asyncio.Future[bool]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route('*', '/{path:.*}', self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_SEC)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True, backlog=512)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._flush()
        with self.store_lock:
            self.store.close()

    @property
    def url(self) -> str:
        return f'http://{self.host}:{self.port}'

    # -- requests ----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if request.method == 'GET':
            return self._get(path, request.query)
        if request.method == 'POST' and path == '/control':
            return self._set_control(await request.read())
        if request.method in ('POST', 'PUT'):
            return await self._event(request, path)
        return _answer(405, b'{"error":"method not allowed"}')

    def _get(self, path: str, query: Any) -> web.Response:
        if path == '/stats':
            with self.store_lock:
                stats = self.store.stats()
            return _answer(200, _json({**stats, 'mode': self.control.mode}))
        if path == '/events':
            try:
                limit = min(10_000, int(query.get('limit', '100')))
                after = int(query.get('after', '0'))
            except ValueError:
                return _answer(400, b'{"error":"limit and after must be integers"}')
            with self.store_lock:
                events = self.store.events(limit, after)
            next_after = events[-1]['id'] if events else after
            return _answer(200, _json({'events': events, 'next_after': next_after}))
        if path == '/healthz':
            return _answer(200, b'{"ok":true}')
        if path == '/control':
            return _answer(200, _json(asdict(self.control)))
        return _answer(404, b'{"error":"not found"}')

    def _set_control(self, body: bytes) -> web.Response:
        try:
            self.control = FaultControl.parse(load_json(body.decode('utf-8') or '{}', EVENT_JSON_LIMITS))
        except (ValueError, TypeError) as exc:  # DocumentError and UnicodeDecodeError are ValueErrors
            return _answer(400, _json({'error': str(exc)}))
        _LOG.info('fault mode: %s', asdict(self.control))
        return _answer(200, _json(asdict(self.control)))

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

    def _count(self, name: str) -> None:
        with self.store_lock:
            self.store.count(name)

    async def _event(self, request: web.Request, path: str) -> web.StreamResponse:
        body = await request.read()  # over client_max_size: aiohttp answers 413
        fault = self.control.take()
        if fault.mode in ('5xx', '4xx', '429', '400'):
            status = {'5xx': fault.status, '4xx': fault.status, '429': 429, '400': 400}[fault.mode]
            extra = {'Retry-After': f'{fault.retry_after:g}'} if fault.retry_after is not None else None
            self._count('faulted_posts')
            return _answer(status, _json({'error': f'fault mode {fault.mode}'}), extra)
        try:
            text = body.decode('utf-8')
            load_json(text, EVENT_JSON_LIMITS)
        except DocumentError as exc:  # over a limit (nesting) or a NUL: say which
            self._count('invalid_posts')
            return _answer(400, _json({'error': f'event refused: {exc}'}))
        except (UnicodeDecodeError, ValueError):
            self._count('invalid_posts')
            return _answer(400, b'{"error":"body is not JSON"}')
        key = key_for(request.headers.get('Idempotency-Key'), body)
        try:
            new = await self._stored(Incoming(key, path, text))
        except _StoreFailed as exc:
            return _answer(503, _json({'error': f'store failed: {exc}'}))
        status = 201 if new else 200
        answer = _json({'status': 'created' if new else 'duplicate', 'key': key})
        if fault.mode == 'slow' and fault.delay_ms > 0:
            await asyncio.sleep(fault.delay_ms / 1000.0)  # stored first, answered late
        if fault.mode == 'two_segments':
            return await self._two_segments(request, status, answer)
        return _answer(status, answer)

    async def _two_segments(self, request: web.Request, status: int, body: bytes) -> web.StreamResponse:
        """Answer as Python's http.server does: the head, then the body in a second write, Nagle on
        (the fault the forwarder's client defends against with TCP_QUICKACK)."""
        sock = request.transport.get_extra_info('socket') if request.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        response = web.StreamResponse(status=status, headers={'Content-Type': 'application/json'})
        response.content_length = len(body)
        await response.prepare(request)  # aiohttp sends the head at once, in its own segment
        await response.write(body)
        await response.write_eof()
        return response

    async def _stored(self, item: Incoming) -> bool:
        """Queue `item` for this loop turn's batch; True when its key was new."""
        assert self._loop is not None
        future: asyncio.Future[bool] = self._loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            self._loop.call_soon(self._flush)
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
    return run_in_thread(BackendServer(host, port, db, synchronous))


def run_in_thread(server: Any) -> RunningBackend:
    """Run `server` (this module's BackendServer or one with its interface) on its own event-loop
    thread; returns once it listens."""
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the backend until SIGINT/SIGTERM. Prints one JSON line with the URL once it listens."""
    return serve_until_signal(BackendServer, build_parser().parse_args(argv))


def serve_until_signal(server_class: Any, args: argparse.Namespace) -> int:
    """The command line of a backend: start `server_class` with the parsed options, print one
    JSON line with its URL, serve until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s backend %(levelname)s %(message)s')

    async def run() -> None:
        try:
            server = server_class(args.host, args.port, args.db, args.synchronous)
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
