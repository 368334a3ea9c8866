"""StreamPacket <-> ROS 2 messages (contract v1), one concept per module.

- json_values: strict JSON (named errors, meta size limit)
- timestamps: ISO packet time <-> builtin_interfaces/Time
- image_encodings / image / compressed_image: numpy frames <-> sensor_msgs/Image, CompressedImage
- blob_ref: file blob references and their store
- packet_codec: StreamPacket <-> schnitzel_stream_msgs/StreamPacket
- event_protocol: event protocol v0.2 dict <-> StreamPacket(kind=event) <-> schnitzel_stream_msgs/Event

The contract itself is docs/contract.md.
"""

from schnitzel_stream_ros.codec.blob_ref import BlobRef, FileBlobStore
from schnitzel_stream_ros.codec.compressed_image import CompressedFrame
from schnitzel_stream_ros.codec.json_values import DEFAULT_META_LIMIT_BYTES
from schnitzel_stream_ros.codec.packet_codec import (
    PacketCodec,
    PayloadEncoding,
    decode_packet,
    encode_packet,
)

__all__ = [
    'DEFAULT_META_LIMIT_BYTES',
    'BlobRef',
    'CompressedFrame',
    'FileBlobStore',
    'PacketCodec',
    'PayloadEncoding',
    'decode_packet',
    'encode_packet',
]
