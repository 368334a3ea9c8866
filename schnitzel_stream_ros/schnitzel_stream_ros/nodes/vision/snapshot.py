"""DetectionSnapshotNode: the event lane's snapshots — a JPEG of the frame an event was seen in.

Event protocol v0.2 has a `snapshot_path` field, and nothing else of the suite fills it. This node
sits between the detector's `frames` port (frames carrying `meta.detections`) and the tracker: for a
frame with detections and `snapshot: true` it writes one JPEG thumbnail (longest side at most
`max_side`, quality `quality`) into `directory` and sets `snapshot_path` on each detection; the event
builder copies it into the events. It emits the same detection packet the detector emits on `out`
(onnx_detector.detection_packet), so the tracker and everything after it see no difference.

`snapshot`, `max_side` and `quality` are knobs (dynamic parameters): a change applies to the next
frame. That is what a low-bandwidth mode turns down (smaller snapshots, or none) while a backlog of
events waits for the backend. The directory is bounded: beyond `max_files` the oldest snapshot this
node wrote is deleted (`snapshots_evicted_total`); a failed write is counted and the detections go on
without a path (never lost for a snapshot).
"""
from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import cv2

from schnitzel_stream_ros.nodes.compute.onnx_detector import as_bgr, detection_packet
from schnitzel_stream_ros.nodes.vision.frames import DETECTIONS_META, frame_of
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port

_UNSAFE = re.compile(r'[^A-Za-z0-9_.-]')


class DetectionSnapshotNode(Plugin):
    """Frames with detections in, detections out; with `snapshot` on, each carries a JPEG's path."""

    INPUTS = (Port('in', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY,
                   description="frames with meta.detections (a detector's `frames` port)"),)
    OUTPUTS = (Port('out', frozenset({Kind.DETECTION}), PayloadProfile.JSON_PORTABLE,
                    description='the detections of the frame, with snapshot_path when one was written'),)
    PARAMS = (
        Param('directory', str, description='where the JPEG files go (created)'),
        Param('snapshot', bool, True, 'write snapshots (a knob: settable live)', dynamic=True),
        Param('max_side', int, 640, 'longest side of a snapshot in pixels, never enlarged (a knob)',
              min=32, max=4096, dynamic=True),
        Param('quality', int, 80, 'JPEG quality (a knob)', min=10, max=95, dynamic=True),
        Param('max_files', int, 1000, 'snapshots kept; the oldest this node wrote is deleted beyond',
              min=1, max=1_000_000),
    )

    def setup(self) -> None:
        self.directory = Path(self.params['directory'])
        self.directory.mkdir(parents=True, exist_ok=True)
        self._written: deque[Path] = deque()
        self.gauge('snapshot_on', 1 if self.params['snapshot'] else 0)

    def on_params(self, changed) -> None:
        if 'snapshot' in changed:
            self.gauge('snapshot_on', 1 if changed['snapshot'] else 0)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        frame = frame_of(packet, self.node_id)
        detections = [dict(d) for d in packet.meta.get(DETECTIONS_META) or () if isinstance(d, dict)]
        if detections and self.params['snapshot']:
            path = self._write(packet, as_bgr(frame))
            if path is not None:
                for det in detections:
                    det['snapshot_path'] = path
        height, width = frame.shape[:2]
        return detection_packet(packet, detections, width, height, str(packet.meta.get('model') or 'unknown'))

    def _write(self, packet: StreamPacket, frame) -> str | None:
        scale = self.params['max_side'] / max(frame.shape[:2])
        if scale < 1.0:
            size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        name = _UNSAFE.sub('_', f'{packet.source_id}_{packet.packet_id}')[:200] + '.jpg'
        path = self.directory / name
        ok, data = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, self.params['quality']])
        try:
            if not ok:
                raise OSError('JPEG encoding failed')
            path.write_bytes(data.tobytes())
        except OSError as exc:
            self.count('snapshot_failed_total')
            self.log.warning(f"node '{self.node_id}': snapshot {path} not written: {exc}")
            return None
        self.count('snapshots_total')
        self.count('snapshot_bytes_total', len(data))
        self.gauge('snapshot_last_bytes', len(data))
        self._written.append(path)
        while len(self._written) > self.params['max_files']:
            old = self._written.popleft()
            old.unlink(missing_ok=True)
            self.count('snapshots_evicted_total')
        return str(path)
