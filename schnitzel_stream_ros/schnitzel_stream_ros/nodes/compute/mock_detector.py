"""MockDetectorNode (upstream): deterministic fake detections computed from the frame index.

For graph tests and demos that need detections without a model: the same frames always yield the
same detection (so event ids are stable), and frames need not carry an image at all — upstream
graphs feed it `{frame: null, frame_idx: N}` payloads from a static source.
"""
from __future__ import annotations

from typing import Any

from schnitzel_stream_ros.nodes.compute.onnx_detector import FRAME_INPUT
from schnitzel_stream_ros.nodes.compute.taxonomy import SEVERITIES
from schnitzel_stream_ros.nodes.vision.frames import frame_idx_of
from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import DEFAULT_INPUT, DEFAULT_OUTPUT, Param, Plugin, Port

_BBOX_KEYS = ('x1', 'y1', 'x2', 'y2')
_DEFAULT_BBOX = {'x1': 10, 'y1': 20, 'x2': 200, 'y2': 260}


class MockDetectorNode(Plugin):
    """Deterministic fake detections from frame_idx (upstream keys)."""

    INPUTS = (FRAME_INPUT,)
    OUTPUTS = (Port(DEFAULT_OUTPUT, kinds=frozenset({Kind.DETECTION}), profile=PayloadProfile.JSON_PORTABLE,
                    description='one detection dict per emitted frame'),)
    PARAMS = (
        Param('emit_every_n', int, 1, min=1, description='emit for frames whose frame_idx % n == 0'),
        Param('event_type', str, 'ZONE_INTRUSION', description='event_type of the detection'),
        Param('object_type', str, 'PERSON', description='object_type of the detection'),
        Param('severity', str, 'LOW', choices=SEVERITIES, description='severity of the detection'),
        Param('confidence', float, 0.75, min=0.0, max=1.0, description='confidence of the detection'),
        Param('track_id', str, 'frame_idx',
              description="'frame_idx' (track id = frame index) or a fixed integer id given as text"),
        Param('bbox', dict, None, description='{x1, y1, x2, y2} pixels (default 10, 20, 200, 260)'),
        Param('bbox_dx', int, 0, description='moves the box right by bbox_dx * frame_idx pixels'),
    )

    def setup(self) -> None:
        where = f'node {self.node_id!r}'
        track = self.params['track_id'].strip()
        if track != 'frame_idx' and not track.lstrip('-').isdigit():
            raise ValueError(f"{where}: parameter 'track_id': expected 'frame_idx' or an integer, "
                             f'got {track!r}')
        self.fixed_track_id = None if track == 'frame_idx' else int(track)
        raw = self.params['bbox'] if self.params['bbox'] is not None else _DEFAULT_BBOX
        if set(raw) != set(_BBOX_KEYS) or not all(isinstance(raw[k], int) for k in _BBOX_KEYS):
            raise ValueError(f"{where}: parameter 'bbox': expected integer x1, y1, x2, y2, got {raw!r}")
        self.bbox = {k: raw[k] for k in _BBOX_KEYS}

    def process(self, packet: StreamPacket, port: str = DEFAULT_INPUT) -> StreamPacket | None:
        frame_idx = frame_idx_of(packet)
        if frame_idx is None:
            raise TypeError(f'node {self.node_id!r}: packet {packet.packet_id} '
                            f'(source_id={packet.source_id}) has no frame_idx (meta or payload)')
        if frame_idx % self.params['emit_every_n']:
            return None
        bbox = dict(self.bbox)
        if self.params['bbox_dx']:
            bbox['x1'] += self.params['bbox_dx'] * frame_idx
            bbox['x2'] += self.params['bbox_dx'] * frame_idx
        detection: dict[str, Any] = {
            'bbox': bbox,
            'confidence': self.params['confidence'],
            'event_type': self.params['event_type'],
            'object_type': self.params['object_type'],
            'severity': self.params['severity'],
            'track_id': frame_idx if self.fixed_track_id is None else self.fixed_track_id,
        }
        meta = {k: v for k, v in packet.meta.items() if k != MetaKey.IDEMPOTENCY_KEY}
        meta[MetaKey.FRAME_IDX] = frame_idx
        self.count('emitted_total')
        return packet.child(kind=Kind.DETECTION, payload=detection, meta=meta)
