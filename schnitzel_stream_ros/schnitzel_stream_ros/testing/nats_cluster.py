"""A real NATS JetStream cluster on loopback for tests and benchmarks: Debian's `nats-server`.

`NatsCluster(tmp_dir, size=3)` writes one config per server (JetStream with its own store
directory, a cluster route to each other server, a leaf-node listener, everything on 127.0.0.1 and
free ports), starts them, and waits until the cluster has a JetStream meta leader. Servers can be
killed (SIGKILL: a crash, nothing flushed) and started again on the same store, which is how the
tests take one server or all of them away mid-stream. `LeafNode` is the edge side of the
edge→cloud layout (docs/buses.md): a server without JetStream of its own whose leaf connection to
the cluster carries the edge's publishes and the stream's acks.

Every process started here is in its own session and is stopped by `stop()` / the context manager
(processes.stop: SIGTERM to the group, then SIGKILL). Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.testing.processes import stop as stop_process

NATS_SERVER = 'nats-server'


def nats_server_path() -> str | None:
    """The nats-server binary (Debian installs it in /usr/sbin), or None."""
    return shutil.which(NATS_SERVER) or next(
        (str(p) for p in (Path('/usr/sbin/nats-server'), Path('/usr/bin/nats-server')) if p.exists()), None
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together while chosen, so they differ)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(('127.0.0.1', 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class _Server:
    name: str
    config: Path
    client_port: int
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f'nats://127.0.0.1:{self.client_port}'


@dataclass
class NatsCluster:
    """`size` JetStream servers in one cluster on loopback (start with `start()` or `with`)."""

    root: Path
    size: int = 3
    cluster_name: str = 'cloud'
    domain: str = 'cloud'
    servers: list[_Server] = field(default_factory=list)
    leaf_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        binary = nats_server_path()
        if binary is None:
            raise FileNotFoundError('nats-server not found: run scripts/install-system-deps')
        self.binary = binary
        self.root = Path(self.root)
        ports = free_ports(3 * self.size)
        client, route, leaf = ports[: self.size], ports[self.size : 2 * self.size], ports[2 * self.size :]
        self.leaf_ports = leaf
        for index in range(self.size):
            name = f'n{index + 1}'
            routes = ', '.join(f'"nats-route://127.0.0.1:{route[j]}"' for j in range(self.size) if j != index)
            store = self.root / name / 'jetstream'
            store.mkdir(parents=True, exist_ok=True)
            config = self.root / name / 'server.conf'
            config.write_text(
                f'server_name: {name}\n'
                f'listen: 127.0.0.1:{client[index]}\n'
                'max_payload: 1MB\n'
                f'jetstream {{ domain: {self.domain}, store_dir: "{store}", max_memory_store: 64MB, '
                'max_file_store: 512MB }\n'
                f'cluster {{ name: {self.cluster_name}, listen: 127.0.0.1:{route[index]}, '
                f'routes: [{routes}] }}\n'
                f'leafnodes {{ listen: 127.0.0.1:{leaf[index]} }}\n'
            )
            self.servers.append(_Server(name, config, client[index], self.root / name / 'server.log'))

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def leaf_urls(self) -> list[str]:
        return [f'nats-leaf://127.0.0.1:{port}' for port in self.leaf_ports]

    def start_server(self, index: int) -> None:
        server = self.servers[index]
        if server.proc is not None and server.proc.poll() is None:
            return
        with server.log.open('ab') as log:
            server.proc = subprocess.Popen(
                [self.binary, '-c', str(server.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_server(self, index: int, sig: int = signal.SIGKILL) -> None:
        """A crash of one server (SIGKILL by default): nothing flushed, the store stays."""
        server = self.servers[index]
        if server.proc is not None:
            stop_process(server.proc, sig, timeout=10.0)
            server.proc = None

    def index_of(self, name: str) -> int:
        return next(i for i, s in enumerate(self.servers) if s.name == name)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for index in range(self.size):
            self.start_server(index)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running server accepts clients and JetStream has a meta leader."""
        deadline = time.monotonic() + timeout
        last = ''
        while time.monotonic() < deadline:
            for server in self.servers:
                if server.proc is not None and server.proc.poll() is not None:
                    raise RuntimeError(f'nats-server {server.name} exited: {self.tail(server)}')
            try:
                asyncio.run(_account_info(self.urls))
                return
            except Exception as exc:
                last = f'{type(exc).__name__}: {exc}'
                time.sleep(0.5)
        raise TimeoutError(f'JetStream cluster not ready after {timeout:.0f} s: {last}')

    def tail(self, server: _Server, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return ' | '.join(server.log.read_text(errors='replace').splitlines()[-lines:])
        return ''

    def stop(self) -> None:
        for index in range(self.size):
            self.kill_server(index, signal.SIGTERM)

    def __enter__(self) -> NatsCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class LeafNode:
    """The edge side of edge→cloud: a nats-server on loopback whose leaf connection (to any of the
    cluster's leaf listeners) carries the edge's traffic. It has no JetStream of its own: publishes
    to the stream's subjects and their acks cross the leaf link as plain messages; the cloud's
    JetStream API is reachable from the edge as `$JS.<domain>.API` (the cluster's domain)."""

    root: Path
    hub_leaf_urls: list[str]
    hub_domain: str = 'cloud'
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        binary = nats_server_path()
        if binary is None:
            raise FileNotFoundError('nats-server not found: run scripts/install-system-deps')
        self.binary = binary
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        [self.client_port] = free_ports(1)
        self.config = self.root / 'leaf.conf'
        self.log = self.root / 'leaf.log'
        self.config.write_text(leaf_config(self.client_port, self.hub_leaf_urls))

    @property
    def url(self) -> str:
        return f'nats://127.0.0.1:{self.client_port}'

    def start(self, timeout: float = 30.0) -> LeafNode:
        with self.log.open('ab') as log:
            self.proc = subprocess.Popen(
                [self.binary, '-c', str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        last = ''
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'leaf nats-server exited: {self.log.read_text(errors="replace")[-800:]}')
            try:
                # answered by the cloud's JetStream through the leaf link ($JS.<domain>.API)
                asyncio.run(_account_info([self.url], domain=self.hub_domain))
                return self
            except Exception as exc:
                last = f'{type(exc).__name__}: {exc}'
                time.sleep(0.5)
        raise TimeoutError(f'leaf node not connected to the cluster after {timeout:.0f} s: {last}')

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=10.0)
            self.proc = None

    def __enter__(self) -> LeafNode:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def leaf_config(client_port: int, hub_leaf_urls: list[str]) -> str:
    """The edge server's config: clients on loopback, one leaf remote with every hub URL."""
    urls = ', '.join(f'"{u}"' for u in hub_leaf_urls)
    return (
        'server_name: edge\n'
        f'listen: 127.0.0.1:{client_port}\n'
        f'leafnodes {{ remotes: [ {{ urls: [{urls}] }} ] }}\n'
    )


async def _account_info(urls: list[str], domain: str | None = None) -> Any:
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        return await nc.jetstream(timeout=2.0, domain=domain).account_info()
    finally:
        await nc.close()


# -- reading a stream back (the tests' oracle) ----------------------------------------------------


async def _with_js(urls: list[str], work: Any, timeout: float = 5.0) -> Any:
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=3, max_reconnect_attempts=3)
    try:
        return await work(nc.jetstream(timeout=timeout))
    finally:
        await nc.close()


