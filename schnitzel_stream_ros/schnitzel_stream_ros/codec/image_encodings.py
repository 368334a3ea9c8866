"""sensor_msgs/Image encodings as data: which numpy dtype and channel count each one means.

The names are the ones of ROS's `sensor_msgs/image_encodings.hpp` (colour, Bayer, YUV and the
generic `<bits><U|S|F>C<n>` family), so frames we publish show correctly in ROS image tools and
frames from ROS cameras decode here. Kept apart from the converter: it is a table, not behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PixelFormat:
    """What one sensor_msgs/Image encoding stands for."""

    dtype: np.dtype
    channels: int

    def describe(self) -> str:
        return f'{self.dtype.name} with {self.channels} channel{"s" if self.channels > 1 else ""}'


def _fmt(dtype: type | str, channels: int) -> PixelFormat:
    return PixelFormat(np.dtype(dtype), channels)


_NAMED: dict[str, PixelFormat] = {
    'mono8': _fmt(np.uint8, 1),
    'mono16': _fmt(np.uint16, 1),
    'bgr8': _fmt(np.uint8, 3),
    'rgb8': _fmt(np.uint8, 3),
    'bgra8': _fmt(np.uint8, 4),
    'rgba8': _fmt(np.uint8, 4),
    'bgr16': _fmt(np.uint16, 3),
    'rgb16': _fmt(np.uint16, 3),
    'bgra16': _fmt(np.uint16, 4),
    'rgba16': _fmt(np.uint16, 4),
    'yuv422': _fmt(np.uint8, 2),
    'yuv422_yuy2': _fmt(np.uint8, 2),
    'uyvy': _fmt(np.uint8, 2),
    'yuyv': _fmt(np.uint8, 2),
}
for _pattern in ('rggb', 'bggr', 'gbrg', 'grbg'):
    _NAMED[f'bayer_{_pattern}8'] = _fmt(np.uint8, 1)
    _NAMED[f'bayer_{_pattern}16'] = _fmt(np.uint16, 1)

_GENERIC_DEPTHS: dict[str, type] = {
    '8U': np.uint8,
    '8S': np.int8,
    '16U': np.uint16,
    '16S': np.int16,
    '32S': np.int32,
    '32F': np.float32,
    '64F': np.float64,
}

#: Every encoding we read and write -> its pixel format.
IMAGE_ENCODINGS: dict[str, PixelFormat] = dict(_NAMED)
for _depth, _dtype in _GENERIC_DEPTHS.items():
    for _channels in (1, 2, 3, 4):
        IMAGE_ENCODINGS[f'{_depth}C{_channels}'] = _fmt(_dtype, _channels)

_DEFAULT_NAMED: dict[tuple[str, int], str] = {
    ('uint8', 1): 'mono8',
    ('uint8', 3): 'bgr8',  # OpenCV's channel order, what capture and detectors produce
    ('uint8', 4): 'bgra8',
    ('uint16', 1): 'mono16',
}
_DEPTH_OF_DTYPE: dict[str, str] = {np.dtype(t).name: depth for depth, t in _GENERIC_DEPTHS.items()}

#: Channel orders that differ from another encoding only by a permutation (exact conversions).
CHANNEL_ORDERS: dict[str, tuple[str, str]] = {
    'bgr8': ('bgr', '8'),
    'rgb8': ('rgb', '8'),
    'bgra8': ('bgra', '8'),
    'rgba8': ('rgba', '8'),
    'bgr16': ('bgr', '16'),
    'rgb16': ('rgb', '16'),
    'bgra16': ('bgra', '16'),
    'rgba16': ('rgba', '16'),
}


_DEFAULT_CACHE: dict[tuple[np.dtype, int], str | None] = {}


def default_encoding(dtype: np.dtype, channels: int) -> str | None:
    """The encoding a frame gets when none is asked for (mono8/bgr8/bgra8/mono16, else generic)."""
    key = (dtype, channels)
    try:
        return _DEFAULT_CACHE[key]
    except KeyError:
        found = _DEFAULT_CACHE[key] = _default_encoding(dtype, channels)
        return found


def _default_encoding(dtype: np.dtype, channels: int) -> str | None:
    name = np.dtype(dtype).newbyteorder('=').name
    named = _DEFAULT_NAMED.get((name, channels))
    if named:
        return named
    depth = _DEPTH_OF_DTYPE.get(name)
    if depth is None or not 1 <= channels <= 4:
        return None
    return f'{depth}C{channels}'


def pixel_format(encoding: str, field: str) -> PixelFormat:
    """Look an encoding up; unknown names are refused with the field that held them."""
    found = IMAGE_ENCODINGS.get(encoding)
    if found is None:
        raise ValueError(
            f'{field}: unknown image encoding {encoding!r} '
            '(known: mono8, mono16, bgr8, rgb8, bgra8, rgba8, bgr16, rgb16, bgra16, rgba16, '
            'bayer_*, yuv422, <8U|8S|16U|16S|32S|32F|64F>C<1-4>)'
        )
    return found
