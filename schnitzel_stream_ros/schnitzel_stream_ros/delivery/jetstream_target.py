"""Deliver events into a NATS JetStream stream: publish with acks, deduplicated by key.

A target for the durable forwarder (target.py): the forwarder claims rows, each worker calls
`post()`, and only a JetStream publish ack (the stream stored the message, on a quorum of its
replicas) settles a row. What makes redelivery harmless is JetStream's own duplicate window: every
message carries `Nats-Msg-Id` = the event's idempotency key (its header-safe wire form,
idempotency_key.py), so a retry of an event the stream already stored -- after a lost ack, a
leader change, a restart of this process -- is answered with `duplicate: true` and not stored
again, as long as it arrives within the stream's `duplicate_window` (default 2 min; set it longer
than the longest outage whose retries must not duplicate).

The subject is `<nats_subject_prefix>.<site>.<camera>.<type>` from the event (bus_route.py: hostile
text made into safe tokens). With `nats_stream` set, every publish also says which stream must
take it (`Nats-Expected-Stream`), so a subject that lands in another stream is refused, not stored
in the wrong place.

nats-py is asyncio; the forwarder's workers are threads. One `_Link` per target runs one event
loop on its own daemon thread with one connection (reconnecting forever to any server of the
list); the workers hand it publishes and wait for the answer, at most `max_in_flight` at a time.
The loop is bounded: nats-py's reconnect buffer is `pending_bytes`, and the thread ends with
`close()`.

Verdicts (what the forwarder does with them):
  ack, also `duplicate: true`          -> DELIVERED (settle)
  timeout, no responders, not connected,
  reconnecting, buffer full, 503/5xx,
  stream full (10077/10078)            -> RETRY (backoff, breaker)
  other JetStream API error (wrong
  expected stream, 4xx: configuration) -> PARKED (events stay queued, probes continue)
  message larger than max_payload      -> REJECTED (dead letter: it can never be stored)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schnitzel_stream_ros.delivery.bus_route import check_nats_prefix, nats_subject
from schnitzel_stream_ros.delivery.http_client import PostResult, Verdict
from schnitzel_stream_ros.delivery.idempotency_key import header_key
from schnitzel_stream_ros.delivery.redact import mask_url
from schnitzel_stream_ros.delivery.target import SharedLink

_LOG = logging.getLogger('schnitzel_stream.delivery.jetstream')

MSG_ID_HEADER = 'Nats-Msg-Id'
#: JetStream error codes for a stream at its limits (discard: new): capacity, not configuration.
_STREAM_FULL_CODES = frozenset({10077, 10078})
#: Least time between two attempts to open the first connection while no server answers.
CONNECT_RETRY_SEC = 1.0


@dataclass(frozen=True)
class JetStreamTarget:
    """Where and how to publish. Credentials: user:password in a server URL (a `${secret:...}`
    reference in the graph, graph/secrets.py), a token from the environment variable named by
    `token_env`, or a `.creds` file (`creds_file`)."""

    servers: tuple[str, ...]
    stream: str = ''
    subject_prefix: str = 'events'
    timeout_sec: float = 3.0
    max_in_flight: int = 256
    pending_bytes: int = 2 * 1024 * 1024
    token_env: str | None = None
    creds_file: str | None = None
    name: str = 'schnitzel-stream'
    environ: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        servers = tuple(self.servers)
        if not servers:
            raise ValueError('nats_servers: at least one nats://host:port is needed')
        for url in servers:
            if not isinstance(url, str) or not url.startswith(('nats://', 'tls://')):
                raise ValueError(
                    f'nats_servers: expected nats://host:port or tls://host:port, got {mask_url(str(url))!r}'
                )
        object.__setattr__(self, 'servers', servers)
        try:
            check_nats_prefix(self.subject_prefix)
        except ValueError as exc:
            raise ValueError(f'nats_subject_prefix: {exc}') from None
        if self.stream and not all(c.isalnum() or c in '_-' for c in self.stream):
            raise ValueError(f"nats_stream: letters, digits, '_' and '-' only, got {self.stream!r}")
        if self.timeout_sec <= 0:
            raise ValueError(f'nats_timeout_sec: must be > 0, got {self.timeout_sec}')
        if self.max_in_flight < 1:
            raise ValueError(f'nats_max_in_flight: must be >= 1, got {self.max_in_flight}')
        if self.token_env:
            env = os.environ if self.environ is None else self.environ
            if not env.get(self.token_env):
                raise ValueError(
                    f'auth_token_env: environment variable {self.token_env!r} is not set or empty'
                )
        object.__setattr__(self, '_shared', SharedLink(lambda: _Link(self)))

    @property
    def masked_url(self) -> str:
        where = ','.join(mask_url(url) for url in self.servers)
        return f'{where} stream {self.stream or "(any)"}'

    def link(self) -> _Link:
        """The connection this target's clients share (delivery/target.SharedLink)."""
        return self._shared.get()  # type: ignore[attr-defined]

    def new_client(self) -> JetStreamClient:
        return JetStreamClient(self)

    def close(self) -> None:
        self._shared.close()  # type: ignore[attr-defined]

    def connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(
            servers=list(self.servers),
            name=self.name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=min(self.timeout_sec, 2.0),
            pending_size=self.pending_bytes,
        )
        if self.token_env:
            env = os.environ if self.environ is None else self.environ
            options['token'] = env[self.token_env]
        if self.creds_file:
            options['user_credentials'] = self.creds_file
        return options


