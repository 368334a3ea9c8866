"""FrameCompressNode: frames as JPEG (or PNG) for links where bytes cost.

Why: a raw 640x480 BGR frame is 900 KiB on the wire; hosts behind a thin link (another machine,
Wi-Fi, a bag on a small disk) want ~30-60 KiB. Put this node last in the sending container: its
output is a frame packet whose payload is a `CompressedFrame`, which the packet codec sends as
`sensor_msgs/CompressedImage` inside the StreamPacket (image_transport's `format` text, so ROS image
tools read it). A container that receives it gets a plain numpy frame again (decoded on arrival),
so nodes downstream do not change. Inside one container a compressed payload is not a frame: wire
this node only to a port that leaves the container.

Cost (bench/runtime_bench.py P3 jpeg, bench/codec_bench.py): milliseconds of CPU per frame each
way, against ~50 us for a raw frame; JPEG loses detail (quality 90 by default), PNG does not.
"""

from __future__ import annotations

from schnitzel_stream_ros.codec.compressed_image import compress_to_payload
from schnitzel_stream_ros.nodes.vision.frames import frame_of
from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port

_FRAMES = frozenset({Kind.FRAME})


class FrameCompressNode(Plugin):
    """Compresses every frame to JPEG or PNG (a CompressedFrame payload; decoded again on arrival)."""

    INPUTS = (Port('in', _FRAMES, PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', _FRAMES, PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('format', str, 'jpeg', 'jpeg (lossy, small) or png (lossless)', choices=('jpeg', 'png')),
        Param('jpeg_quality', int, 90, 'JPEG quality 0..100', min=0, max=100, dynamic=True),
        Param('png_level', int, 3, 'PNG compression level 0..9', min=0, max=9, dynamic=True),
    )

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        frame = frame_of(packet, self.node_id)
        encoding = packet.meta.get(MetaKey.IMAGE_ENCODING)
        payload = compress_to_payload(
            frame,
            self.params['format'],
            encoding=encoding if isinstance(encoding, str) else None,
            jpeg_quality=self.params['jpeg_quality'],
            png_level=self.params['png_level'],
            field=f'node {self.node_id!r}: packet {packet.packet_id} payload',
        )
        self.count('compressed_bytes_total', len(payload.data))
        return packet.derive(payload=payload)
