"""Loopback TCP chaos proxy: put it between a client and a server and break the network on cue.

Toxiproxy and tc netem are not available here, so the fault suite uses this: deterministic (a
mode holds until it is changed, no randomness), loopback only, and controllable in-process
(`serve_in_thread(...).set_mode(...)`) or from another process over a tiny HTTP control port.

Modes (they apply to new *and* open connections):
  pass       forward bytes both ways
  delay      forward each chunk after `delay_ms` (both directions)
  blackhole  accept and read, forward nothing, answer nothing (clients time out)
  reset      answer every connection and every open one with a TCP RST
  refuse     stop listening (connect() fails with ECONNREFUSED) and reset open connections

CLI: python -m schnitzel_stream_ros.testing.chaos_proxy --upstream 127.0.0.1:18080
     [--listen 127.0.0.1:0] [--control 127.0.0.1:0]; prints one JSON line with both ports.
     Control: POST /mode {"mode": "delay", "delay_ms": 200}; GET /mode; GET /stats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from typing import Any

MODES = ('pass', 'delay', 'blackhole', 'reset', 'refuse')
_CHUNK = 64 * 1024


@dataclass
class ProxyStats:
    accepted: int = 0
    reset: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped_bytes: int = 0


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info('socket')
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection (client side and, unless blackholed at accept, upstream side)."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        _abort_with_rst(self.client)
        if self.upstream is not None:
            _abort_with_rst(self.upstream)
        for task in self.tasks:
            task.cancel()


class ChaosProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = '127.0.0.1',
        listen_port: int = 0,
        mode: str = 'pass',
        delay_ms: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f'mode: expected one of {list(MODES)}, got {mode!r}')
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.mode = mode
        self.delay_ms = delay_ms
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.mode != 'refuse':
            await self._listen()
        elif self.listen_port == 0:
            raise ValueError('mode refuse at start needs a fixed listen port')

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self.listen_port, reuse_address=True
        )
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.reset()
        self._links.clear()

    async def set_mode(self, mode: str, delay_ms: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f'mode: expected one of {list(MODES)}, got {mode!r}')
        old, self.mode, self.delay_ms = self.mode, mode, int(delay_ms)
        if mode in ('reset', 'refuse'):
            for link in list(self._links):
                link.reset()
                self.stats.reset += 1
            self._links.clear()
        if mode == 'refuse' and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif mode != 'refuse' and old == 'refuse' and self._server is None:
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        link = _Link(writer)
        if self.mode in ('reset', 'refuse'):
            self.stats.reset += 1
            _abort_with_rst(writer)
            return
        self._links.add(link)
        try:
            if self.mode == 'blackhole':
                await self._swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.stats.upstream_failures += 1
                _abort_with_rst(writer)  # what a client sees when the server behind is gone
                return
            link.upstream = up_writer
            up = asyncio.ensure_future(self._pump(reader, up_writer, 'bytes_up'))
            down = asyncio.ensure_future(self._pump(up_reader, writer, 'bytes_down'))
            link.tasks = [up, down]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in link.tasks:
                task.cancel()
            for side in (writer, up_writer):
                with contextlib.suppress(Exception):
                    side.close()
        finally:
            self._links.discard(link)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(_CHUNK):
                self.stats.dropped_bytes += len(data)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(_CHUNK):
                if self.mode == 'delay' and self.delay_ms > 0:
                    await asyncio.sleep(self.delay_ms / 1000.0)
                if self.mode == 'blackhole':
                    self.stats.dropped_bytes += len(data)
                    continue
                writer.write(data)
                await writer.drain()
                setattr(self.stats, counter, getattr(self.stats, counter) + len(data))
            if writer.can_write_eof():
                writer.write_eof()


class RunningProxy:
    """A ChaosProxy on its own event-loop thread; every call returns once it took effect."""

    def __init__(self, proxy: ChaosProxy, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.proxy = proxy
        self._loop = loop
        self._thread = thread

    @property
    def port(self) -> int:
        return self.proxy.listen_port

    @property
    def address(self) -> str:
        return f'{self.proxy.listen_host}:{self.proxy.listen_port}'

    def set_mode(self, mode: str, delay_ms: int = 0) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.set_mode(mode, delay_ms), self._loop).result(10)

    def stats(self) -> dict[str, Any]:
        return dict(vars(self.proxy.stats))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def serve_in_thread(
    upstream_host: str, upstream_port: int, listen_port: int = 0, mode: str = 'pass', delay_ms: int = 0
) -> RunningProxy:
    proxy = ChaosProxy(upstream_host, upstream_port, '127.0.0.1', listen_port, mode, delay_ms)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(proxy.start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        # let cancelled pumps finish before the loop goes away
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, name='chaos-proxy', daemon=True)
    thread.start()
    ready.wait(10)
    if failure:
        raise failure[0]
    return RunningProxy(proxy, loop, thread)


async def _control_client(
    proxy: ChaosProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Minimal HTTP/1.0-style control endpoint (one request per connection)."""
    try:
        head = await reader.readuntil(b'\r\n\r\n')
        request_line, *header_lines = head.decode('latin-1').split('\r\n')
        method, path, _ = request_line.split(' ', 2)
        length = 0
        for line in header_lines:
            name, _, value = line.partition(':')
            if name.strip().lower() == 'content-length':
                length = int(value.strip() or 0)
        body = await reader.readexactly(length) if length else b''
        status, answer = 200, {}
        if method == 'POST' and path == '/mode':
            try:
                data = json.loads(body or b'{}')
                await proxy.set_mode(str(data.get('mode', '')), int(data.get('delay_ms', 0)))
                answer = {'mode': proxy.mode, 'delay_ms': proxy.delay_ms}
            except (ValueError, TypeError) as exc:
                status, answer = 400, {'error': str(exc)}
        elif method == 'GET' and path == '/mode':
            answer = {'mode': proxy.mode, 'delay_ms': proxy.delay_ms}
        elif method == 'GET' and path == '/stats':
            answer = dict(vars(proxy.stats))
        else:
            status, answer = 404, {'error': 'not found'}
        payload = json.dumps(answer).encode()
        writer.write(
            f'HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n'
            f'Connection: close\r\n\r\n'.encode()
            + payload
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
        pass
    finally:
        writer.close()


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(':')
    if not sep or not port.isdigit():
        raise SystemExit(f'chaos_proxy: {what}: expected host:port, got {text!r}')
    if host not in ('127.0.0.1', 'localhost', '::1', '[::1]'):
        raise SystemExit(f'chaos_proxy: {what}: loopback only, got {host!r}')
    return host.strip('[]'), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='chaos_proxy', description=__doc__.splitlines()[0])
    parser.add_argument('--upstream', required=True, help='host:port of the real server')
    parser.add_argument('--listen', default='127.0.0.1:0', help='host:port to accept clients on')
    parser.add_argument('--control', default='127.0.0.1:0', help='host:port of the control API')
    parser.add_argument('--mode', default='pass', choices=MODES)
    parser.add_argument('--delay-ms', type=int, default=0)
    args = parser.parse_args(argv)
    upstream = _host_port(args.upstream, '--upstream')
    listen = _host_port(args.listen, '--listen')
    control = _host_port(args.control, '--control')

    async def run() -> None:
        proxy = ChaosProxy(*upstream, *listen, mode=args.mode, delay_ms=args.delay_ms)
        await proxy.start()
        control_server = await asyncio.start_server(
            lambda r, w: _control_client(proxy, r, w), *control, reuse_address=True
        )
        print(
            json.dumps(
                {
                    'proxy': f'{listen[0]}:{proxy.listen_port}',
                    'control': f'{control[0]}:{control_server.sockets[0].getsockname()[1]}',
                    'upstream': args.upstream,
                }
            ),
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        control_server.close()
        await proxy.stop()

    asyncio.run(run())
    return 0


if __name__ == '__main__':
    sys.exit(main())
