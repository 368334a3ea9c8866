"""StreamPacket <-> schnitzel_stream_msgs/StreamPacket, lossless for every payload encoding.

Inside one process packets are handed over as Python objects; this codec is for the places where
they cross a process boundary on a ROS topic. The payload's Python type chooses the encoding:

| payload                                    | payload_encoding | comes back as                      |
|--------------------------------------------|------------------|------------------------------------|
| None                                       | none             | None                               |
| numpy frame                                | image            | read-only ndarray, same bytes      |
| numpy frame, PacketCodec(image_compression) | compressed_image | ndarray (PNG exact, JPEG lossy)    |
| CompressedFrame                            | compressed_image | ndarray (or the CompressedFrame)   |
| bytes / bytearray / memoryview             | bytes            | bytes; content_type = meta's       |
| kind "bytes_ref": {"ref": {...}}           | blob_ref         | the same dict                      |
| any other JSON value                       | json             | the same value (tuples as lists)   |

Frames of one channel come back 2-D ((h, w, 1) -> (h, w), as from cv_bridge and OpenCV).
A CompressedFrame stays one with PacketCodec(decompress_images=False).

Fields: header.stamp = ts (exact to the microsecond; ts comes back in canonical spelling,
`format_ts`), header.frame_id = source_id, idempotency_key = packet.idempotency_key (meta's key or
packet_id), meta_json = the whole meta as strict JSON (limit 64 KiB by default). Fields that mirror a
meta entry (idempotency_key, content_type, image encoding) are views for non-Python readers; on
decode meta_json is the truth, a mirror fills in a meta entry only when a foreign sender left
meta_json without it, and a mirror that contradicts meta is refused.

Anything that cannot be carried exactly is refused with ValueError/TypeError naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.blob_ref import BlobRef, FileBlobStore
from schnitzel_stream_ros.codec.compressed_image import (
    CompressedFrame,
    compress_frame,
    compressed_msg_to_frame,
)
from schnitzel_stream_ros.codec.image import (
    BuiltinImageConverter,
    ImageConverter,
    default_converter,
    frame_to_image_msg,
    image_msg_to_frame,
)
from schnitzel_stream_ros.codec.image_encodings import default_encoding
from schnitzel_stream_ros.codec.json_values import (
    DEFAULT_META_LIMIT_BYTES,
    check_json_depth,
    check_ros_string,
    decode_meta,
    dumps_json,
    encode_meta,
    loads_json,
)
from schnitzel_stream_ros.codec.message_builders import new_header, new_packet_msg
from schnitzel_stream_ros.codec.serialized_packet import PacketFields, read_packet_fields
from schnitzel_stream_ros.codec.timestamps import stamp_to_ts, ts_to_stamp
from schnitzel_stream_ros.document_limits import PAYLOAD_JSON_LIMITS, DocumentLimits
from schnitzel_stream_ros.packet import Kind, MetaKey, StreamPacket


class PayloadEncoding(StrEnum):
    """Values of StreamPacket.msg `payload_encoding` (its ENCODING_* constants)."""

    NONE = 'none'
    JSON = 'json'
    BYTES = 'bytes'
    IMAGE = 'image'
    COMPRESSED_IMAGE = 'compressed_image'
    BLOB_REF = 'blob_ref'


_ENCODINGS = frozenset(e.value for e in PayloadEncoding)
_BYTES_TYPES = (bytes, bytearray, memoryview)


def payload_encoding_of(packet: StreamPacket, *, compress_frames: bool = False) -> PayloadEncoding:
    """Which encoding a packet's payload travels in (see the module table)."""
    payload = packet.payload
    if payload is None:
        return PayloadEncoding.NONE
    if isinstance(payload, np.ndarray):
        return PayloadEncoding.COMPRESSED_IMAGE if compress_frames else PayloadEncoding.IMAGE
    if isinstance(payload, CompressedFrame):
        return PayloadEncoding.COMPRESSED_IMAGE
    if isinstance(payload, _BYTES_TYPES):
        return PayloadEncoding.BYTES
    if packet.kind == Kind.BYTES_REF:
        return PayloadEncoding.BLOB_REF
    return PayloadEncoding.JSON


