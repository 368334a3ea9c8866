"""Zones: polygons on the camera image, and the rule that decides whether an object is in one.

Event protocol v0.2 fixes the geometry so that every implementation agrees on `zone.inside`:
- the rule point of a box is its bottom centre `((x1+x2)/2, y2)` — where a person or a forklift
  touches the floor — except for FIRE and SMOKE, which have no footprint and use the box centre;
- the polygon test is even-odd (ray casting), and a point ON the boundary counts as inside, so a
  person standing exactly on a painted line is in the zone;
- zones are tried in their listed order and the first enabled zone containing the point wins.

This module is pure geometry and parsing (no I/O); where zones come from is zone_sources.py.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Point = tuple[float, float]

#: Rule point names (upstream `rule_map` values).
BOTTOM_CENTER = 'bottom_center'
BBOX_CENTER = 'bbox_center'
RULE_POINTS = (BOTTOM_CENTER, BBOX_CENTER)

#: Objects without a footprint: the box centre is their rule point (contract).
CENTRE_RULE_OBJECTS = frozenset({'FIRE', 'SMOKE'})
CENTRE_RULE_EVENTS = frozenset({'FIRE_DETECTED', 'SMOKE_DETECTED'})

#: The zone result of an object that is in no zone.
NO_ZONE: dict[str, Any] = {'zone_id': '', 'inside': False}

# Boundary tolerance in pixels: coordinates are floats computed from model outputs.
_EPS = 1e-9


class ZoneError(ValueError):
    """A zone definition is wrong; the message names where (origin and index)."""


@dataclass(frozen=True)
class Zone:
    """One polygon zone. `camera_id` empty = the zone applies to every camera.

    `frame_id` set = the polygon is in metres of that ROS frame (e.g. `map`), not in image pixels:
    such a zone is a geofence for robot poses in that frame and never applies to camera boxes.
    """

    zone_id: str
    polygon: tuple[Point, ...]
    enabled: bool = True
    camera_id: str = ''
    frame_id: str = ''

    def applies_to(self, camera_id: str) -> bool:
        return self.enabled and not self.frame_id and (not self.camera_id or self.camera_id == camera_id)

    def applies_in_frame(self, frame_id: str) -> bool:
        """A geofence zone of this ROS frame."""
        return self.enabled and bool(self.frame_id) and self.frame_id == frame_id

    def contains(self, point: Point) -> bool:
        return point_in_polygon(point, self.polygon)


def _on_segment(point: Point, a: Point, b: Point) -> bool:
    (px, py), (ax, ay), (bx, by) = point, a, b
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    scale = max(1.0, abs(bx - ax) + abs(by - ay))
    if abs(cross) > _EPS * scale:
        return False
    within_x = min(ax, bx) - _EPS <= px <= max(ax, bx) + _EPS
    return within_x and min(ay, by) - _EPS <= py <= max(ay, by) + _EPS


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd rule; points on an edge or vertex are inside. Fewer than 3 vertices: never inside."""
    n = len(polygon)
    if n < 3:
        return False
    x, y = point
    inside = False
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        if _on_segment(point, a, b):
            return True
        (ax, ay), (bx, by) = a, b
        # Half-open rule (ay > y) != (by > y): a vertex on the ray is counted exactly once.
        if (ay > y) != (by > y):
            x_cross = ax + (y - ay) * (bx - ax) / (by - ay)
            if x_cross > x:
                inside = not inside
    return inside


def rule_point(
    bbox: Mapping[str, Any],
    event_type: str = '',
    object_type: str = '',
    rule_map: Mapping[str, str] | None = None,
) -> Point | None:
    """The point of a box that is tested against zones, or None when the box is incomplete.

    `rule_map` (upstream config) maps an event_type or object_type to `bottom_center` or
    `bbox_center` and overrides the contract defaults.
    """
    try:
        x1, y1, x2, y2 = (float(bbox[k]) for k in ('x1', 'y1', 'x2', 'y2'))
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    rule = None
    if rule_map:
        rule = rule_map.get(event_type) or rule_map.get(object_type)
    if rule is None:
        centre = object_type in CENTRE_RULE_OBJECTS or event_type in CENTRE_RULE_EVENTS
        rule = BBOX_CENTER if centre else BOTTOM_CENTER
    if rule == BBOX_CENTER:
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)
    return ((x1 + x2) / 2.0, y2)


