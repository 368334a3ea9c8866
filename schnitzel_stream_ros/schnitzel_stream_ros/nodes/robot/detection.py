"""The detection a robot policy hands to ProtocolV02EventBuilderNode, in one shape.

Robot events go through the same event builder as camera events, so they get the same validation,
deterministic event_id and idempotency key, and reach the same sinks (durable queue, backend,
`/site/events`). A robot has no box on an image: `bbox` is all zeros (as SENSOR_EVENT's), the
object is `ROBOT`, the camera_id the builder writes is the reading's source (the robot id), the
reading itself travels as `sensor`, and a geofence sets `zone {zone_id, inside}`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.packet import Kind, StreamPacket

OBJECT_TYPE = 'ROBOT'
NO_BOX = {'x1': 0, 'y1': 0, 'x2': 0, 'y2': 0}
NO_ZONE = {'zone_id': '', 'inside': False}


def robot_detection(
    reading: StreamPacket,
    event_type: str,
    severity: str,
    *,
    zone: Mapping[str, Any] | None = None,
    sensor: Mapping[str, Any] | None = None,
) -> StreamPacket:
    """A kind=detection child of `reading` (same ts and source_id) that the builder turns into one event."""
    payload = reading.payload if isinstance(reading.payload, Mapping) else {}
    detection = {
        'bbox': dict(NO_BOX),
        'confidence': 1.0,
        'object_type': OBJECT_TYPE,
        'event_type': event_type,
        'severity': severity,
        'zone': dict(zone) if zone is not None else dict(NO_ZONE),
        'sensor': dict(sensor) if sensor is not None else dict(payload),
    }
    return reading.child(kind=Kind.DETECTION, payload=detection)


def robot_id(reading: StreamPacket) -> str:
    payload = reading.payload if isinstance(reading.payload, Mapping) else {}
    return str(payload.get('sensor_id') or reading.source_id)


class RobotStates(OrderedDict):
    """Per-robot state, bounded: the robot not heard from longest is forgotten first (the caller counts)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def touch(self, key: str, default: Any) -> tuple[Any, int]:
        """The state of `key` (created from `default` when new) and how many states were evicted."""
        evicted = 0
        if key in self:
            self.move_to_end(key)
            return self[key], 0
        while len(self) >= self.limit:
            self.popitem(last=False)
            evicted += 1
        self[key] = default
        return default, evicted
