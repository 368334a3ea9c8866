"""numpy frame <-> sensor_msgs/CompressedImage (JPEG/PNG), an opt-in for links where bytes cost.

A raw 640x480 BGR frame is 900 KiB; as JPEG it is ~30-60 KiB. Compression costs CPU (milliseconds
per frame) and JPEG loses detail, so nothing compresses unless asked to (PacketCodec(
image_compression='jpeg'|'png')). PNG is lossless.

The `format` field follows ROS image_transport's compressed plugin: `"<encoding>; <jpeg|png>
compressed <bgr8|mono8|...>"`, so `/…/compressed` topics interoperate with ROS image tools; plain
`"jpeg"`/`"png"` (what many cameras send) is read too. OpenCV (opencv-python-headless) does the
work; it is imported on first use only.

`CompressedFrame` carries already-compressed bytes through a graph untouched (a ROS camera's
JPEG can be stored or forwarded without a decode/encode cycle).
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from schnitzel_stream_ros.codec.image import convert_channel_order, frame_layout, resolve_encoding
from schnitzel_stream_ros.codec.image_encodings import CHANNEL_ORDERS, pixel_format
from schnitzel_stream_ros.codec.json_values import check_ros_string

#: Formats we write, and the encodings each can hold without loss of layout.
COMPRESSION_FORMATS: dict[str, frozenset[str]] = {
    'jpeg': frozenset({'mono8', 'bgr8', 'rgb8', '8UC1', '8UC3'}),
    'png': frozenset(
        {
            'mono8',
            'bgr8',
            'rgb8',
            'bgra8',
            'rgba8',
            '8UC1',
            '8UC3',
            '8UC4',
            'mono16',
            'bgr16',
            'rgb16',
            'bgra16',
            'rgba16',
            '16UC1',
            '16UC3',
            '16UC4',
        }
    ),
}
_EXTENSION = {'jpeg': '.jpg', 'png': '.png'}
_FORMAT_ALIASES = {'jpeg': 'jpeg', 'jpg': 'jpeg', 'png': 'png'}


def _cv2() -> Any:
    try:
        import cv2  # heavy: imported on first use only
    except ImportError as exc:  # pragma: no cover - it is a pinned dependency
        raise RuntimeError(
            'image compression needs OpenCV: pip install opencv-python-headless (see requirements/python.txt)'
        ) from exc
    return cv2


@dataclass(frozen=True, slots=True)
class CompressedFrame:
    """An already-compressed frame as a packet payload: `format` as in CompressedImage, JPEG/PNG bytes."""

    format: str
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.format, str) or not self.format:
            raise ValueError('payload.format: a CompressedFrame needs a format (e.g. "jpeg")')
        check_ros_string(self.format, 'payload.format')
        if not isinstance(self.data, bytes):
            raise TypeError(f'payload.data: expected bytes, got {type(self.data).__name__}')

    def to_msg(self, header: Header | None = None) -> CompressedImage:
        msg = CompressedImage(check_fields=True)
        if header is not None:
            msg.header = header
        msg.format = self.format
        data = array.array('B')
        data.frombytes(self.data)
        msg.data = data
        return msg

    @classmethod
    def from_msg(cls, msg: CompressedImage) -> CompressedFrame:
        return cls(msg.format, msg.data.tobytes())

    def to_frame(self, field: str = 'payload') -> np.ndarray:
        return decompress(self.format, self.data, field)


def _target_encoding(encoding: str) -> str:
    """The channel order the compressed image holds: OpenCV's (bgr) for rgb input."""
    order = CHANNEL_ORDERS.get(encoding)
    if order is None or order[0].startswith('b'):
        return encoding
    return order[0].replace('rgb', 'bgr') + order[1]


