"""The recent readings of one sensor, ordered by time, and the two ways to read them at an instant.

- `nearest(t, window)`: the reading with the smallest |reading time − t|, if that is within the
  window (upstream strategy `nearest_by_abs_delta`). On a tie the earlier reading wins, so the
  result never depends on arrival order.
- `bracket(t, window)`: the last reading at or before t and the first at or after t, both within
  the window — the two points a linear interpolation needs (our strategy `interpolate`).

Times are integer microseconds since the epoch (packet `ts` has microsecond resolution), so
ordering and deltas are exact; float seconds would lose the microseconds at today's epoch values.
A bounded buffer (upstream: 256 per sensor) keeps memory flat however long the site runs; readings
arriving out of order are inserted in place.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schnitzel_stream_ros.packet import StreamPacket, format_ts, parse_ts

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts_to_micros(ts: str) -> int:
    """ISO-8601 text -> integer microseconds since 1970-01-01T00:00:00Z (exact)."""
    delta = parse_ts(ts) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros_to_ts(t_us: int) -> str:
    """Integer microseconds since the epoch -> canonical packet time text (inverse of ts_to_micros)."""
    return format_ts(_EPOCH + timedelta(microseconds=t_us))


@dataclass(frozen=True)
class Reading:
    """One buffered sensor reading: its time (µs), sensor id, and the packet it came in."""

    t_us: int
    sensor_id: str
    packet: StreamPacket

    @property
    def payload(self) -> Mapping[str, Any]:
        payload = self.packet.payload
        return payload if isinstance(payload, Mapping) else {'value': payload}


@dataclass
class SensorHistory:
    """Time-ordered, bounded readings of one sensor."""

    maxlen: int = 256
    _times: list[int] = field(default_factory=list)
    _readings: list[Reading] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._readings)

    def add(self, reading: Reading) -> bool:
        """Insert in time order; the oldest reading falls out when full. False when the reading is
        older than everything in a full buffer (it would be dropped at once)."""
        if len(self._readings) >= self.maxlen and self._times and reading.t_us < self._times[0]:
            return False
        index = bisect.bisect_right(self._times, reading.t_us)
        self._times.insert(index, reading.t_us)
        self._readings.insert(index, reading)
        if len(self._readings) > self.maxlen:
            del self._times[0], self._readings[0]
        return True

    def nearest(self, t_us: int, window_us: int) -> Reading | None:
        index = bisect.bisect_left(self._times, t_us)
        best: Reading | None = None
        best_delta = window_us + 1
        for i in (index - 1, index):  # the neighbours of t; earlier first so ties keep it
            if 0 <= i < len(self._times):
                delta = abs(self._times[i] - t_us)
                if delta < best_delta:
                    best, best_delta = self._readings[i], delta
        return best if best_delta <= window_us else None

    def bracket(self, t_us: int, window_us: int) -> tuple[Reading, Reading] | None:
        """(before, after) around t, both within the window; (r, r) when a reading is exactly at t."""
        right = bisect.bisect_left(self._times, t_us)
        if right < len(self._times) and self._times[right] == t_us:
            return self._readings[right], self._readings[right]
        left = right - 1
        if left < 0 or right >= len(self._times):
            return None
        before, after = self._readings[left], self._readings[right]
        if t_us - before.t_us > window_us or after.t_us - t_us > window_us:
            return None
        return before, after
