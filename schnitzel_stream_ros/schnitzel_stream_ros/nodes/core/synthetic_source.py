"""SyntheticSource: packets at a steady rate, for load tests, demos and benchmarks.

The schedule is absolute (packet i is due at start + i / rate_hz), so a slow consumer or a late
wake-up does not lower the average rate, and the wait is on the stop event, so the source stops
as soon as the node is asked to.

Simulated time (`sim_start_ts`): no waiting at all, and packet i carries ts = start + i / rate_hz, so
a deterministic run of a loop that reads packet time (RateGate, PidController, a simulated plant)
computes the same numbers on any machine at any load.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket, format_ts, parse_ts
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
        Param('sim_start_ts', str, '', 'simulated time from this ISO-8601 instant: no waiting, '
              'ts = start + i / rate_hz (empty: real time)'),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        if params['sim_start_ts']:
            try:
                parse_ts(params['sim_start_ts'])
            except ValueError as exc:
                return [f"parameter 'sim_start_ts': {exc}"]
            if params['rate_hz'] <= 0:
                return ["parameter 'rate_hz': simulated time needs a rate above 0"]
        return []

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
        if self.params['sim_start_ts']:
            yield from self._simulated()
            return
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

    def _simulated(self) -> Iterator[StreamPacket]:
        start = parse_ts(self.params['sim_start_ts'])
        count = self.params['count']
        seq = 0
        while (count == 0 or seq < count) and not self.stopping:
            ts = format_ts(start + timedelta(microseconds=round(seq * 1e6 / self.params['rate_hz'])))
            meta = {MetaKey.IDEMPOTENCY_KEY: f'synthetic:{self._source_id}:{seq}', 'seq': seq}
            yield StreamPacket.new(self._kind, self._source_id, self._payload(seq), meta, ts=ts)
            seq += 1