def compress_frame(
    frame: np.ndarray,
    fmt: str = 'jpeg',
    *,
    encoding: str | None = None,
    jpeg_quality: int = 90,
    png_level: int = 3,
    header: Header | None = None,
    field: str = 'payload',
) -> CompressedImage:
    """Compress a frame into sensor_msgs/CompressedImage (rgb input is stored as bgr, as ROS tools expect)."""
    return compress_to_payload(
        frame, fmt, encoding=encoding, jpeg_quality=jpeg_quality, png_level=png_level, field=field
    ).to_msg(header)


def compress_to_payload(
    frame: np.ndarray,
    fmt: str = 'jpeg',
    *,
    encoding: str | None = None,
    jpeg_quality: int = 90,
    png_level: int = 3,
    field: str = 'payload',
) -> CompressedFrame:
    """Compress a frame into a CompressedFrame payload (what `compress_frame` puts in a message)."""
    container = _FORMAT_ALIASES.get(fmt)
    if container is None:
        raise ValueError(f'image_compression: {fmt!r} is not one of jpeg, png')
    if not 0 <= jpeg_quality <= 100:
        raise ValueError(f'jpeg_quality: {jpeg_quality} is not in 0..100')
    if not 0 <= png_level <= 9:
        raise ValueError(f'png_level: {png_level} is not in 0..9')
    frame, channels = frame_layout(frame, field)
    chosen = resolve_encoding(frame, channels, encoding, field)
    if chosen not in COMPRESSION_FORMATS[container]:
        raise ValueError(
            f'{field}: {container} cannot hold encoding {chosen!r} '
            f'(it holds {", ".join(sorted(COMPRESSION_FORMATS[container]))})'
        )
    target = _target_encoding(chosen)
    pixels = convert_channel_order(frame, chosen, target, field) if target != chosen else frame
    cv2 = _cv2()
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        if container == 'jpeg'
        else [cv2.IMWRITE_PNG_COMPRESSION, png_level]
    )
    ok, encoded = cv2.imencode(_EXTENSION[container], np.ascontiguousarray(pixels), params)
    if not ok:
        raise ValueError(f'{field}: OpenCV could not encode the frame as {container}')
    return CompressedFrame(f'{chosen}; {container} compressed {target}', encoded.tobytes())


def _parse_format(text: str, field: str) -> tuple[str | None, str | None]:
    """'bgr8; jpeg compressed bgr8' -> ('bgr8', 'bgr8'); 'jpeg' -> (None, None)."""
    plain = text.strip().lower()
    if plain in _FORMAT_ALIASES:
        return None, None
    source, sep, rest = text.partition(';')
    words = rest.split()
    if sep and len(words) == 3 and words[0].lower() in _FORMAT_ALIASES and words[1] == 'compressed':
        return source.strip(), words[2]
    raise ValueError(
        f'{field}.format: {text!r} is not a JPEG/PNG format ("jpeg", "png" or "<enc>; jpeg compressed <enc>")'
    )


def decompress(format_text: str, data: bytes | array.array | memoryview, field: str) -> np.ndarray:
    """JPEG/PNG bytes -> read-only frame in the original encoding's channel order."""
    source, target = _parse_format(format_text, field)
    if len(data) == 0:
        raise ValueError(f'{field}.data: empty compressed image')
    cv2 = _cv2()
    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if frame is None:
        raise ValueError(f'{field}.data: not a decodable JPEG/PNG image ({len(data)} bytes)')
    if source is not None and target is not None:
        fmt = pixel_format(source, f'{field}.format')
        channels = 1 if frame.ndim == 2 else frame.shape[2]
        if frame.dtype != fmt.dtype or channels != fmt.channels:
            raise ValueError(
                f'{field}.format: says {source!r} ({fmt.describe()}), the image holds '
                f'{frame.dtype.name} with {channels} channels'
            )
        if source != target:
            frame = convert_channel_order(frame, target, source, field)
    frame.flags.writeable = False
    return frame


def compressed_msg_to_frame(msg: CompressedImage, *, field: str = 'compressed_image') -> np.ndarray:
    """sensor_msgs/CompressedImage -> numpy frame (see `decompress`)."""
    return decompress(msg.format, msg.data, field)
