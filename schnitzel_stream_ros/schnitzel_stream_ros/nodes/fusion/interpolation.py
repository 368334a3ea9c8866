"""A sensor reading at an instant between two readings, by linear interpolation.

A 10 Hz distance sensor and a camera event 40 ms after a reading: the nearest reading is up to
50 ms stale, which at walking speed is several centimetres. Interpolating between the readings
before and after the event gives the value at the event's own time — exact when the quantity
changes linearly between readings. Numbers (also inside nested objects, e.g. an IMU's vectors) are
interpolated; everything else (ids, units, quality) is taken from the nearer reading.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.nodes.fusion.sensor_history import Reading
from schnitzel_stream_ros.nodes.sensors.reading import DESCRIPTIVE_FIELDS


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def blend(a: Any, b: Any, fraction: float, nearer: Any, fields: frozenset[str] | None = None) -> Any:
    """a + (b − a)·fraction for numbers (recursively in mappings); `nearer` for anything else."""
    if _is_number(a) and _is_number(b):
        return a + (b - a) * fraction
    if isinstance(a, Mapping) and isinstance(b, Mapping) and isinstance(nearer, Mapping):
        out = dict(nearer)
        for key in nearer:
            if key in a and key in b and (fields is None or key in fields):
                out[key] = blend(a[key], b[key], fraction, nearer[key])
        return out
    return nearer


def interpolate(
    before: Reading, after: Reading, t_us: int, ts: str, fields: frozenset[str] | None = None
) -> dict[str, Any]:
    """The reading at `t_us` (text `ts`). `fields` limits which top-level fields are interpolated."""
    span = after.t_us - before.t_us
    fraction = 0.0 if span == 0 else (t_us - before.t_us) / span
    nearer = before if fraction <= 0.5 else after
    numeric_fields = fields if fields is not None else frozenset(
        k for k in nearer.payload if k not in DESCRIPTIVE_FIELDS
    )
    numeric_fields = numeric_fields - DESCRIPTIVE_FIELDS
    result = blend(before.payload, after.payload, fraction, nearer.payload, numeric_fields)
    result['sensor_ts'] = ts
    result['interpolation'] = {
        'before_ts': before.payload.get('sensor_ts', before.packet.ts),
        'after_ts': after.payload.get('sensor_ts', after.packet.ts),
        'fraction': fraction,
    }
    return result
