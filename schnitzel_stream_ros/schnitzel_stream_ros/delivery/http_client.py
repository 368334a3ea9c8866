"""POST one JSON event to the backend and say what the answer means for delivery.

Upstream semantics (HttpJsonSink): POST, `Content-Type: application/json`, `Idempotency-Key`
header, timeout 3 s, retry on 408/409/425/429/500/502/503/504 and on connection errors, other
answers are final. Here the verdict is returned instead of acted on: the forwarder decides about
backoff, breaker and dead letters, so one client stays a small, testable thing.

One keep-alive connection per client (per forwarder worker), on the small stdlib-socket HTTP/1.1
client in `http_wire` (see there why not http.client); no dependency on the edge box. A claimed
batch is pipelined on it (`begin`): many requests per write, many answers per read. Secrets: the
auth token comes from an environment variable named in the config (never from the graph file), URL
credentials become a Basic auth header, and every text this module produces masks the URL.
"""

from __future__ import annotations

import base64
import collections
import logging
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from schnitzel_stream_ros.delivery.http_wire import (
    ClosedBeforeResponse,
    Response,
    UnsendableRequest,
    WireConnection,
)
from schnitzel_stream_ros.delivery.idempotency_key import header_key
from schnitzel_stream_ros.delivery.redact import mask_url

_LOG = logging.getLogger('schnitzel_stream.delivery.http')

#: Upstream's retry statuses.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: Answers that say the *configuration* is wrong (a rotated token, a moved route), not the event:
#: delivery parks (circuit open, events stay queued, probes continue) until the backend accepts again.
PARK_STATUSES = frozenset({401, 403, 404, 405, 407, 410, 421})
#: Longest Retry-After we honour (a misconfigured backend must not park events for hours).
RETRY_AFTER_CAP_SEC = 60.0
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Verdict(StrEnum):
    DELIVERED = 'delivered'  # 2xx: ack
    RETRY = 'retry'  # retry status or connection error: back off, try again
    REJECTED = 'rejected'  # any other answer: retrying cannot help -> dead letter
    PARKED = 'parked'  # auth/routing answer: stop delivering, keep every event queued
    UNSENDABLE = 'unsendable'  # the request could not be written (nothing sent): a local fault


@dataclass(frozen=True, slots=True)
class PostResult:
    verdict: Verdict
    status: int | None  # None when no HTTP answer arrived
    error: str = ''  # one line, URL masked; '' when delivered
    retry_after_sec: float | None = None
    elapsed_sec: float = 0.0