def add_stream(
    urls: list[str],
    name: str,
    subjects: list[str],
    replicas: int = 3,
    duplicate_window_sec: float = 300.0,
    timeout: float = 60.0,
) -> None:
    """Create a file-backed stream (retried until the cluster can place its replicas)."""
    from nats.js.api import StorageType, StreamConfig

    config = StreamConfig(
        name=name,
        subjects=subjects,
        num_replicas=replicas,
        storage=StorageType.FILE,
        duplicate_window=duplicate_window_sec,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(_with_js(urls, lambda js: js.add_stream(config)))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def stream_state(urls: list[str], name: str) -> Any:
    async def work(js: Any) -> Any:
        return await js.stream_info(name)

    return asyncio.run(_with_js(urls, work))


def stream_msg_ids(urls: list[str], name: str, timeout: float = 120.0) -> list[str]:
    """Every stored message's Nats-Msg-Id, in stream order (one direct read per sequence)."""

    async def work(js: Any) -> list[str]:
        info = await js.stream_info(name)
        ids: list[str] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(name, seq)
            ids.append((msg.headers or {}).get('Nats-Msg-Id', ''))
        return ids

    async def bounded(js: Any) -> list[str]:
        return await asyncio.wait_for(work(js), timeout)

    return asyncio.run(_with_js(urls, bounded))


def stream_leader(urls: list[str], name: str) -> str:
    info = stream_state(urls, name)
    return info.cluster.leader if info.cluster else ''


@contextlib.contextmanager
def nats_cluster(root: Path, size: int = 3) -> Iterator[NatsCluster]:
    with NatsCluster(root, size) as cluster:
        yield cluster
