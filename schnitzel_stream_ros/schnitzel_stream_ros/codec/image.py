"""numpy frame <-> sensor_msgs/Image without copying the pixels (a strided frame is compacted once).

Frames are the bulk of the traffic, so the conversion does as little as it can:
- encode: the message's `data` is a flat, read-only-safe `memoryview` of the frame's own bytes, and
  the message is built by filling its slots (codec/message_builders.py: the generated constructor
  and checking setters cost more than the rest of the conversion). Publishing reads `data` through
  the buffer protocol (the generated C conversion copies any buffer into the C message), so the one
  copy a publish needs is rclpy's own; an `array.array` copy here would be a second one. The frame
  must not be written to while the message is in use (frames in packets never are: packets are
  immutable once emitted). A strided frame is made contiguous first (one copy).
- decode: `np.ndarray` over the message's buffer (no copy unless rows are padded or the byte order
  is foreign). The result is read-only, because a decoded packet may be shared by several nodes;
  pass `copy=True` for a private, writable frame.

Results are those of cv_bridge (`cv2_to_imgmsg(frame, encoding)` / `imgmsg_to_cv2(msg,
'passthrough')`): same height, width, step (= width * channels * itemsize), is_bigendian, data,
and the same decoded dtype, shape (2-D for one channel) and values. When cv_bridge is importable
and passes a self-check against the built-in converter, `select_converter()` picks it; otherwise
the built-in one (cv_bridge is not installable next to numpy 2 from PyPI).
"""

from __future__ import annotations

import array
import logging
import os
import sys
from typing import Protocol

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from schnitzel_stream_ros.codec.image_encodings import (
    CHANNEL_ORDERS,
    PixelFormat,
    default_encoding,
    pixel_format,
)
from schnitzel_stream_ros.codec.message_builders import new_image

_log = logging.getLogger(__name__)
_NATIVE_BIG_ENDIAN = sys.byteorder == 'big'


def frame_layout(frame: object, field: str) -> tuple[np.ndarray, int]:
    """Check that `frame` is an image-shaped ndarray; return it and its channel count."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f'{field}: expected a numpy.ndarray frame, got {type(frame).__name__}')
    if frame.ndim == 2:
        channels = 1
    elif frame.ndim == 3 and 1 <= frame.shape[2] <= 4:
        channels = frame.shape[2]
    else:
        raise ValueError(
            f'{field}: shape {frame.shape} is not an image (height x width, or height x width x 1-4 channels)'
        )
    if frame.size == 0:
        raise ValueError(f'{field}: 0-size frame (shape {frame.shape}) cannot be sent')
    return frame, channels


def resolve_encoding(frame: np.ndarray, channels: int, encoding: str | None, field: str) -> str:
    """The encoding to send `frame` with: the one asked for (checked), or the default."""
    if encoding is None:
        chosen = default_encoding(frame.dtype, channels)
        if chosen is None:
            raise ValueError(
                f'{field}: dtype {frame.dtype} has no sensor_msgs/Image encoding '
                '(uint8, int8, uint16, int16, int32, float32, float64)'
            )
        return chosen
    wanted = pixel_format(encoding, f'{field} encoding')
    if wanted.dtype != frame.dtype.newbyteorder('=') or wanted.channels != channels:
        raise ValueError(
            f'{field}: encoding {encoding!r} needs {wanted.describe()}, '
            f'the frame is {frame.dtype.name} with {channels} channel{"s" if channels > 1 else ""}'
        )
    return encoding


def _is_big_endian(dtype: np.dtype) -> bool:
    order = dtype.byteorder
    return order == '>' or (order == '=' and _NATIVE_BIG_ENDIAN)


def new_frame(shape: tuple[int, ...], dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """A zeroed, writable frame whose memory is an array.array('B'), like a received frame's.

    For sources that fill frames themselves (e.g. `cv2.VideoCapture.read(frame)` writes into the
    array it is given). Once the frame is in a packet, it must not be written to again. (Every
    C-contiguous frame encodes without a copy; this one also has the layout of a decoded frame.)
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes <= 0:
        raise ValueError(f'shape: {shape} holds no pixels')
    return np.frombuffer(array.array('B', b'\x00') * nbytes, dtype=dtype).reshape(shape)


def backing_array(frame: np.ndarray) -> array.array | None:
    """The array.array('B') that holds exactly this frame's bytes, if there is one.

    True for frames made by `new_frame` and for frames decoded from a message object rclpy made
    (its `data` is an array.array): such a frame is a view of the message, not a copy of it. Frames
    a container's DDS input decodes are views of the received bytes instead (no array.array).
    """
    base: object = frame
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if (
        isinstance(base, array.array)
        and base.typecode == 'B'
        and frame.flags.c_contiguous
        and len(base) == frame.nbytes
        and base.buffer_info()[0] == frame.__array_interface__['data'][0]
    ):
        return base
    return None