def first_zone_containing(point: Point, zones: Iterable[Zone], camera_id: str = '') -> Zone | None:
    """The first enabled zone (for this camera) that contains `point`."""
    for zone in zones:
        if zone.applies_to(camera_id) and zone.contains(point):
            return zone
    return None


def evaluate(
    bbox: Any,
    zones: Sequence[Zone],
    *,
    event_type: str = '',
    object_type: str = '',
    camera_id: str = '',
    rule_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The protocol's `zone` object for a box: `{zone_id, inside}`."""
    if not isinstance(bbox, Mapping):
        return dict(NO_ZONE)
    point = rule_point(bbox, event_type, object_type, rule_map)
    if point is None:
        return dict(NO_ZONE)
    zone = first_zone_containing(point, zones, camera_id)
    return {'zone_id': zone.zone_id, 'inside': True} if zone else dict(NO_ZONE)


# -- parsing ----------------------------------------------------------------------------------

def _parse_point(raw: Any, where: str) -> Point:
    if isinstance(raw, Mapping) and 'x' in raw and 'y' in raw:
        raw = (raw['x'], raw['y'])
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or len(raw) != 2:
        raise ZoneError(f'{where}: a point is [x, y] or {{x, y}}, got {raw!r}')
    try:
        x, y = float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        raise ZoneError(f'{where}: point coordinates must be numbers, got {raw!r}') from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ZoneError(f'{where}: point coordinates must be finite, got {raw!r}')
    return (x, y)


def parse_zone(raw: Any, where: str) -> Zone:
    if not isinstance(raw, Mapping):
        raise ZoneError(f'{where}: a zone is a mapping with zone_id and polygon, got {type(raw).__name__}')
    zone_id = raw.get('zone_id', raw.get('id'))
    if not isinstance(zone_id, str | int) or isinstance(zone_id, bool) or str(zone_id) == '':
        raise ZoneError(f'{where}.zone_id: must be a non-empty string, got {zone_id!r}')
    polygon_raw = raw.get('polygon', raw.get('points'))
    if isinstance(polygon_raw, str | bytes) or not isinstance(polygon_raw, Sequence):
        raise ZoneError(f'{where}.polygon: must be a list of [x, y] points, got {polygon_raw!r}')
    polygon = tuple(_parse_point(p, f'{where}.polygon[{i}]') for i, p in enumerate(polygon_raw))
    if len(polygon) < 3:
        raise ZoneError(f'{where}.polygon: needs at least 3 points, got {len(polygon)}')
    enabled = raw.get('enabled', True)
    if not isinstance(enabled, bool):
        raise ZoneError(f'{where}.enabled: must be true or false, got {enabled!r}')
    camera_id = raw.get('camera_id') or ''
    if not isinstance(camera_id, str):
        raise ZoneError(f'{where}.camera_id: must be a string, got {camera_id!r}')
    frame_id = raw.get('frame_id') or ''
    if not isinstance(frame_id, str):
        raise ZoneError(f'{where}.frame_id: must be a string (a ROS frame such as map), got {frame_id!r}')
    if frame_id and camera_id:
        raise ZoneError(f'{where}: a zone is on a camera image (camera_id) or in a frame (frame_id), '
                        'not both')
    return Zone(str(zone_id), polygon, enabled, camera_id, frame_id)


def parse_zones(data: Any, origin: str) -> tuple[Zone, ...]:
    """Zones from a list, or from `{zones: [...]}` (file and API shapes of upstream).

    `origin` names the place in errors, e.g. `zones.yaml` or `GET http://…/zones`.
    """
    if isinstance(data, Mapping):
        if 'zones' not in data:
            raise ZoneError(f'{origin}: expected a list of zones or a mapping with a "zones" list')
        data = data['zones']
    if data is None:
        return ()
    if isinstance(data, str | bytes) or not isinstance(data, Sequence):
        raise ZoneError(f'{origin}: expected a list of zones, got {type(data).__name__}')
    zones = tuple(parse_zone(raw, f'{origin}: zones[{i}]') for i, raw in enumerate(data))
    seen: set[tuple[str, str, str]] = set()
    for i, zone in enumerate(zones):
        key = (zone.camera_id, zone.frame_id, zone.zone_id)
        if key in seen:
            raise ZoneError(f'{origin}: zones[{i}].zone_id: duplicate zone id {zone.zone_id!r}')
        seen.add(key)
    return zones