class _Link:
    """One asyncio loop on a daemon thread holding one NATS connection for all clients."""

    def __init__(self, target: JetStreamTarget) -> None:
        self.target = target
        self.closed = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name='jetstream-link', daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        self._nc: Any = None
        self._js: Any = None
        self._next_connect = 0.0
        self._connect_lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self.last_connect_error = ''
        #: acks from the stream, and those of them that said `duplicate` (a retry the duplicate
        #: window took: stored once). Only the loop thread writes them.
        self.acks_total = 0
        self.duplicate_acks_total = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()
        self._loop.close()

    async def _connection(self) -> Any:
        """The JetStream context, connecting first when there is none (at most every
        CONNECT_RETRY_SEC while no server answers); None while not connected."""
        import nats

        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
            self._slots = asyncio.Semaphore(self.target.max_in_flight)
        if self._nc is not None and not self._nc.is_closed:
            return self._js
        async with self._connect_lock:
            if self._nc is not None and not self._nc.is_closed:
                return self._js
            if time.monotonic() < self._next_connect:
                return None
            self._next_connect = time.monotonic() + CONNECT_RETRY_SEC
            try:
                nc = await nats.connect(**self.target.connect_options(), error_cb=self._on_error)
            except Exception as exc:  # no server answers, auth refused, TLS: say so, retry later
                self.last_connect_error = f'{type(exc).__name__}: {exc}'[:200]
                return None
            self._nc, self._js = nc, nc.jetstream(timeout=self.target.timeout_sec)
            _LOG.info(
                'connected to NATS %s', mask_url(str(nc.connected_url.geturl() if nc.connected_url else ''))
            )
            return self._js

    async def _on_error(self, exc: Exception) -> None:
        _LOG.debug('NATS connection: %s', exc)

    async def _publish(self, subject: str, body: bytes, msg_id: str | None) -> PostResult:
        import nats.errors
        import nats.js.errors

        started = time.monotonic()
        js = await self._connection()
        where = self.target.masked_url
        if js is None:
            return PostResult(
                Verdict.RETRY, None, f'not connected to NATS {where}: {self.last_connect_error}'[:300]
            )
        headers = {MSG_ID_HEADER: msg_id} if msg_id else None
        assert self._slots is not None
        async with self._slots:
            try:
                ack = await js.publish(
                    subject,
                    body,
                    timeout=self.target.timeout_sec,
                    stream=self.target.stream or None,
                    headers=headers,
                )
            except nats.js.errors.APIError as exc:
                return self._api_error(exc, where, started)
            except nats.errors.MaxPayloadError as exc:
                return PostResult(Verdict.REJECTED, None, f'larger than the server max_payload: {exc}'[:300])
            except (nats.errors.BadSubjectError, nats.errors.BadHeaderError) as exc:
                return PostResult(
                    Verdict.REJECTED, None, f'not publishable: {type(exc).__name__}: {exc}'[:300]
                )
            except nats.js.errors.NoStreamResponseError:
                return PostResult(
                    Verdict.RETRY,
                    None,
                    f'no stream answers for {subject[:120]} at {where}',
                    None,
                    time.monotonic() - started,
                )
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                kind = 'timeout' if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
                return PostResult(
                    Verdict.RETRY,
                    None,
                    f'{kind} publishing to {where}: {exc}'[:300],
                    None,
                    time.monotonic() - started,
                )
        if self.target.stream and ack.stream != self.target.stream:  # never without the header; defensive
            return PostResult(
                Verdict.PARKED, None, f'stored in stream {ack.stream!r}, not {self.target.stream!r}'
            )
        self.acks_total += 1
        self.duplicate_acks_total += 1 if ack.duplicate else 0
        return PostResult(Verdict.DELIVERED, 200, '', None, time.monotonic() - started)

    @staticmethod
    def _api_error(exc: Any, where: str, started: float) -> PostResult:
        code = getattr(exc, 'code', None) or 0
        err_code = getattr(exc, 'err_code', None) or 0
        text = f'JetStream error {code}/{err_code} from {where}: {getattr(exc, "description", exc)}'[:300]
        elapsed = time.monotonic() - started
        if code >= 500 or err_code in _STREAM_FULL_CODES:
            return PostResult(Verdict.RETRY, code or None, text, None, elapsed)
        return PostResult(Verdict.PARKED, code or None, text, None, elapsed)

    def publish(self, subject: str, body: bytes, msg_id: str | None) -> PostResult:
        """From a worker thread: publish and wait for the ack (bounded by the timeout)."""
        [future] = self.submit([(subject, body, msg_id)])
        return self.result(future)

    def submit(self, items: Sequence[tuple[str, bytes, str | None]]) -> list[concurrent.futures.Future]:
        """From a worker thread: start publishing every item at once (one hand-over to the loop);
        each future gets the item's PostResult. At most max_in_flight wait for acks at a time."""
        futures: list[concurrent.futures.Future] = [concurrent.futures.Future() for _ in items]
        if self.closed:
            for future in futures:
                future.set_result(
                    PostResult(Verdict.UNSENDABLE, None, 'not sent: the JetStream target is closed')
                )
            return futures

        def schedule() -> None:
            for (subject, body, msg_id), future in zip(items, futures, strict=True):
                task = self._loop.create_task(self._publish(subject, body, msg_id))
                task.add_done_callback(lambda done, f=future: _hand_over(done, f))

        self._loop.call_soon_threadsafe(schedule)
        return futures

    def result(self, future: concurrent.futures.Future) -> PostResult:
        try:
            return future.result(self.target.timeout_sec + 5.0)
        except concurrent.futures.TimeoutError:
            return PostResult(Verdict.RETRY, None, f'timeout publishing to {self.target.masked_url}')

    async def _shutdown(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.close(), 5.0)
            except Exception as exc:
                _LOG.debug('closing the NATS connection: %s', exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(8.0)
            except Exception as exc:
                _LOG.debug('closing the NATS link: %s', exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)


def _hand_over(task: asyncio.Task, future: concurrent.futures.Future) -> None:
    """A finished publish task's result into the worker's future (never an exception there)."""
    if task.cancelled():
        future.set_result(PostResult(Verdict.RETRY, None, 'publish cancelled (the target is closing)'))
    elif task.exception() is not None:
        exc = task.exception()
        future.set_result(
            PostResult(Verdict.UNSENDABLE, None, f'not sent: {type(exc).__name__}: {exc}'[:300])
        )
    else:
        future.set_result(task.result())


class JetStreamClient:
    """One forwarder worker's view of the shared link: subject from the event, key as Nats-Msg-Id.

    Pipelining: the forwarder hands a claimed batch to `begin()` before it posts the rows one by
    one (target.py); the publishes of the whole batch are then in flight together and each
    `post()` only waits for its own ack. A row the forwarder then does not post (a stop, the
    circuit opening) may have been stored all the same: its retry carries the same Nats-Msg-Id and
    the duplicate window takes it.
    """

    def __init__(self, target: JetStreamTarget) -> None:
        self.target = target
        self._ahead: dict[tuple[str | None, bytes], concurrent.futures.Future] = {}

    def _message(self, body: bytes, idempotency_key: str | None) -> tuple[str, bytes, str | None]:
        msg_id = header_key(idempotency_key) if idempotency_key else None
        return nats_subject(self.target.subject_prefix, body), body, msg_id

    def begin(self, batch: Sequence[tuple[bytes, str | None]]) -> None:
        """Start publishing a claimed batch (the forwarder's optional pipelining hook)."""
        self._ahead.clear()  # a previous batch's leftovers: rows the forwarder did not post
        items = [self._message(body, key) for body, key in batch]
        for (body, key), future in zip(batch, self.target.link().submit(items), strict=True):
            self._ahead.setdefault((key, body), future)

    def post(self, body: bytes, idempotency_key: str | None) -> PostResult:
        link = self.target.link()
        future = self._ahead.pop((idempotency_key, body), None)
        if future is None:
            return link.publish(*self._message(body, idempotency_key))
        return link.result(future)

    def close(self) -> None:
        """The link is the target's; it closes with the target."""
        self._ahead.clear()