@dataclass(frozen=True)
class PacketCodec:
    """Encoder/decoder with its settings; `encode_packet` / `decode_packet` use the defaults.

    meta_limit_bytes: largest meta_json accepted, both ways (nesting at most 64 levels).
    payload_json_limits: size and nesting of payload_json, both ways (default 4 MiB, 64 levels).
    image_compression: None (raw sensor_msgs/Image), 'jpeg' or 'png' for ndarray payloads.
    decompress_images: decode compressed_image payloads to ndarray (else CompressedFrame).
    copy_frames: decoded frames are private writable copies instead of read-only views.
    blob_store: when set, blob refs must lie inside its root (checked both ways).
    image_converter: force a converter (default: cv_bridge if it passes its self-check, else built-in).
    """

    meta_limit_bytes: int = DEFAULT_META_LIMIT_BYTES
    payload_json_limits: DocumentLimits = PAYLOAD_JSON_LIMITS
    image_compression: str | None = None
    jpeg_quality: int = 90
    png_level: int = 3
    decompress_images: bool = True
    copy_frames: bool = False
    blob_store: FileBlobStore | None = None
    image_converter: ImageConverter | None = None

    def __post_init__(self) -> None:
        if type(self.meta_limit_bytes) is not int or self.meta_limit_bytes < 2:
            raise ValueError(f'meta_limit_bytes: expected an int >= 2, got {self.meta_limit_bytes!r}')
        if self.image_compression not in (None, 'jpeg', 'png'):
            raise ValueError(f'image_compression: {self.image_compression!r} is not one of None, jpeg, png')

    # ------------------------------------------------------------------ encode
    def encode(self, packet: StreamPacket) -> StreamPacketMsg:
        """StreamPacket -> message; refuses what cannot come back exactly."""
        if not isinstance(packet, StreamPacket):
            raise TypeError(f'packet: expected a StreamPacket, got {type(packet).__name__}')
        if not packet.packet_id:
            raise ValueError('packet_id: must not be empty')
        check_ros_string(packet.packet_id, 'packet_id')
        check_ros_string(packet.kind, 'kind')
        check_ros_string(packet.source_id, 'source_id')
        meta = packet.meta
        header = new_header(ts_to_stamp(packet.ts, 'ts'), packet.source_id)
        encoding = payload_encoding_of(packet, compress_frames=self.image_compression is not None)
        # every value is validated above or below: the message is built without field checks
        msg = new_packet_msg(
            header,
            packet.packet_id,
            packet.kind,
            packet.source_id,
            check_ros_string(packet.idempotency_key, 'meta.idempotency_key'),
            encode_meta(meta, self.meta_limit_bytes),
            encoding.value,
        )
        payload = packet.payload
        if encoding is PayloadEncoding.JSON:
            msg.payload_json = check_json_depth(payload, dumps_json(payload, 'payload'), 'payload',
                                                self.payload_json_limits)
        elif encoding is PayloadEncoding.IMAGE:
            image_encoding = _meta_str(meta, MetaKey.IMAGE_ENCODING)
            msg.image = [frame_to_image_msg(payload, image_encoding, header, converter=self.image_converter)]
        elif encoding is PayloadEncoding.COMPRESSED_IMAGE:
            if isinstance(payload, CompressedFrame):
                msg.compressed_image = [payload.to_msg(header)]
            else:
                msg.compressed_image = [
                    compress_frame(
                        payload,
                        self.image_compression or 'jpeg',
                        encoding=_meta_str(meta, MetaKey.IMAGE_ENCODING),
                        jpeg_quality=self.jpeg_quality,
                        png_level=self.png_level,
                        header=header,
                    )
                ]
        elif encoding is PayloadEncoding.BYTES:
            # unchecked setter: array.array('B', bytes) is one memcpy
            msg.payload_bytes = payload if type(payload) is bytes else _contiguous_bytes(payload)
            msg.content_type = check_ros_string(
                _meta_str(meta, MetaKey.CONTENT_TYPE) or '', 'meta.content_type'
            )
        elif encoding is PayloadEncoding.BLOB_REF:
            ref = BlobRef.from_payload(payload, 'payload')
            if self.blob_store is not None:
                self.blob_store.resolve(ref, 'payload.ref.path')
            msg.blob_ref = [ref.to_msg()]
        return msg

    # ------------------------------------------------------------------ decode
    def decode(self, msg: StreamPacketMsg) -> StreamPacket:
        """Message -> StreamPacket; refuses inconsistent or unknown content, naming the field."""
        if not isinstance(msg, StreamPacketMsg):
            raise TypeError(f'msg: expected schnitzel_stream_msgs/StreamPacket, got {type(msg).__name__}')
        return self._decode_fields(msg)

    def decode_serialized(self, data: bytes) -> StreamPacket:
        """The bytes of a serialized message (what a `raw=True` subscription takes) -> StreamPacket,
        without a Python message in between (codec/serialized_packet.py: why); the same checks."""
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f'data: expected a serialized message, got {type(data).__name__}')
            data = bytes(data)
        fields = read_packet_fields(data)
        if fields is None or (fields.image and not self._reads_image_fields()):
            from rclpy.serialization import deserialize_message  # another encapsulation, cv_bridge

            try:
                msg = deserialize_message(data, StreamPacketMsg)
            except RuntimeError as exc:  # rclpy's RMWError: bytes that are no StreamPacket
                raise ValueError(f'serialized message: {exc}') from None
            return self.decode(msg)
        return self._decode_fields(fields)

    def _reads_image_fields(self) -> bool:
        """Whether the converter takes an image's fields as read from the bytes (the built-in one
        does; cv_bridge wants a sensor_msgs/Image)."""
        return isinstance(self.image_converter or default_converter(), BuiltinImageConverter)

    def _decode_fields(self, msg: StreamPacketMsg | PacketFields) -> StreamPacket:
        if not msg.packet_id:
            raise ValueError('packet_id: must not be empty')
        if not msg.kind:
            raise ValueError('kind: must not be empty')
        encoding = msg.payload_encoding
        if encoding not in _ENCODINGS:
            raise ValueError(
                f'payload_encoding: unknown encoding {encoding!r} (known: {", ".join(sorted(_ENCODINGS))})'
            )
        _check_unused_payload_fields(msg, encoding)
        ts = stamp_to_ts(msg.header.stamp, 'header.stamp')
        source_id = msg.source_id or msg.header.frame_id
        meta = decode_meta(msg.meta_json, self.meta_limit_bytes)
        _merge_mirror(meta, MetaKey.IDEMPOTENCY_KEY, msg.idempotency_key, 'idempotency_key', msg.packet_id)
        payload: Any = None
        if encoding == PayloadEncoding.JSON:
            if not msg.payload_json:
                raise ValueError('payload_json: empty, but payload_encoding is json')
            payload = loads_json(msg.payload_json, 'payload_json', self.payload_json_limits)
        elif encoding == PayloadEncoding.IMAGE:
            image = _single(msg.image, 'image')
            payload = image_msg_to_frame(
                image, field='image[0]', copy=self.copy_frames, converter=self.image_converter
            )
            channels = 1 if payload.ndim == 2 else payload.shape[2]
            implied = default_encoding(payload.dtype, channels)
            _merge_mirror(meta, MetaKey.IMAGE_ENCODING, image.encoding, 'image[0].encoding', implied)
        elif encoding == PayloadEncoding.COMPRESSED_IMAGE:
            compressed = _single(msg.compressed_image, 'compressed_image')
            if self.decompress_images:
                payload = compressed_msg_to_frame(compressed, field='compressed_image[0]')
                if self.copy_frames:
                    payload = np.array(payload, copy=True)
            else:
                payload = CompressedFrame.from_msg(compressed)
        elif encoding == PayloadEncoding.BYTES:
            payload = msg.payload_bytes.tobytes()
            if msg.content_type:
                _merge_mirror(meta, MetaKey.CONTENT_TYPE, msg.content_type, 'content_type')
        elif encoding == PayloadEncoding.BLOB_REF:
            ref = BlobRef.from_msg(_single(msg.blob_ref, 'blob_ref'), 'blob_ref[0]')
            if self.blob_store is not None:
                self.blob_store.resolve(ref, 'blob_ref[0].path')
            payload = ref.to_payload()
        return StreamPacket(msg.packet_id, ts, msg.kind, source_id, payload, meta)


