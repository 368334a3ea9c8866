"""SyntheticSource: packets at a steady rate, for load tests, demos and benchmarks.

The schedule is absolute (packet i is due at start + i / rate_hz), so a slow consumer or a late
wake-up does not lower the average rate, and the wait is on the stop event, so the source stops
as soon as the node is asked to.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

PAYLOAD_FORMATS = ('json', 'bytes')


class SyntheticSource(Plugin):
    """Emit `count` packets (0 = until stopped) at `rate_hz` (0 = as fast as possible)."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out'),)
    PARAMS = (
        Param('rate_hz', float, 10.0, 'packets per second; 0 = unthrottled', min=0.0, dynamic=True),
        Param('count', int, 100, 'packets to emit; 0 = until stopped', min=0),
        Param('payload_bytes', int, 64, 'size of the filler in each payload', min=0, max=64 * 1024 * 1024),
        Param('payload', str, 'json', "'json': {seq, data: 'x'*n}; 'bytes': n raw bytes",
              choices=PAYLOAD_FORMATS),
        Param('kind', str, '', "packet kind (default: 'raw' for json, 'bytes' for bytes)"),
        Param('source_id', str, '', 'source_id (default: the node id)'),
    )

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        raw = params['payload'] == 'bytes'
        kind = params['kind'] or (Kind.BYTES if raw else Kind.RAW)
        profile = PayloadProfile.INPROC_ANY if raw else PayloadProfile.JSON_PORTABLE
        return (), (Port('out', frozenset({kind}), profile),)

    def setup(self) -> None:
        raw = self.params['payload'] == 'bytes'
        self._kind = self.params['kind'] or (Kind.BYTES if raw else Kind.RAW)
        self._source_id = self.params['source_id'] or self.node_id
        size = self.params['payload_bytes']
        self._filler: bytes | str = bytes(size) if raw else 'x' * size

    def _payload(self, seq: int) -> Any:
        if isinstance(self._filler, bytes):
            return self._filler
        return {'seq': seq, 'data': self._filler}

    def produce(self) -> Iterator[StreamPacket]:
        count = self.params['count']
        due = time.monotonic()
        seq = 0
        while count == 0 or seq < count:
            rate = self.params['rate_hz']  # dynamic: re-read so `ros2 param set` takes effect
            if rate > 0:
                delay = due - time.monotonic()
                if delay > 0:
                    self.ctx.stop_event.wait(delay)
                due = max(due, time.monotonic() - 1.0) + 1.0 / rate  # never catch up more than 1 s of backlog
            if self.stopping:
                return
            meta = {MetaKey.IDEMPOTENCY_KEY: f'synthetic:{self._source_id}:{seq}', 'seq': seq}
            yield StreamPacket.new(self._kind, self._source_id, self._payload(seq), meta)
            seq += 1
