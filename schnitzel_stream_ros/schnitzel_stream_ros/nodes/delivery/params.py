"""Parameter sets shared by the delivery plugins, and the objects built from them.

Queue nodes, the HTTP sink and the durable forwarder take the same keys for the same things
(upstream names first: `path`, `meta_key`, `url`, `timeout_sec`, `body`, `headers`, ...), so they
are declared once here; so is the one place that turns them into a DurableQueue or HttpTarget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.http_client import PARK_STATUSES, RETRY_STATUSES, HttpTarget
from schnitzel_stream_ros.delivery.queue import (
    DEFAULT_MIN_FREE_BYTES,
    DEFAULT_WAL_LIMIT_BYTES,
    DurableQueue,
)
from schnitzel_stream_ros.delivery.queue.budget_drops import AtBudget
from schnitzel_stream_ros.delivery.redact import mask_url
from schnitzel_stream_ros.delivery.shared import open_shared
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Param

QUEUE_PARAMS = (
    Param('path', str, description='SQLite queue file (its directory is created)'),
    Param('meta_key', str, 'durable', 'meta key for {queue, path, seq, node_id} on forwarded packets'),
    Param('max_rows', int, 0, 'row limit of the queue (0 = none)', min=0),
    Param('max_bytes', int, 0, 'payload+meta byte limit of the queue (0 = none)', min=0),
    Param(
        'full_policy',
        str,
        AtBudget.BLOCK.value,
        'at a limit, the free-space reserve or a full disk: block (hold the packets until there is '
        'room, back-pressure on the inbox), refuse at once, or at the budget (limits, reserve) '
        'drop_oldest / drop_newest (counted, noted in the queue file; a full disk still holds)',
        choices=tuple(p.value for p in AtBudget),
    ),
    Param(
        'block_timeout_sec',
        float,
        10.0,
        'longest wait for room with full_policy block (queue sinks: per attempt; they hold until room)',
        min=0.0,
    ),
    Param(
        'min_free_bytes',
        int,
        DEFAULT_MIN_FREE_BYTES,
        'free-space reserve: the queue takes no new rows that would leave less than this free on its '
        'filesystem (its own unused pages count as free; acks are never refused; 0 = no reserve)',
        min=0,
    ),
    Param(
        'wal_limit_bytes',
        int,
        DEFAULT_WAL_LIMIT_BYTES,
        'bound of the write-ahead log (journal_size_limit and autocheckpoint)',
        min=64 * 1024,
    ),
)

HTTP_PARAMS = (
    Param(
        'url',
        str,
        description='backend endpoint, http(s)://host[:port]/path (credentials are masked in logs)',
    ),
    Param('method', str, 'POST', 'HTTP method', choices=('POST', 'PUT')),
    Param('timeout_sec', float, 3.0, 'connect and read timeout per request', min=0.001),
    Param(
        'body',
        str,
        'payload',
        "POST body: the packet's payload, or the whole packet envelope",
        choices=('payload', 'packet'),
    ),
    Param('headers', dict, {}, 'extra HTTP headers (no credentials here: use auth_token_env)'),
    Param('idempotency_header', str, 'Idempotency-Key', 'header carrying the idempotency key ("" = none)'),
    Param(
        'retry_on_status',
        list,
        sorted(RETRY_STATUSES),
        'HTTP statuses that are retried; other non-2xx are final',
    ),
    Param(
        'park_on_status',
        list,
        sorted(PARK_STATUSES),
        'HTTP statuses that park delivery (auth/route wrong: circuit open, events stay queued)',
    ),
    Param('auth_token_env', str, '', 'name of the environment variable holding the auth token ("" = none)'),
    Param('auth_header', str, 'Authorization', 'header that carries the token'),
    Param('auth_scheme', str, 'Bearer', 'prefix of the token in that header ("" = the bare token)'),
    Param('verify_tls', bool, True, 'verify the server certificate (https)'),
    Param('ca_file', str, '', 'CA bundle for a private backend certificate ("" = system CAs)'),
)

BACKOFF_PARAMS = (
    Param('retry_backoff_sec', float, 1.0, 'first retry delay bound (doubles per attempt)', min=0.0),
    Param('retry_backoff_max_sec', float, 10.0, 'cap of the retry delay', min=0.0),
)

_CREDENTIAL_HEADERS = ('authorization', 'proxy-authorization')


def check_http_params(params: Mapping[str, Any]) -> list[str]:
    """Problems the types alone do not catch, one line each, naming the parameter."""
    problems: list[str] = []
    url = params.get('url') or ''
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ('http', 'https') or not parts.hostname:
        problems.append(f"parameter 'url': expected http(s)://host[:port]/path, got {mask_url(str(url))!r}")
    for name in ('retry_on_status', 'park_on_status'):
        for index, status in enumerate(params.get(name) or []):
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
                problems.append(
                    f"parameter '{name}'[{index}]: expected an HTTP status 100..599, got {status!r}"
                )
    for name, value in (params.get('headers') or {}).items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(f"parameter 'headers'.{name}: expected a string value")
        if str(name).lower() in _CREDENTIAL_HEADERS:
            problems.append(
                f"parameter 'headers'.{name}: credentials do not belong in graph files; "
                'set auth_token_env (and auth_header/auth_scheme) instead'
            )
    if params.get('retry_backoff_max_sec', 0) < params.get('retry_backoff_sec', 0):
        problems.append("parameter 'retry_backoff_max_sec': must be >= retry_backoff_sec")
    return problems


def target_from_params(params: Mapping[str, Any]) -> HttpTarget:
    return HttpTarget(
        url=params['url'],
        method=params['method'],
        timeout_sec=params['timeout_sec'],
        headers={str(k): str(v) for k, v in (params.get('headers') or {}).items()},
        idempotency_header=params['idempotency_header'],
        retry_on_status=frozenset(params['retry_on_status']),
        park_on_status=frozenset(params.get('park_on_status', PARK_STATUSES)),
        auth_token_env=params['auth_token_env'] or None,
        auth_header=params['auth_header'],
        auth_scheme=params['auth_scheme'],
        verify_tls=params['verify_tls'],
        ca_file=params['ca_file'] or None,
        pipeline_depth=params.get('pipeline_depth', HttpTarget.pipeline_depth),  # the forwarder's
    )


def backoff_from_params(params: Mapping[str, Any]) -> Backoff:
    return Backoff(base_sec=params['retry_backoff_sec'], cap_sec=params['retry_backoff_max_sec'])


def open_queue(node_id: str, params: Mapping[str, Any], **extra: Any) -> DurableQueue:
    """The process-wide queue for params['path'] (see delivery.shared)."""
    return open_shared(
        params['path'],
        node_id,
        max_rows=params['max_rows'] or None,
        max_bytes=params['max_bytes'] or None,
        full_policy=storage_policy(params).queue_policy(),
        block_timeout_sec=params['block_timeout_sec'],
        min_free_bytes=params.get('min_free_bytes', DEFAULT_MIN_FREE_BYTES),
        wal_limit_bytes=params.get('wal_limit_bytes', DEFAULT_WAL_LIMIT_BYTES),
        **extra,
    )


def storage_policy(params: Mapping[str, Any]) -> AtBudget:
    """The graph's choice at the budget (full_policy), as the sinks' StorageHold runs it."""
    return AtBudget(params.get('full_policy', AtBudget.BLOCK.value))


def durable_meta(
    packet: StreamPacket, queue: DurableQueue, seq: int, node_id: str, meta_key: str
) -> StreamPacket:
    """The packet with meta[meta_key] = {queue, path, seq, node_id} (upstream shape)."""
    return packet.with_meta(
        **{meta_key: {'queue': 'sqlite', 'path': str(queue.path), 'seq': seq, 'node_id': node_id}}
    )


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics snapshot (gauges take numbers; states also come as *_code)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
