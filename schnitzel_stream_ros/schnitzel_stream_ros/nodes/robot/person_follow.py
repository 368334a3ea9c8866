"""PersonFollowCmdVelNode: a velocity command that keeps a detected person centred and at a distance.

Upstream's person-follow lane (schnitzel-stream-platform, branch exp/backpressure-paper-submission,
Apache-2.0), its control law reimplemented with the same configuration keys and defaults:
- candidates: detections with a valid box, confidence >= `min_confidence`, and a class id in
  `person_class_ids` or a class name in `person_class_names` (either matches when both are given);
- target: the largest box (`target_select: largest`) or the one nearest the image centre (`center`);
- angular_z = -angular_kp * centre error (box centre vs image centre, normalised to [-1, 1]),
  clamped to ±max_angular: a target right of centre turns the robot right (negative z, REP 103);
- linear_x = linear_kp * (desired_height_ratio - box height / image height), zero inside the
  ±height_ratio_tolerance deadband, clamped to ±max_linear, never negative unless `allow_reverse`,
  zero while the target is off centre by more than `center_error_for_linear` (turn first), raised to
  `min_linear` when it moves at all;
- no target: a zero command (upstream), so a person who leaves the picture stops the robot.

Beyond upstream, because the command moves a robot: a frame older than `max_detection_age_sec`
(its ts, i.e. capture time) commands zero instead of steering on a stale picture, and when frames
stop coming for `detection_timeout_sec` the node's tick commands zero once (a stalled camera, a dead
detector). While `paused` (a dynamic parameter) every frame commands zero. Each stop reason is a
counter (`stops_<reason>_total`, in the run report and /diagnostics). The /cmd_vel sink
(cmd_vel_sink.py) is the second, independent line: its own command timeout, limits and e-stop.

Input: frames carrying detections — upstream's payload `{frame | frame_width/frame_height,
detections}` or this suite's detector output (YoloV8DetectorNode `out`: the frame with
meta.detections; or its `detections` port: kind=detection, frame size in meta).
Output: kind=cmd_vel, payload {linear_x, angular_z, target_found, candidate_count, frame_width,
frame_height, error_x_norm, bbox_height_ratio, target_select[, target_bbox, target_confidence],
stop_reason}.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket, parse_ts
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

CMD_VEL_KIND = 'cmd_vel'
#: meta key under which this suite's detectors attach detections to the frame
DETECTIONS_META = 'detections'
#: detections looked at per frame (a hostile or broken producer cannot make one frame cost more)
MAX_DETECTIONS = 1000

Box = tuple[int, int, int, int]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _box(det: Mapping[str, Any]) -> Box | None:
    """Pixel box {x1, y1, x2, y2} rounded to ints; None when missing, not numeric or empty."""
    raw = det.get('bbox')
    if not isinstance(raw, Mapping):
        return None
    coords = [_finite(raw.get(k)) for k in ('x1', 'y1', 'x2', 'y2')]
    if any(c is None for c in coords):
        return None
    x1, y1, x2, y2 = (round(c) for c in coords)  # type: ignore[arg-type]
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _positive_size(width: Any, height: Any) -> tuple[int, int] | None:
    w, h = _finite(width), _finite(height)
    if w is None or h is None or w <= 0 or h <= 0:
        return None
    return int(w), int(h)


def frame_size(packet: StreamPacket) -> tuple[int, int] | None:
    """(width, height) of the picture the detections refer to: an image array's shape, else
    width/height fields of the payload or the meta (upstream's order of preference)."""
    payload = packet.payload
    holders: list[Any] = [payload]
    if isinstance(payload, Mapping):
        holders.insert(0, payload.get('frame'))
    for holder in holders:
        shape = getattr(holder, 'shape', None)
        if isinstance(shape, Sequence) and len(shape) >= 2:
            size = _positive_size(shape[1], shape[0])
            if size:
                return size
    for mapping in (payload, packet.meta):
        if not isinstance(mapping, Mapping):
            continue
        for wk, hk in (('frame_width', 'frame_height'), ('width', 'height')):
            if wk in mapping and hk in mapping:
                size = _positive_size(mapping[wk], mapping[hk])
                if size:
                    return size
    return None


def detections_of(packet: StreamPacket) -> list[Any]:
    """The detection list: payload.detections (upstream), a detection packet's payload, or the
    frame's meta.detections (this suite's detectors). Raises ValueError when it is not a list."""
    payload = packet.payload
    if isinstance(payload, Mapping) and 'detections' in payload:
        found = payload['detections']
    elif packet.kind == Kind.DETECTION:
        found = payload
    else:
        found = packet.meta.get(DETECTIONS_META, [])
    if not isinstance(found, list | tuple):
        raise ValueError(f'detections must be a list, got {type(found).__name__}')
    return list(found[:MAX_DETECTIONS])


class PersonFollowCmdVelNode(Plugin):
    """Follow the chosen person: cmd_vel packets (linear_x, angular_z) from detections per frame."""

    INPUTS = (Port('in', frozenset({Kind.FRAME, Kind.DETECTION}), PayloadProfile.INPROC_ANY,
                   description='frames with detections (payload.detections or meta.detections)'),)
    OUTPUTS = (Port('out', frozenset({CMD_VEL_KIND}), description='one velocity command per frame'),)
    PARAMS = (
        Param('output_kind', str, CMD_VEL_KIND, 'kind of the command packets'),
        Param('source_id', str, '', 'source_id of the commands (default: the frame\'s)'),
        Param('person_class_ids', list, [0], 'class ids that are persons'),
        Param('person_class_names', list, ['person'], 'class names that are persons (case-insensitive)'),
        Param('min_confidence', float, 0.35, 'weaker detections are ignored', min=0.0, max=1.0),
        Param('target_select', str, 'largest', 'which person to follow', choices=('largest', 'center')),
        Param('desired_height_ratio', float, 0.35, 'box height / image height to keep (the distance)',
              min=0.01, max=0.99),
        Param('height_ratio_tolerance', float, 0.05, 'deadband around desired_height_ratio',
              min=0.0, max=0.5),
        Param('linear_kp', float, 0.8, 'm/s per unit of height-ratio error', min=0.0),
        Param('angular_kp', float, 1.2, 'rad/s per unit of normalised centre error', min=0.0),
        Param('max_linear', float, 0.18, 'largest |linear_x| (m/s)', min=0.0),
        Param('min_linear', float, 0.0, 'smallest |linear_x| when moving at all (m/s)', min=0.0),
        Param('max_angular', float, 1.2, 'largest |angular_z| (rad/s)', min=0.0),
        Param('center_error_for_linear', float, 0.25, 'no forward motion while further off centre',
              min=0.0, max=1.0),
        Param('allow_reverse', bool, False, 'back away from a person who is too close'),
        Param('default_frame_width', int, 640, 'image width when the packet names none', min=1),
        Param('default_frame_height', int, 480, 'image height when the packet names none', min=1),
        Param('max_detection_age_sec', float, 1.0, 'frames older than this (by ts) command zero (0 = off)',
              min=0.0, dynamic=True),
        Param('detection_timeout_sec', float, 0.5, 'no frame for this long: command zero once (0 = off)',
              min=0.0),
        Param('paused', bool, False, 'command zero for every frame until unpaused', dynamic=True),
    )

    @classmethod
    def tick_period(cls, params: Mapping[str, Any]) -> float | None:
        timeout = params.get('detection_timeout_sec', 0.5)
        return max(0.01, min(0.1, timeout / 4)) if timeout and timeout > 0 else None

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        problems = []
        for name, kind in (('person_class_ids', int), ('person_class_names', str)):
            values = params.get(name) or []
            if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
                problems.append(f'parameter {name!r}: expected a list of {kind.__name__}, got {values!r}')
        return problems

    def setup(self) -> None:
        p = self.params
        self.class_ids = frozenset(p['person_class_ids'] or [])
        names = (str(n).strip().lower() for n in p['person_class_names'] or [])
        self.class_names = frozenset(n for n in names if n)
        self._last_frame_at: float | None = None  # monotonic time of the last frame
        self._moving = False  # the last command this node sent was not zero
        self._timed_out = False

    # -- control law (upstream's) ----------------------------------------------------------------
    def is_person(self, det: Mapping[str, Any]) -> bool:
        confidence = _finite(det.get('confidence')) or 0.0
        if confidence < self.params['min_confidence']:
            return False
        try:  # upstream takes any int()-able class id ("0", 0.0)
            id_ok = det.get('class_id') is not None and int(det['class_id']) in self.class_ids
        except (TypeError, ValueError, OverflowError):
            id_ok = False
        name = str(det.get('class_name', det.get('label', ''))).strip().lower()
        name_ok = bool(name) and name in self.class_names
        if self.class_ids and self.class_names:
            return id_ok or name_ok
        if self.class_ids:
            return id_ok
        if self.class_names:
            return name_ok
        return True

    def select(
        self, candidates: list[tuple[Mapping[str, Any], Box]], width: int
    ) -> tuple[Mapping[str, Any], Box]:
        if self.params['target_select'] == 'center':
            return min(candidates, key=lambda c: abs((c[1][0] + c[1][2]) * 0.5 - width * 0.5))
        return max(candidates, key=lambda c: (c[1][2] - c[1][0]) * (c[1][3] - c[1][1]))

    def command(self, box: Box, width: int, height: int) -> tuple[float, float, float, float]:
        """(linear_x, angular_z, centre error, height ratio) for the target box."""
        p = self.params
        x1, y1, x2, y2 = box
        error_x = ((x1 + x2) * 0.5 - width * 0.5) / max(1.0, width * 0.5)
        error_x = min(1.0, max(-1.0, error_x))
        ratio = (y2 - y1) / max(1.0, float(height))
        range_error = p['desired_height_ratio'] - ratio
        linear = 0.0 if abs(range_error) <= p['height_ratio_tolerance'] else p['linear_kp'] * range_error
        linear = min(p['max_linear'], max(-p['max_linear'], linear))
        if linear < 0.0 and not p['allow_reverse']:
            linear = 0.0
        if abs(error_x) > p['center_error_for_linear']:
            linear = 0.0
        if 0.0 < linear < p['min_linear']:
            linear = p['min_linear']
        if p['allow_reverse'] and -p['min_linear'] < linear < 0.0:
            linear = -p['min_linear']
        angular = min(p['max_angular'], max(-p['max_angular'], -p['angular_kp'] * error_x))
        return linear, angular, error_x, ratio

    # -- packets ---------------------------------------------------------------------------------
    def _age_sec(self, packet: StreamPacket) -> float | None:
        try:
            return (datetime.now(UTC) - parse_ts(packet.ts)).total_seconds()
        except ValueError:
            return None

    def _packet(self, like: StreamPacket | None, payload: dict[str, Any]) -> StreamPacket:
        self._moving = payload['linear_x'] != 0.0 or payload['angular_z'] != 0.0
        self.count('commands_total')
        source = self.params['source_id'] or (like.source_id if like is not None else self.node_id)
        if like is None:
            return StreamPacket.new(self.params['output_kind'], source, payload,
                                    {'target_found': False, 'candidate_count': 0})
        meta = {**like.meta, 'target_found': payload['target_found'],
                'candidate_count': payload['candidate_count']}
        meta.pop(DETECTIONS_META, None)  # the command is small and portable; the boxes stay behind
        return StreamPacket.new(self.params['output_kind'], source, payload, meta, ts=like.ts)

    def _stop(self, like: StreamPacket | None, reason: str, width: int, height: int,
              candidates: int = 0) -> StreamPacket:
        self.count(f'stops_{reason}_total')
        return self._packet(like, {
            'linear_x': 0.0, 'angular_z': 0.0, 'target_found': False, 'candidate_count': candidates,
            'frame_width': width, 'frame_height': height, 'error_x_norm': 0.0, 'bbox_height_ratio': 0.0,
            'target_select': self.params['target_select'], 'stop_reason': reason,
        })

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        self._last_frame_at = time.monotonic()
        self._timed_out = False
        width, height = frame_size(packet) or (self.params['default_frame_width'],
                                               self.params['default_frame_height'])
        detections = detections_of(packet)  # ValueError: counted as an error of this packet, no command
        if self.params['paused']:
            return self._stop(packet, 'paused', width, height)
        max_age = self.params['max_detection_age_sec']
        age = self._age_sec(packet)
        if max_age > 0 and (age is None or age > max_age):
            return self._stop(packet, 'stale_input', width, height)
        candidates = []
        for det in detections:
            if isinstance(det, Mapping):
                box = _box(det)
                if box is not None and self.is_person(det):
                    candidates.append((det, box))
        if not candidates:
            return self._stop(packet, 'no_target', width, height)
        det, box = self.select(candidates, width)
        linear, angular, error_x, ratio = self.command(box, width, height)
        self.count('targets_found_total')
        return self._packet(packet, {
            'linear_x': linear, 'angular_z': angular, 'target_found': True,
            'candidate_count': len(candidates), 'frame_width': width, 'frame_height': height,
            'error_x_norm': error_x, 'bbox_height_ratio': ratio,
            'target_select': self.params['target_select'],
            'target_bbox': dict(zip(('x1', 'y1', 'x2', 'y2'), box, strict=True)),
            'target_confidence': _finite(det.get('confidence')) or 0.0, 'stop_reason': '',
        })

    def on_tick(self) -> Outputs:
        """Frames stopped coming: one zero command (the sink holds it; its own timeout backs this)."""
        timeout = self.params['detection_timeout_sec']
        if self._last_frame_at is None or self._timed_out or timeout <= 0:
            return None
        if time.monotonic() - self._last_frame_at <= timeout:
            return None
        self._timed_out = True
        if not self._moving:
            return None  # already stopped: nothing to take back
        return self._stop(None, 'input_timeout', self.params['default_frame_width'],
                          self.params['default_frame_height'])

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if changed.get('paused') and self._moving:
            self.emit(self._stop(None, 'paused', self.params['default_frame_width'],
                                 self.params['default_frame_height']))
