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

State (docs/state.md): tracks and id counters are checkpointed when the graph configures
`config.state` and restored when the node is loaded again, so the people it follows keep their ids
across a container restart. Ids are reserved in blocks of ID_BLOCK, each reservation written ahead
of the first packet that uses it: after a crash the counter resumes past the last reserved block,
so an id is never handed to a second object (ids may skip, never repeat). At most `state.max_keys`
cameras are kept (the least recently seen go first, `state_evicted_total`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import DEFAULT_INPUT, DEFAULT_OUTPUT, Param, Plugin, Port
from schnitzel_stream_ros.state.bounded import evict_oldest, touch

#: Track ids reserved per checkpoint (see the module docstring).
ID_BLOCK = 100

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
    id_limit: int = 1  # ids below it are reserved (durably, when checkpointed)


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
        self.reserved = False  # the last update reserved a new block of ids

    def update(self, source_id: str, detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies of `detections` with `track_id` set (detections without a valid bbox pass unchanged)."""
        cam = self.cameras.get(source_id) or CameraTracks()
        touch(self.cameras, source_id, cam)  # the least recently seen camera is evicted first
        self.reserved = False
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
                    if cam.next_id > cam.id_limit:
                        cam.id_limit = cam.next_id + ID_BLOCK - 1
                        self.reserved = True
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

    def evict(self, max_cameras: int) -> int:
        return len(evict_oldest(self.cameras, max_cameras))

    def snapshot(self) -> dict[str, Any]:
        return {
            source_id: {
                'next_id': cam.next_id,
                'id_limit': cam.id_limit,
                'tracks': [[t.track_id, t.object_type, list(t.box), t.missed, t.hits] for t in cam.tracks],
            }
            for source_id, cam in self.cameras.items()
        }

    def load(self, cameras: dict[str, Any]) -> None:
        """Inverse of snapshot(); ids resume past the last reserved block (see ID_BLOCK)."""
        self.cameras = {}
        for source_id, raw in cameras.items():
            tracks = [Track(int(tid), str(kind), tuple(float(v) for v in box), int(missed), int(hits))
                      for tid, kind, box, missed, hits in raw['tracks']]
            if any(len(t.box) != 4 for t in tracks):
                raise ValueError(f'camera {source_id!r}: a track box needs 4 numbers')
            limit = max(int(raw['id_limit']), int(raw['next_id']))
            self.cameras[str(source_id)] = CameraTracks(next_id=limit, tracks=tracks, id_limit=limit)


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

    STATE_VERSION = 1

    def setup(self) -> None:
        self.tracker = IouTracker(self.params['min_iou'], self.params['max_age_frames'])

    def snapshot_state(self) -> dict[str, Any]:
        return {'cameras': self.tracker.snapshot()}

    def restore_state(self, state: dict[str, Any]) -> None:
        cameras = state.get('cameras') if isinstance(state, dict) else None
        if not isinstance(cameras, dict):
            raise ValueError("state needs 'cameras': {source_id: {next_id, id_limit, tracks}}")
        self.tracker.load(cameras)
        self.gauge('tracks_active', self.tracker.active)

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
        evicted = self.tracker.evict(self.state_max_keys)
        if evicted:
            self.count('state_evicted_total', evicted)
        self.gauge('tracks_active', self.tracker.active)
        if self.tracker.reserved:
            self.checkpoint()  # write-ahead: the new block of ids is durable before one of them leaves
        return packet.derive(payload=tracked)
