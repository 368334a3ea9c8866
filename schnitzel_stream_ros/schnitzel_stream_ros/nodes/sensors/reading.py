"""The sensor reading packet every sensor source emits (kind=sensor), in one shape.

Fusion, SENSOR_EVENT rules and backends read `payload.sensor` without knowing where a reading came
from (serial line, ROS topic, simulation), so all sources build it here. The shape extends
upstream's sensor payload (`sensor_id, sensor_type, sensor_ts, <value fields>, quality`) with
`unit` when the source knows it. `sensor_ts` is the reading's time and equals the packet `ts`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.codec.timestamps import header_ts
from schnitzel_stream_ros.packet import Kind, StreamPacket, now_ts
from schnitzel_stream_ros.plugin import Plugin

#: Payload keys that describe the reading rather than measure something.
DESCRIPTIVE_FIELDS = frozenset({'sensor_id', 'sensor_type', 'sensor_ts', 'unit', 'quality'})

QUALITY_OK = 'ok'


def sensor_payload(
    sensor_id: str,
    sensor_type: str,
    ts: str,
    fields: Mapping[str, Any],
    *,
    unit: str = '',
    quality: str = QUALITY_OK,
) -> dict[str, Any]:
    payload: dict[str, Any] = {'sensor_id': sensor_id, 'sensor_type': sensor_type, 'sensor_ts': ts}
    for key, value in fields.items():
        if key not in DESCRIPTIVE_FIELDS:
            payload[key] = value
    if unit:
        payload['unit'] = unit
    payload['quality'] = fields.get('quality', quality)
    return payload


def sensor_packet(
    sensor_id: str,
    sensor_type: str,
    ts: str,
    fields: Mapping[str, Any],
    *,
    unit: str = '',
    quality: str = QUALITY_OK,
    meta: Mapping[str, Any] | None = None,
) -> StreamPacket:
    """A new kind=sensor packet (source_id = sensor_id, ts = reading time)."""
    payload = sensor_payload(sensor_id, sensor_type, ts, fields, unit=unit, quality=quality)
    return StreamPacket.new(Kind.SENSOR, sensor_id, payload, meta, ts=ts)


def message_ts(plugin: Plugin, msg: Any) -> str:
    """The time of a message a ROS topic source received: its header stamp when the plugin's
    `use_header_stamp` is on and the stamp is set, else now. An impossible stamp is counted
    (`bad_stamp_total`) and replaced by now, never raised out of the source."""
    if plugin.params.get('use_header_stamp', True):
        try:
            return header_ts(msg) or now_ts()
        except ValueError:
            plugin.count('bad_stamp_total')
    return now_ts()
