"""HttpJsonSink: POST each packet to a backend; upstream `nodes.http:HttpJsonSink`, same keys.

Synchronous like upstream: process() returns after the backend answered (or the retries ran
out). Upstream then dropped the event silently; here a failure is never silent: it is counted
(`failed_total`), logged with the URL masked, emitted on the `failed` port (route it into a
SqliteQueueSink to keep it), stored as a dead letter when `dead_letter_path` is set, and raised
when `raise_on_fail` is set. For delivery that survives restarts and outages, put the durable
queue in front (SqliteQueueSource -> HttpJsonSink(forward) -> SqliteQueueAckSink) or use
DurableForwarderSink.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.delivery.http_client import HttpJsonClient, PostResult, Verdict
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.shared import open_shared, release_shared
from schnitzel_stream_ros.delivery.strict_json import to_json_text
from schnitzel_stream_ros.nodes.delivery.params import (
    BACKOFF_PARAMS,
    HTTP_PARAMS,
    backoff_from_params,
    check_http_params,
    target_from_params,
)
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


def post_body(packet: StreamPacket, mode: str) -> Any:
    if mode == 'payload':
        return packet.payload
    return {
        'packet_id': packet.packet_id,
        'ts': packet.ts,
        'kind': packet.kind,
        'source_id': packet.source_id,
        'payload': packet.payload,
        'meta': dict(packet.meta),
    }


class HttpJsonSink(Plugin):
    """POST packets as JSON with Idempotency-Key, retries and backoff; failures are never silent."""

    ROLE = Role.SINK
    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.JSON_PORTABLE),)
    OUTPUTS = (
        Port('out', profile=PayloadProfile.JSON_PORTABLE, description='delivered packets (with forward)'),
        Port('failed', profile=PayloadProfile.JSON_PORTABLE, description='packets whose delivery failed'),
    )
    PARAMS = (
        *HTTP_PARAMS,
        *BACKOFF_PARAMS,
        Param('retry_max_attempts', int, 3, 'attempts per packet, the first included', min=1),
        Param('forward', bool, False, 'emit delivered packets on `out` (meta.http = {url, method, node_id})'),
        Param('raise_on_fail', bool, False, 'raise after the last failed attempt'),
        Param('dead_letter_path', str, '', 'SQLite queue file whose dead letters keep failed packets'),
    )

    _client: HttpJsonClient | None = None
    _dead: DurableQueue | None = None

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        return check_http_params(params)

    def setup(self) -> None:
        self._target = target_from_params(self.params)
        self._client = HttpJsonClient(self._target)
        self._backoff = backoff_from_params(self.params)
        if self.params['dead_letter_path']:
            self._dead = open_shared(self.params['dead_letter_path'], self.node_id)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        assert self._client is not None, 'setup() was not called'
        p = self.params
        body = to_json_text(
            post_body(packet, p['body']),
            field=p['body'],
            node_id=self.node_id,
            kind=packet.kind,
            source_id=packet.source_id,
        ).encode()
        result: PostResult | None = None
        for attempt in range(1, p['retry_max_attempts'] + 1):
            result = self._client.post(body, packet.idempotency_key)
            self.count('attempts_total')
            if result.verdict is Verdict.DELIVERED:
                self.count('posted_total')
                if not p['forward']:
                    return None
                return packet.with_meta(
                    http={'url': self._target.masked_url, 'method': p['method'], 'node_id': self.node_id}
                )
            if result.verdict is Verdict.REJECTED or attempt == p['retry_max_attempts']:
                break
            self.count('retry_total')
            delay = max(self._backoff.delay(attempt), result.retry_after_sec or 0.0)
            if self.ctx.stop_event.wait(delay):
                break
        assert result is not None
        self._failed(packet, result)
        return None

    def _failed(self, packet: StreamPacket, result: PostResult) -> None:
        self.count('failed_total')
        self.log.error(f'node {self.node_id}: delivery of {packet.idempotency_key} failed: {result.error}')
        if self._dead is not None:
            self._dead.bury(packet, f'{result.verdict.value}: {result.error}', result.status)
            self.count('dead_letter_total')
        self.emit(packet, 'failed')
        if self.params['raise_on_fail']:
            raise RuntimeError(f'delivery to {self._target.masked_url} failed: {result.error}')

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._dead is not None:
            release_shared(self._dead)
            self._dead = None
