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
#: Most pixels a received JPEG/PNG may declare (8192 x 8192): its header is read before decoding,
#: so a small message that claims a huge image never makes OpenCV allocate it
MAX_DECODED_PIXELS = 1 << 26
#: JPEG segments looked through for the frame header (real files have a few dozen)
_MAX_JPEG_SEGMENTS = 1024
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
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


def declared_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's frame header (SOFn), without decoding; None
    when the bytes are neither (OpenCV then decides). ValueError for a JPEG without a frame header
    in its first _MAX_JPEG_SEGMENTS segments."""
    head = bytes(data[:24])
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b'IHDR':
        return int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    if not head.startswith(b'\xff\xd8'):
        return None
    view, i, end = memoryview(data).cast('B'), 2, len(data)
    for _ in range(_MAX_JPEG_SEGMENTS):
        if i + 4 > end or view[i] != 0xFF:
            return None  # truncated or not a marker: OpenCV refuses it
        marker = view[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, standalone markers
            i += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: P, Y, X
            if i + 9 > end:
                return None
            return (view[i + 7] << 8) | view[i + 8], (view[i + 5] << 8) | view[i + 6]
        i += 2 + ((view[i + 2] << 8) | view[i + 3])  # a segment: its length counts itself (>= 2)
    raise ValueError(f'no frame header in the first {_MAX_JPEG_SEGMENTS} JPEG segments')


def decompress(format_text: str, data: bytes | array.array | memoryview, field: str) -> np.ndarray:
    """JPEG/PNG bytes -> read-only frame in the original encoding's channel order."""
    source, target = _parse_format(format_text, field)
    if len(data) == 0:
        raise ValueError(f'{field}.data: empty compressed image')
    try:
        size = declared_size(data)
    except ValueError as exc:
        raise ValueError(f'{field}.data: {exc}') from None
    if size is not None and size[0] * size[1] > MAX_DECODED_PIXELS:
        raise ValueError(
            f'{field}.data: declares {size[0]} x {size[1]} pixels, more than the {MAX_DECODED_PIXELS:,} '
            'a received image may hold'
        )
    cv2 = _cv2()
    try:
        frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. a header that claims more pixels than OpenCV allows
        raise ValueError(f'{field}.data: not a decodable JPEG/PNG image: {str(exc).strip()[-160:]}') from None
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