class ImageConverter(Protocol):
    """Turns frames into sensor_msgs/Image and back. Inputs are validated before it is called."""

    name: str

    def to_msg(self, frame: np.ndarray, encoding: str, header: Header | None) -> Image: ...

    def to_array(self, msg: Image, fmt: PixelFormat) -> np.ndarray: ...


class BuiltinImageConverter:
    """The converter of this package: no copy out (publishing makes the one copy), none in."""

    name = 'builtin'

    def to_msg(self, frame: np.ndarray, encoding: str, header: Header | None) -> Image:
        if not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame)  # a strided frame: the one copy
        height = frame.shape[0]
        dtype = frame.dtype
        # the frame's own bytes, flat: rclpy's publish copies them into the C message (module doc)
        data = memoryview(frame).cast('B') if dtype.isnative else memoryview(frame.reshape(-1).view(np.uint8))
        # every field is checked above (frame_layout, resolve_encoding): built without field checks
        return new_image(
            header if header is not None else Header(),
            height,
            frame.shape[1],
            encoding,
            1 if _is_big_endian(dtype) else 0,
            frame.nbytes // height,
            data,
        )

    def to_array(self, msg: Image, fmt: PixelFormat) -> np.ndarray:
        dtype = fmt.dtype.newbyteorder('>' if msg.is_bigendian else '<')
        itemsize = dtype.itemsize
        height, width, channels = msg.height, msg.width, fmt.channels
        shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
        strides: tuple[int, ...] = (
            (msg.step, itemsize * channels) if channels == 1 else (msg.step, itemsize * channels, itemsize)
        )
        frame = np.ndarray(shape, dtype=dtype, buffer=msg.data, strides=strides)
        if msg.step != width * channels * itemsize:
            frame = np.ascontiguousarray(frame)  # padded rows: one compacting copy
        if not frame.dtype.isnative:
            frame = frame.astype(frame.dtype.newbyteorder('='))  # foreign byte order: native values
        return frame


class CvBridgeImageConverter:
    """cv_bridge, where a ROS install provides it. Only chosen after a self-check (see module doc)."""

    name = 'cv_bridge'

    def __init__(self) -> None:
        from cv_bridge import CvBridge  # optional dependency: imported only when wanted

        self._bridge = CvBridge()

    def to_msg(self, frame: np.ndarray, encoding: str, header: Header | None) -> Image:
        if not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame)
        return self._bridge.cv2_to_imgmsg(frame, encoding=encoding, header=header)

    def to_array(self, msg: Image, fmt: PixelFormat) -> np.ndarray:
        return self._bridge.imgmsg_to_cv2(msg, desired_encoding='passthrough')


def _self_check(candidate: ImageConverter, reference: ImageConverter) -> str | None:
    """None when `candidate` gives the reference's results on a few small frames, else why not."""
    rng = np.random.default_rng(7)
    samples = [
        (rng.integers(0, 256, (3, 5, 3), dtype=np.uint8), 'bgr8'),
        (rng.integers(0, 256, (3, 5), dtype=np.uint8), 'mono8'),
        (rng.integers(0, 65536, (2, 3), dtype=np.uint16), 'mono16'),
        (rng.random((2, 3), dtype=np.float32), '32FC1'),
        (rng.integers(0, 256, (2, 3, 4), dtype=np.uint8), 'rgba8'),
    ]
    for frame, encoding in samples:
        try:
            got, want = candidate.to_msg(frame, encoding, None), reference.to_msg(frame, encoding, None)
            fields = ('height', 'width', 'encoding', 'is_bigendian', 'step')
            if any(getattr(got, f) != getattr(want, f) for f in fields) or bytes(got.data) != bytes(
                want.data
            ):
                return f'{encoding}: message differs from the built-in converter'
            fmt = pixel_format(encoding, 'self-check')
            back = candidate.to_array(want, fmt)
            if back.dtype != frame.dtype or back.shape != frame.shape or not np.array_equal(back, frame):
                return f'{encoding}: decoded frame differs from the built-in converter'
        except Exception as exc:  # a broken optional library must not take the codec down
            return f'{encoding}: {type(exc).__name__}: {exc}'
    return None


_BUILTIN = BuiltinImageConverter()
_selected: ImageConverter | None = None


