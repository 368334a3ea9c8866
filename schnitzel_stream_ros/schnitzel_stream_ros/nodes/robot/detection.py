"""What the robot policies share: their detections for the one event builder, and bounded state.

A robot event is a reading-based detection (policy/reading_detection.py) with `object_type: ROBOT`:
zero bbox, the robot id as camera_id, the reading as `sensor`, a geofence's `zone`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.nodes.policy.reading_detection import reading_detection
from schnitzel_stream_ros.packet import StreamPacket

OBJECT_TYPE = 'ROBOT'


def robot_detection(
    reading: StreamPacket,
    event_type: str,
    severity: str,
    *,
    zone: Mapping[str, Any] | None = None,
    sensor: Mapping[str, Any] | None = None,
) -> StreamPacket:
    """A kind=detection child of `reading` (same ts and source_id) that the builder turns into one event."""
    return reading_detection(reading, event_type, severity, OBJECT_TYPE, zone=zone, sensor=sensor)


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