@dataclass(frozen=True)
class HttpTarget:
    """Where and how to POST. Field names follow upstream HttpJsonSink's config keys."""

    url: str
    method: str = 'POST'
    timeout_sec: float = 3.0
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotency_header: str = 'Idempotency-Key'
    retry_on_status: frozenset[int] = RETRY_STATUSES
    park_on_status: frozenset[int] = PARK_STATUSES
    auth_token_env: str | None = None
    auth_header: str = 'Authorization'
    auth_scheme: str = 'Bearer'
    verify_tls: bool = True
    ca_file: str | None = None
    #: Requests in flight on one connection while the forwarder posts a claimed batch (begin()):
    #: one write carries many requests and one read many answers, instead of a round trip each.
    #: Only with an idempotency header (a request sent ahead that is not settled -- a stop, the
    #: circuit opening -- is sent again and must be deduplicated); 1 turns it off.
    pipeline_depth: int = 32

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ValueError(f'url: expected http(s)://host[:port]/path, got {mask_url(self.url)!r}')
        if self.timeout_sec <= 0:
            raise ValueError(f'timeout_sec: must be > 0, got {self.timeout_sec}')
        if not 1 <= self.pipeline_depth <= 256:
            raise ValueError(f'pipeline_depth: must be 1..256, got {self.pipeline_depth}')
        object.__setattr__(self, 'retry_on_status', frozenset(int(s) for s in self.retry_on_status))
        object.__setattr__(self, 'park_on_status', frozenset(int(s) for s in self.park_on_status))
        for name, value in self.headers.items():
            if not _TOKEN.fullmatch(str(name)) or any(c in str(value) for c in '\r\n\0'):
                raise ValueError(f'headers: invalid header {name!r} (names are tokens, values one line)')
            if str(name).lower() in ('host', 'content-length', 'transfer-encoding', 'connection'):
                raise ValueError(f'headers: {name!r} is set by the client itself')

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def new_client(self) -> HttpJsonClient:
        """One keep-alive client for one forwarder worker (the DeliveryTarget protocol, target.py)."""
        return HttpJsonClient(self)

    def close(self) -> None:
        """Nothing shared between the clients of an HTTP target (DeliveryTarget protocol)."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(RETRY_AFTER_CAP_SEC, max(0.0, float(value.strip())))
    except ValueError:
        return None  # HTTP-date form: rare for APIs; the backoff applies instead


class HttpJsonClient:
    """One keep-alive connection to the target. Not thread-safe: one client per worker thread."""

    def __init__(self, target: HttpTarget, environ: Mapping[str, str] | None = None) -> None:
        self.target = target
        parts = urlsplit(target.url)
        self._https = parts.scheme == 'https'
        self._host = parts.hostname or ''
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
        self._base_headers: dict[str, str] = {'Content-Type': 'application/json', 'Accept': '*/*'}
        self._base_headers.update({str(k): str(v) for k, v in target.headers.items()})
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password or '')
            basic = base64.b64encode(f'{user}:{password}'.encode()).decode('ascii')
            self._base_headers['Authorization'] = f'Basic {basic}'
        if target.auth_token_env:
            env = os.environ if environ is None else environ
            token = env.get(target.auth_token_env, '')
            if not token:
                raise ValueError(
                    f'auth_token_env: environment variable {target.auth_token_env!r} is not set or empty'
                )
            self._base_headers[target.auth_header] = f'{target.auth_scheme} {token}'.strip()
        self._ssl_context: ssl.SSLContext | None = None
        if self._https:
            context = ssl.create_default_context(cafile=target.ca_file)
            if not target.verify_tls:
                _LOG.warning('TLS verification is OFF for %s (verify_tls: false)', target.masked_url)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_context = context
        self._wire = WireConnection(self._host, self._port, target.timeout_sec, self._ssl_context)
        self._depth = target.pipeline_depth if target.idempotency_header else 1
        # (row, request bytes) of a batch: sent and not answered yet / not sent yet; a row is (key, body)
        self._ahead: collections.deque[tuple[tuple[str | None, bytes], bytes]] = collections.deque()
        self._queued: collections.deque[tuple[tuple[str | None, bytes], bytes]] = collections.deque()
        self._window = 1  # requests the pipeline may have on the wire now (slow start, see begin())
        self._write_failed = False  # a send on the open connection failed: only its answers are read
        self.pipelined_total = 0  # answers read for requests sent ahead

    @property
    def connects_total(self) -> int:
        return self._wire.connects_total

    def close(self) -> None:
        self._drop_ahead()
        self._wire.close()

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        if idempotency_key and self.target.idempotency_header:
            return {**self._base_headers, self.target.idempotency_header: header_key(idempotency_key)}
        return self._base_headers

    # -- pipelining (the forwarder's optional begin() hook, target.py) ---------------------------
    def begin(self, batch: Sequence[tuple[bytes, str | None]]) -> None:
        """Take a claimed batch to send ahead: each post() then reads its own answer while up to
        `pipeline_depth` requests are on the wire. The window starts at one request per batch and
        doubles with every delivered answer (slow start): a backend that refuses (a rotated token,
        an outage) sees one request, not a burst, before the forwarder stops the round. A row
        whose request cannot be encoded ends the pipelined part (its post() reports it; the rows
        after it go one at a time)."""
        self._drop_ahead()
        self._window = 1
        if self._depth < 2 or len(batch) < 2:
            return
        target = self.target
        for body, key in batch:
            try:
                data = self._wire.encode(target.method, self._path, self._headers(key), body)
            except UnsendableRequest:
                break
            self._queued.append(((key, body), data))

    def _send_ahead(self) -> OSError | None:
        """Send the next requests of the window; the error when they could not be sent (the
        connection is closed then and they stay queued)."""
        room = min(self._window - len(self._ahead), len(self._queued))
        if room <= 0:
            return None
        if self._write_failed:
            if self._ahead and self._wire.is_open:
                return None  # its answers first; what waits goes out on the next connection
            self._wire.close()
            self._write_failed = False
        items = [self._queued.popleft() for _ in range(room)]
        try:
            self._wire.send_ahead([data for _, data in items])
        except OSError as exc:
            self._queued.extendleft(reversed(items))
            if self._wire.is_open:  # answers sent before the server closed can still be read
                self._write_failed = True
            else:
                self._resend_ahead()
            return exc
        self._ahead.extend(items)
        return None

    def _resend_ahead(self) -> None:
        """The connection is gone: what it did not answer goes first again, on the next one."""
        self._queued.extendleft(reversed(self._ahead))
        self._ahead.clear()

    def _drop_ahead(self) -> None:
        """Forget what was sent ahead; answers still on the way go with the connection."""
        if self._ahead or self._wire.ahead:
            self._wire.close()
        self._ahead.clear()
        self._queued.clear()
        self._write_failed = False

    def _post_ahead(
        self, ident: tuple[str | None, bytes], started: float, retry: bool = True
    ) -> PostResult | None:
        """The answer for `ident` through the pipeline; None when `ident` is not the request due
        (a row of an earlier batch, a skipped row): the pipeline is dropped and the caller sends
        it alone. A transport failure is this row's failed attempt, as one at a time; only a
        kept-alive connection the server had closed (stale, restarted) is tried once more on a
        fresh one, with what it did not answer (a request that did arrive is deduplicated by its key)."""
        queue = self._ahead or self._queued
        if not queue or queue[0][0] != ident:
            self._drop_ahead()
            return None
        reused = self._wire.reused and self._wire.is_open  # before anything is sent on it
        if not self._ahead:
            error = self._send_ahead()
            if error is not None:
                if retry and reused:
                    return self._post_ahead(ident, started, retry=False)
                self._drop_ahead()
                return self._failed(error, started)
        entry = self._ahead.popleft()
        reused = reused or self._wire.reused
        try:
            response = self._wire.read_ahead(self.target.method)
        except (ClosedBeforeResponse, ConnectionResetError, BrokenPipeError) as exc:
            self._ahead.appendleft(entry)
            self._resend_ahead()
            self._window = 1
            if retry and reused:
                return self._post_ahead(ident, started, retry=False)
            self._drop_ahead()
            return self._failed(exc, started)
        except OSError as exc:  # timeout, garbage answer: the connection is gone with the others
            self._drop_ahead()
            return self._failed(exc, started)
        self.pipelined_total += 1
        result = self._judge(response, started)
        if not self._wire.is_open:  # `Connection: close`: the rest go again, on a fresh connection
            self._resend_ahead()
        if result.verdict is Verdict.DELIVERED:
            self._window = min(self._window * 2, self._depth)
            if self._wire.is_open:
                self._send_ahead()  # a failure here is met by the next row's post()
        else:  # nothing more goes ahead: the next row is sent when it is posted, and alone
            self._window = 1
        return result

    def post(self, body: bytes, idempotency_key: str | None) -> PostResult:
        """Send one event. Never raises for network or HTTP trouble: the verdict says what to do."""
        started = time.monotonic()
        if self._ahead or self._queued:
            result = self._post_ahead((idempotency_key, body), started)
            if result is not None:
                return result
        headers = self._headers(idempotency_key)
        for second_try in (False, True):
            reused = self._wire.reused
            try:
                response = self._wire.request(self.target.method, self._path, headers, body)
            except UnsendableRequest as exc:
                return PostResult(
                    Verdict.UNSENDABLE, None, f'not sent: {exc}'[:300], None, time.monotonic() - started
                )
            except (ClosedBeforeResponse, ConnectionResetError, BrokenPipeError) as exc:
                # A kept-alive connection the server had already closed: repeat once on a fresh
                # one at once (if the request did arrive, the Idempotency-Key dedups it).
                if reused and not second_try:
                    continue
                return self._failed(exc, started)
            except OSError as exc:  # refused, timeout, TLS failure, garbage answer
                return self._failed(exc, started)
            return self._judge(response, started)
        raise AssertionError('unreachable')

    def _judge(self, response: Response, started: float) -> PostResult:
        status = response.status
        elapsed = time.monotonic() - started
        if 200 <= status < 300:
            return PostResult(Verdict.DELIVERED, status, '', None, elapsed)
        snippet = response.body[:200].decode('utf-8', 'replace').replace('\n', ' ').strip()
        error = f'HTTP {status} from {self.target.masked_url}' + (f': {snippet}' if snippet else '')
        if status in self.target.retry_on_status:
            retry_after = _retry_after(response.header('Retry-After'))
            return PostResult(Verdict.RETRY, status, error, retry_after, elapsed)
        if status in self.target.park_on_status:
            return PostResult(Verdict.PARKED, status, error, None, elapsed)
        return PostResult(Verdict.REJECTED, status, error, None, elapsed)

    def _failed(self, exc: BaseException, started: float) -> PostResult:
        kind = 'timeout' if isinstance(exc, TimeoutError) else type(exc).__name__
        return PostResult(
            Verdict.RETRY,
            None,
            f'{kind} talking to {self.target.masked_url}: {exc}'[:300],
            None,
            time.monotonic() - started,
        )
