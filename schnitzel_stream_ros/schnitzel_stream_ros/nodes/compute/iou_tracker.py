"""IouTrackerNode: stable `track_id`s for detections across frames, by box overlap.

Why IoU and nothing fancier: at camera rates a person moves little between processed frames, so
"the box that overlaps most with where the track was" is right almost always, costs microseconds
and needs no appearance model. Matching is greedy on IoU (highest first) within the same
object type; ties break by track id then detection order, so the same input always gives the same
ids — replays produce the same event ids downstream.

State is per `source_id` (one tracker node can serve several cameras). A track that finds no
match for more than `max_age_frames` detection packets of its camera is dropped; ids are never
reused within a run. The protocol v0.2 event builder requires a track_id for PERSON detections:
every detection leaving this node has one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import DEFAULT_INPUT, DEFAULT_OUTPUT, Param, Plugin, Port

_BOX = ('x1', 'y1', 'x2', 'y2')


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 for empty boxes."""
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    object_type: str
    box: tuple[float, ...]
    missed: int = 0
    hits: int = 1


@dataclass
class CameraTracks:
    next_id: int = 1
    tracks: list[Track] = field(default_factory=list)


def box_of(det: dict[str, Any]) -> tuple[float, ...] | None:
    bbox = det.get('bbox')
    if not isinstance(bbox, dict) or not all(isinstance(bbox.get(k), int | float) for k in _BOX):
        return None
    return tuple(float(bbox[k]) for k in _BOX)


class IouTracker:
    """The matching itself, without the plugin (unit-testable, reusable)."""

    def __init__(self, min_iou: float, max_age_frames: int) -> None:
        self.min_iou = min_iou
        self.max_age_frames = max_age_frames
        self.cameras: dict[str, CameraTracks] = {}

    def update(self, source_id: str, detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies of `detections` with `track_id` set (detections without a valid bbox pass unchanged)."""
        cam = self.cameras.setdefault(source_id, CameraTracks())
        boxes = [box_of(d) for d in detections]
        pairs = []
        for ti, track in enumerate(cam.tracks):
            for di, (det, box) in enumerate(zip(detections, boxes, strict=True)):
                if box is None or det.get('object_type') != track.object_type:
                    continue
                overlap = iou(track.box, box)
                if overlap >= self.min_iou:
                    pairs.append((-overlap, track.track_id, di, ti))
        pairs.sort()
        assigned: dict[int, int] = {}  # detection index -> track index
        used_tracks: set[int] = set()
        for _neg, _tid, di, ti in pairs:
            if di in assigned or ti in used_tracks:
                continue
            assigned[di] = ti
            used_tracks.add(ti)
        out: list[dict[str, Any]] = []
        for di, (det, box) in enumerate(zip(detections, boxes, strict=True)):
            det = dict(det)
            if box is not None:
                if di in assigned:
                    track = cam.tracks[assigned[di]]
                    track.box, track.missed = box, 0
                    track.hits += 1
                else:
                    track = Track(cam.next_id, str(det.get('object_type')), box)
                    cam.next_id += 1
                    cam.tracks.append(track)
                    used_tracks.add(len(cam.tracks) - 1)
                det['track_id'] = track.track_id
            out.append(det)
        for ti, track in enumerate(cam.tracks):
            if ti not in used_tracks:
                track.missed += 1
        cam.tracks = [t for t in cam.tracks if t.missed <= self.max_age_frames]
        return out

    @property
    def active(self) -> int:
        return sum(len(c.tracks) for c in self.cameras.values())


class IouTrackerNode(Plugin):
    """Stable track ids for detections across frames (greedy IoU matching per camera)."""

    INPUTS = (Port(DEFAULT_INPUT, kinds=frozenset({Kind.DETECTION}), profile=PayloadProfile.JSON_PORTABLE,
                   description='detection packets: a list of detections, or one detection'),)
    OUTPUTS = (Port(DEFAULT_OUTPUT, kinds=frozenset({Kind.DETECTION}), profile=PayloadProfile.JSON_PORTABLE,
                    description='the same packets (same packet_id) with track_id on every detection'),)
    PARAMS = (
        Param('min_iou', float, 0.3, min=0.0, max=1.0, description='least overlap that continues a track'),
        Param('max_age_frames', int, 10, min=0,
              description='drop a track after this many detection packets without a match'),
    )

    def setup(self) -> None:
        self.tracker = IouTracker(self.params['min_iou'], self.params['max_age_frames'])

    def process(self, packet: StreamPacket, port: str = DEFAULT_INPUT) -> StreamPacket:
        where = f'node {self.node_id!r}: packet {packet.packet_id} (source_id={packet.source_id})'
        payload = packet.payload
        if isinstance(payload, dict):
            tracked: Any = self.tracker.update(packet.source_id, [payload])[0]
        elif isinstance(payload, list):
            dets = [d for d in payload if isinstance(d, dict)]
            if len(dets) != len(payload):
                raise TypeError(f'{where}: a detection payload list must hold only dicts')
            tracked = self.tracker.update(packet.source_id, dets)
        elif payload is None:
            self.tracker.update(packet.source_id, [])  # an empty frame still ages the tracks
            tracked = None
        else:
            raise TypeError(f'{where}: detection payload must be a list, a dict or null, '
                            f'got {type(payload).__name__}')
        self.gauge('tracks_active', self.tracker.active)
        return packet.derive(payload=tracked)
