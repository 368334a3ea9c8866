"""Drawing detections and zones on a frame: the one overlay every image sink uses.

AnnotatedImageSink (boxes, track ids and zones of a site) and OpenCvBboxDisplaySink (upstream's
YOLO overlay window) show the same thing, so they draw it with the same function: a box per
detection with its label (class, track id, confidence), zone outlines in the alarm colour when an
object is inside, and optionally a caption line in the top-left corner. The frame given is never
changed (frames are shared between nodes): drawing works on a copy.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from schnitzel_stream_ros.nodes.policy.zones import Zone
from schnitzel_stream_ros.nodes.vision.frames import frame_of
from schnitzel_stream_ros.packet import StreamPacket

BgrColour = tuple[int, int, int]
BOX_COLOUR: BgrColour = (0, 200, 0)
ZONE_COLOUR: BgrColour = (0, 200, 255)
ALARM_COLOUR: BgrColour = (0, 0, 255)
CAPTION_COLOUR: BgrColour = (255, 255, 255)
DEFAULT_FONT_SCALE = 0.45


def drawable_frame(packet: StreamPacket, node_id: str) -> np.ndarray | None:
    """The packet's 8-bit frame to draw on, or None (not a frame, or not 8-bit): image sinks count
    such packets as invalid_frames_total instead of failing on them."""
    try:
        frame = frame_of(packet, node_id)
    except TypeError:
        return None
    return frame if frame is not None and frame.dtype == np.uint8 else None


def detections_of(packet: StreamPacket) -> list[Mapping[str, Any]]:
    """Boxes a detection or event packet carries (dicts with a bbox mapping)."""
    payload = packet.payload
    items = payload if isinstance(payload, list) else [payload]
    return boxes_in(items)


def boxes_in(items: Any) -> list[Mapping[str, Any]]:
    """The entries of a list that are detections with a bbox mapping (anything else is skipped)."""
    if not isinstance(items, list):
        return []
    return [d for d in items if isinstance(d, Mapping) and isinstance(d.get('bbox'), Mapping)]


def box_label(det: Mapping[str, Any]) -> str:
    parts = [str(det.get('object_type') or det.get('class_name') or det.get('class_id') or '?')]
    if det.get('track_id') is not None:
        parts.append(f'#{det["track_id"]}')
    confidence = det.get('confidence')
    if isinstance(confidence, int | float) and not isinstance(confidence, bool):
        parts.append(f'{confidence:.2f}')
    return ' '.join(parts)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], colour: BgrColour, scale: float) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw(
    frame: np.ndarray, detections: list[Mapping[str, Any]], zones: tuple[Zone, ...] = (), camera_id: str = '',
    *, thickness: int = 2, labels: bool = True, font_scale: float = DEFAULT_FONT_SCALE,
    box_colour: BgrColour = BOX_COLOUR, caption: str | None = None,
) -> np.ndarray:
    """A copy of `frame` (H x W x 3 uint8, or H x W mono) with zones, boxes and a caption drawn on."""
    image = np.array(frame, copy=True)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    occupied = {
        d['zone'].get('zone_id') for d in detections
        if isinstance(d.get('zone'), Mapping) and d['zone'].get('inside')
    }
    line_height = max(10, round(30 * font_scale))
    for zone in zones:
        if not zone.applies_to(camera_id):
            continue
        points = np.round(np.array(zone.polygon, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        colour = ALARM_COLOUR if zone.zone_id in occupied else ZONE_COLOUR
        cv2.polylines(image, [points], True, colour, thickness)
        if labels:
            x, y = points[0, 0]
            _text(image, zone.zone_id, (int(x) + 3, int(y) + line_height), colour, font_scale)
    for det in detections:
        bbox = det['bbox']
        try:
            x1, y1, x2, y2 = (round(float(bbox[k])) for k in ('x1', 'y1', 'x2', 'y2'))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        inside = isinstance(det.get('zone'), Mapping) and det['zone'].get('inside')
        colour = ALARM_COLOUR if inside else box_colour
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        if labels:
            _text(image, box_label(det), (x1, max(line_height - 2, y1 - 4)), colour, font_scale)
    if caption:
        _text(image, caption, (10, line_height + 4), CAPTION_COLOUR, font_scale)
    return image