def _contiguous_bytes(payload: bytearray | memoryview) -> bytes:
    try:
        return bytes(memoryview(payload).cast('B')) if isinstance(payload, memoryview) else bytes(payload)
    except (BufferError, TypeError, ValueError) as exc:
        raise ValueError(f'payload: bytes-like payload is not one contiguous buffer: {exc}') from exc


def _meta_str(meta: Any, key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f'meta.{key}: expected str, got {type(value).__name__}')
    return value


def _merge_mirror(meta: dict, key: str, mirrored: str, field: str, implied: str | None = None) -> None:
    """Reconcile a field that mirrors meta[key].

    `implied` is what the field holds when meta has no usable entry (packet_id for the
    idempotency key, the dtype's default for an image encoding). A foreign sender's field fills
    a missing entry; a field that contradicts meta is refused.
    """
    if not mirrored:
        return
    if key not in meta:
        if mirrored != implied:
            meta[key] = mirrored
        return
    current = meta[key]
    expected = current if isinstance(current, str) and current else implied
    if mirrored != expected:
        raise ValueError(f'{field}: {mirrored!r} contradicts meta.{key} = {current!r}')


def _single(items: list, field: str) -> Any:
    if len(items) != 1:
        raise ValueError(
            f'{field}: expected exactly one element for payload_encoding={field}, got {len(items)}'
        )
    return items[0]


