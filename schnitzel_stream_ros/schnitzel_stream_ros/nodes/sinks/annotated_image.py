"""AnnotatedImageSink: camera frames with boxes, track ids and zones drawn on, as sensor_msgs/Image.

For rqt_image_view / RViz / Foxglove: what the site sees, what the detector found and where the
zones are. Frames (kind=frame, numpy BGR) arrive on `frames`; detections (kind=detection, a list of
`{bbox, object_type, confidence, track_id}`) or events (kind=event) on `detections`. The detector
runs slower than the camera and drops frames, so each frame is drawn with the latest detections of
its camera (`source_id`) that are at most `max_age_ms` older than the frame — boxes may trail by one
inference, the video stays smooth. Several events of one frame (same ts) are drawn together. A frame
that carries its own detections (meta `detections`, set by the detector) is drawn with exactly those.

Zones (inline or file, the ZonePolicyNode format) are outlined; a zone with an object inside it in
the drawn set is drawn in the alarm colour. The drawing is nodes/sinks/overlay.py's, shared with
OpenCvBboxDisplaySink; the original frame is never changed (drawing works on a copy).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from std_msgs.msg import Header

from schnitzel_stream_ros.codec.image import frame_to_image_msg
from schnitzel_stream_ros.codec.timestamps import ts_to_stamp
from schnitzel_stream_ros.nodes.fusion.sensor_history import ts_to_micros
from schnitzel_stream_ros.nodes.policy.zone_sources import load_zone_file
from schnitzel_stream_ros.nodes.policy.zones import Zone, parse_zones
from schnitzel_stream_ros.nodes.sinks.overlay import boxes_in, detections_of, draw, drawable_frame
from schnitzel_stream_ros.nodes.vision.frames import DETECTIONS_META
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role

IMAGE_MSG_TYPE = 'sensor_msgs/msg/Image'


@dataclass
class _Latest:
    """The detections of one camera at its newest time stamp."""

    t_us: int = -1
    items: list[Mapping[str, Any]] = field(default_factory=list)


class AnnotatedImageSink(Plugin):
    """Draw detections, track ids and zones on camera frames and publish them as sensor_msgs/Image."""

    ROLE = Role.SINK
    INPUTS = (
        Port('frames', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY, description='numpy BGR frames'),
        Port('detections', frozenset({Kind.DETECTION, Kind.EVENT}), required=False,
             description='detections (list) or events of the same cameras'),
    )
    OUTPUTS = (
        Port('image', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY, msg_type=IMAGE_MSG_TYPE,
             description='annotated frames as sensor_msgs/Image'),
    )
    PARAMS = (
        Param('zones', list, None, 'inline zones to outline (ZonePolicyNode format)'),
        Param('zones_file', str, '', 'YAML/JSON zone file to outline'),
        Param('max_age_ms', int, 1000, 'detections older than this (vs. the frame) are not drawn', min=0),
        Param('every_nth', int, 1, 'publish every n-th frame of each camera (viewer bandwidth)', min=1),
        Param('thickness', int, 2, 'line thickness in pixels', min=1, max=20),
        Param('labels', bool, True, 'write class, track id and confidence next to boxes'),
        Param('encoding', str, '', 'sensor_msgs/Image encoding (empty = bgr8/mono8 from the frame)'),
    )

    def setup(self) -> None:
        p = self.params
        where = f'{self.node_id}: parameter'
        zones: tuple[Zone, ...] = ()
        if p.get('zones') is not None:
            zones += parse_zones(p['zones'], f'{where} zones')
        if p.get('zones_file'):
            zones += load_zone_file(p['zones_file'])
        self.zones = zones
        self.latest: dict[str, _Latest] = {}
        self.frames_seen: dict[str, int] = {}

    def _remember(self, packet: StreamPacket) -> None:
        try:
            t_us = ts_to_micros(packet.ts)
        except ValueError:
            self.count('bad_ts_total')
            return
        latest = self.latest.setdefault(packet.source_id, _Latest())
        if t_us > latest.t_us:
            latest.t_us, latest.items = t_us, detections_of(packet)
        elif t_us == latest.t_us:
            latest.items = latest.items + detections_of(packet)

    def _detections_for(self, packet: StreamPacket) -> list[Mapping[str, Any]]:
        latest = self.latest.get(packet.source_id)
        if latest is None:
            return []
        try:
            age_us = ts_to_micros(packet.ts) - latest.t_us
        except ValueError:
            return []
        if age_us < 0 or age_us > self.params.get('max_age_ms', 1000) * 1000:
            return []
        return latest.items

    def process(self, packet: StreamPacket, port: str = 'frames') -> Outputs:
        if packet.kind != Kind.FRAME:
            self._remember(packet)
            return None
        seen = self.frames_seen.get(packet.source_id, 0)
        self.frames_seen[packet.source_id] = seen + 1
        if seen % self.params.get('every_nth', 1):
            return None
        frame = drawable_frame(packet, self.node_id)
        if frame is None:
            self.count('invalid_frames_total')
            return None
        attached = packet.meta.get(DETECTIONS_META)
        detections = boxes_in(attached) if isinstance(attached, list) else self._detections_for(packet)
        image = draw(
            frame, detections, self.zones, packet.source_id,
            thickness=self.params.get('thickness', 2), labels=self.params.get('labels', True),
        )
        header = Header(stamp=ts_to_stamp(packet.ts), frame_id=packet.source_id)
        msg = frame_to_image_msg(image, self.params.get('encoding') or None, header, field='payload')
        self.count('published_total')
        self.emit(packet.derive(payload=msg), 'image')
        return None