def select_converter(preference: str | None = None) -> ImageConverter:
    """The converter to use: `preference` or $SCHNITZEL_STREAM_IMAGE_CONVERTER (auto|builtin|cv_bridge).

    auto (default) takes cv_bridge when it imports and passes the self-check, else the built-in.
    """
    choice = preference or os.environ.get('SCHNITZEL_STREAM_IMAGE_CONVERTER', 'auto')
    if choice not in ('auto', 'builtin', 'cv_bridge'):
        raise ValueError(f'image converter: {choice!r} is not one of auto, builtin, cv_bridge')
    if choice == 'builtin':
        return _BUILTIN
    try:
        bridge = CvBridgeImageConverter()
    except Exception as exc:
        if choice == 'cv_bridge':
            raise RuntimeError(f'image converter: cv_bridge was asked for but does not load: {exc}') from exc
        return _BUILTIN
    problem = _self_check(bridge, _BUILTIN)
    if problem is None:
        return bridge
    if choice == 'cv_bridge':
        raise RuntimeError(f'image converter: cv_bridge fails the self-check: {problem}')
    _log.warning('cv_bridge loads but fails the self-check (%s): using the built-in image converter', problem)
    return _BUILTIN


def default_converter() -> ImageConverter:
    """The process-wide converter, chosen once on first use."""
    global _selected
    if _selected is None:
        _selected = select_converter()
    return _selected


def frame_to_image_msg(
    frame: np.ndarray,
    encoding: str | None = None,
    header: Header | None = None,
    *,
    field: str = 'payload',
    converter: ImageConverter | None = None,
) -> Image:
    """A numpy frame as sensor_msgs/Image (encoding: given and checked, or mono8/bgr8/bgra8/mono16/...)."""
    frame, channels = frame_layout(frame, field)
    chosen = resolve_encoding(frame, channels, encoding, field)
    return (converter or default_converter()).to_msg(frame, chosen, header)


def check_image_msg(msg: Image, field: str) -> PixelFormat:
    """Refuse a sensor_msgs/Image whose size fields and data disagree (before any byte is read)."""
    fmt = pixel_format(msg.encoding, f'{field}.encoding')
    if msg.height == 0 or msg.width == 0:
        raise ValueError(f'{field}: 0-size image ({msg.height} x {msg.width}) is refused')
    row_bytes = msg.width * fmt.channels * fmt.dtype.itemsize
    if msg.step < row_bytes:
        raise ValueError(
            f'{field}.step: {msg.step} is less than width * channels * bytes per value = {row_bytes} '
            f'({msg.width} x {fmt.channels} x {fmt.dtype.itemsize}, encoding {msg.encoding})'
        )
    if msg.step % fmt.dtype.itemsize:
        raise ValueError(
            f'{field}.step: {msg.step} is not a multiple of {fmt.dtype.itemsize} bytes per value'
        )
    expected = msg.step * msg.height
    if len(msg.data) != expected:
        raise ValueError(
            f'{field}.data: {len(msg.data)} bytes, but step * height = {msg.step} * {msg.height} = {expected}'
        )
    return fmt


def image_msg_to_frame(
    msg: Image,
    *,
    field: str = 'image',
    copy: bool = False,
    converter: ImageConverter | None = None,
) -> np.ndarray:
    """sensor_msgs/Image -> numpy frame (H x W for one channel, else H x W x C), values as sent.

    Without `copy` the frame is a read-only view of the message's buffer where the layout allows.
    """
    fmt = check_image_msg(msg, field)
    frame = (converter or default_converter()).to_array(msg, fmt)
    if not frame.flags.aligned:
        # 8-byte values at a 4-aligned offset of received bytes (codec/serialized_packet.py): one
        # aligned copy, as numpy and OpenCV expect; 1-, 2- and 4-byte values are always aligned there
        frame = np.array(frame)
    if copy:
        return np.array(frame, copy=True)
    if frame.flags.writeable:
        frame = frame.view()  # a new array object: the converter's own result stays untouched
        frame.flags.writeable = False
    return frame


def convert_channel_order(frame: np.ndarray, source: str, target: str, field: str) -> np.ndarray:
    """Exact reorderings between bgr/rgb(/a) encodings of the same depth (e.g. rgb8 -> bgr8).

    Only permutations: anything that would compute new values (colour to mono, dropping alpha)
    is refused rather than done approximately.
    """
    if source == target:
        return frame
    src, dst = CHANNEL_ORDERS.get(source), CHANNEL_ORDERS.get(target)
    if src is None or dst is None or src[1] != dst[1] or len(src[0]) != len(dst[0]):
        raise ValueError(f'{field}: cannot convert encoding {source!r} to {target!r} exactly')
    order = [src[0].index(channel) for channel in dst[0]]
    return np.ascontiguousarray(frame[..., order])