def _check_unused_payload_fields(msg: StreamPacketMsg | PacketFields, encoding: str) -> None:
    """Exactly one payload field is used; data in another one means a confused sender."""
    if msg.payload_json and encoding != 'json':
        raise ValueError(f'payload_json: holds data, but payload_encoding is {encoding!r}')
    if len(msg.payload_bytes) and encoding != 'bytes':
        raise ValueError(f'payload_bytes: holds data, but payload_encoding is {encoding!r}')
    if msg.image and encoding != 'image':
        raise ValueError(f'image: holds data, but payload_encoding is {encoding!r}')
    if msg.compressed_image and encoding != 'compressed_image':
        raise ValueError(f'compressed_image: holds data, but payload_encoding is {encoding!r}')
    if msg.blob_ref and encoding != 'blob_ref':
        raise ValueError(f'blob_ref: holds data, but payload_encoding is {encoding!r}')


DEFAULT_CODEC = PacketCodec()


def encode_packet(packet: StreamPacket) -> StreamPacketMsg:
    """StreamPacket -> schnitzel_stream_msgs/StreamPacket with the default settings."""
    return DEFAULT_CODEC.encode(packet)


def decode_packet(msg: StreamPacketMsg) -> StreamPacket:
    """schnitzel_stream_msgs/StreamPacket -> StreamPacket with the default settings."""
    return DEFAULT_CODEC.decode(msg)


__all__ = [
    'DEFAULT_CODEC',
    'PacketCodec',
    'PayloadEncoding',
    'decode_packet',
    'encode_packet',
    'payload_encoding_of',
]
