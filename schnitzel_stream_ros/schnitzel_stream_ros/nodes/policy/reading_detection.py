"""The detection a reading-based policy (robot, audio) hands to ProtocolV02EventBuilderNode.

Events that do not come from a camera box still go through the one event builder, so they get the
same validation, deterministic event_id and idempotency key, and reach the same sinks. Such an
event has no box on an image: `bbox` is all zeros (as SENSOR_EVENT's), confidence 1, the object
type says what it is about (ROBOT, AUDIO), the camera_id the builder writes is the reading's source
(robot, microphone), the reading travels as `sensor`, and `zone` is the policy's (a geofence zone,
an audio time window) or none.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.packet import Kind, StreamPacket

NO_BOX = {'x1': 0, 'y1': 0, 'x2': 0, 'y2': 0}
NO_ZONE = {'zone_id': '', 'inside': False}


def reading_detection(
    reading: StreamPacket,
    event_type: str,
    severity: str,
    object_type: str,
    *,
    zone: Mapping[str, Any] | None = None,
    sensor: Mapping[str, Any] | None = None,
    ts: str | None = None,
) -> StreamPacket:
    """A kind=detection child of `reading` (its source_id; ts = `ts` or the reading's) for the builder."""
    payload = reading.payload if isinstance(reading.payload, Mapping) else {}
    detection = {
        'bbox': dict(NO_BOX),
        'confidence': 1.0,
        'object_type': object_type,
        'event_type': event_type,
        'severity': severity,
        'zone': dict(zone) if zone is not None else dict(NO_ZONE),
        'sensor': dict(sensor) if sensor is not None else dict(payload),
    }
    return reading.child(kind=Kind.DETECTION, payload=detection, ts=ts)
