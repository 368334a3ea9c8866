"""JPEG/PNG compression (opt-in): PNG exact, JPEG close, ROS format strings, channel order, refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from schnitzel_stream_ros.codec import compressed_image
from schnitzel_stream_ros.codec.compressed_image import (
    CompressedFrame,
    compress_frame,
    compressed_msg_to_frame,
    declared_size,
    decompress,
)


def _smooth_frame(height=48, width=64, channels=3, dtype=np.uint8):
    """A gradient with some texture: what JPEG is made for (noise would be its worst case)."""
    y, x = np.mgrid[0:height, 0:width]
    top = np.iinfo(dtype).max
    planes = [(x * top // width), (y * top // height), ((x + y) * top // (width + height))][:channels]
    planes += [np.full_like(x, top // 2)] * (channels - len(planes))
    frame = np.stack(planes, axis=-1).astype(dtype)
    return frame[..., 0] if channels == 1 else frame


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(
    ('channels', 'dtype', 'encoding'),
    [
        (1, np.uint8, 'mono8'),
        (3, np.uint8, 'bgr8'),
        (4, np.uint8, 'bgra8'),
        (1, np.uint16, 'mono16'),
        (3, np.uint16, '16UC3'),
        (3, np.uint8, 'rgb8'),
        (4, np.uint16, 'rgba16'),
    ],
)
def test_png_is_exact(channels, dtype, encoding):
    frame = _smooth_frame(channels=channels, dtype=dtype)
    rng = np.random.default_rng(1)
    frame = (frame ^ rng.integers(0, 4, frame.shape).astype(dtype)).astype(dtype)  # some noise too
    msg = compress_frame(frame, 'png', encoding=encoding)
    back = compressed_msg_to_frame(msg)
    assert back.dtype == frame.dtype and back.shape == frame.shape
    assert np.array_equal(back, frame)
    assert not back.flags.writeable


def test_jpeg_is_close_and_much_smaller():
    frame = _smooth_frame(480, 640)
    msg = compress_frame(frame, 'jpeg', jpeg_quality=90)
    assert msg.format == 'bgr8; jpeg compressed bgr8'
    assert len(msg.data) < frame.nbytes / 10
    back = compressed_msg_to_frame(msg)
    assert back.shape == frame.shape
    assert _psnr(back, frame) > 35


def test_rgb_frames_are_stored_bgr_like_ros_tools_expect_and_come_back_rgb():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # pure red in RGB order
    msg = compress_frame(rgb, 'png', encoding='rgb8')
    assert msg.format == 'rgb8; png compressed bgr8'
    stored = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert stored[0, 0].tolist() == [0, 0, 255]  # BGR order inside the PNG: red is last
    assert np.array_equal(compressed_msg_to_frame(msg), rgb)


def test_plain_format_names_from_cameras_are_read():
    frame = _smooth_frame(channels=3)
    ok, png = cv2.imencode('.png', frame)
    assert ok
    for name in ('png', 'PNG', 'jpeg', 'jpg'):  # the container is detected from the bytes
        assert np.array_equal(decompress(name, png.tobytes(), 'compressed_image'), frame)


def test_compressed_frame_passes_bytes_through_untouched():
    frame = _smooth_frame()
    msg = compress_frame(frame, 'jpeg')
    passthrough = CompressedFrame.from_msg(msg)
    again = passthrough.to_msg()
    assert (again.format, bytes(again.data)) == (msg.format, bytes(msg.data))
    assert np.array_equal(passthrough.to_frame(), compressed_msg_to_frame(msg))


@pytest.mark.parametrize(
    ('frame', 'kwargs', 'message'),
    [
        (np.zeros((4, 4, 3), np.uint8), {'fmt': 'webp'}, "image_compression: 'webp' is not one of jpeg, png"),
        (np.zeros((4, 4), np.uint16), {'fmt': 'jpeg'}, "payload: jpeg cannot hold encoding 'mono16'"),
        (np.zeros((4, 4, 4), np.uint8), {'fmt': 'jpeg'}, "payload: jpeg cannot hold encoding 'bgra8'"),
        (np.zeros((4, 4), np.float32), {'fmt': 'png'}, "payload: png cannot hold encoding '32FC1'"),
        (np.zeros((0, 4, 3), np.uint8), {'fmt': 'png'}, 'payload: 0-size frame'),
        (np.zeros((4, 4, 3), np.uint8), {'fmt': 'jpeg', 'jpeg_quality': 101}, 'jpeg_quality: 101'),
        (np.zeros((4, 4, 3), np.uint8), {'fmt': 'png', 'png_level': 10}, 'png_level: 10'),
    ],
)
def test_uncompressible_frames_are_refused_by_name(frame, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compress_frame(frame, **kwargs)


@pytest.mark.parametrize(
    ('fmt', 'data', 'message'),
    [
        ('jpeg', b'', 'compressed_image.data: empty compressed image'),
        (
            'jpeg',
            b'not an image at all',
            r'compressed_image.data: not a decodable JPEG/PNG image \(19 bytes\)',
        ),
        ('16UC1; compressedDepth png', b'x', "compressed_image.format: '16UC1; compressedDepth png' is not"),
        ('tiff', b'x', "compressed_image.format: 'tiff' is not"),
    ],
)
def test_undecodable_messages_are_refused_by_name(fmt, data, message):
    with pytest.raises(ValueError, match=message):
        compressed_msg_to_frame(CompressedImage(format=fmt, data=data))


def test_format_that_contradicts_the_image_is_refused():
    _, png = cv2.imencode('.png', np.zeros((4, 4), np.uint8))
    msg = CompressedImage(format='bgr8; png compressed bgr8', data=png.tobytes())
    with pytest.raises(ValueError, match=r"compressed_image.format: says 'bgr8' \(uint8 with 3 channels\)"):
        compressed_msg_to_frame(msg)


def test_compressed_frame_checks_its_fields():
    with pytest.raises(ValueError, match=r'payload.format'):
        CompressedFrame('', b'x')
    with pytest.raises(TypeError, match=r'payload.data: expected bytes'):
        CompressedFrame('jpeg', bytearray(b'x'))  # type: ignore[arg-type]


def _with_declared_size(ext: str, width: int, height: int) -> bytes:
    """A small real image whose header claims width x height (a decompression bomb's shape)."""
    data = bytearray(cv2.imencode(ext, np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    if ext == '.png':
        data[16:24] = width.to_bytes(4, 'big') + height.to_bytes(4, 'big')
    else:
        at = bytes(data).index(b'\xff\xc0')  # baseline frame header: P, Y (height), X (width)
        data[at + 5:at + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


@pytest.mark.parametrize('ext', ['.png', '.jpg'])
def test_the_declared_size_is_read_before_decoding_and_a_huge_one_refused(ext):
    real = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))[1].tobytes()
    assert declared_size(real) == (53, 37)
    assert decompress(ext[1:], real, 'image').shape == (37, 53, 3)
    side = 32767 if ext == '.jpg' else 40000  # JPEG sizes are 16-bit
    bomb = _with_declared_size(ext, side, side)
    with pytest.raises(ValueError, match=rf'compressed_image\[0\].data: declares {side} x {side} pixels'):
        decompress(ext[1:], bomb, 'compressed_image[0]')
    assert declared_size(b'GIF89a....') is None  # neither: OpenCV decides (and refuses it)


def test_opencv_errors_are_refusals_by_name(monkeypatch):
    monkeypatch.setattr(compressed_image, 'MAX_DECODED_PIXELS', 1 << 40)  # past our check: OpenCV's own
    with pytest.raises(ValueError, match=r'compressed_image\[0\].data: not a decodable JPEG/PNG image'):
        decompress('png', _with_declared_size('.png', 40000, 40000), 'compressed_image[0]')


def test_a_jpeg_without_a_frame_header_in_its_first_segments_is_refused():
    comments = b''.join(b'\xff\xfe\x00\x02' for _ in range(2000))  # 2,000 empty comment segments
    with pytest.raises(ValueError, match=r'image.data: no frame header in the first 1024 JPEG segments'):
        decompress('jpeg', b'\xff\xd8' + comments + b'\xff\xd9', 'image')


@pytest.mark.parametrize('ext', ['.png', '.jpg'])
def test_mutated_images_decode_or_are_refused_by_name(ext):
    """Seeded random mutations and truncations of real JPEG/PNG bytes (the header scan included): a
    frame or a ValueError naming the field, nothing else, and never more pixels than the bound."""
    rng = np.random.default_rng(7 if ext == '.png' else 8)
    real = cv2.imencode(ext, _smooth_frame(24, 32))[1].tobytes()
    outcomes = {'frame': 0, 'refused': 0}
    for _ in range(300):
        data = bytearray(real)
        span = 64 if rng.random() < 0.7 else len(data)  # mostly the headers, where the sizes are
        for at in rng.integers(0, min(len(data), span), rng.integers(1, 4)):
            data[at] = rng.integers(0, 256)
        if rng.random() < 0.3:  # cut short, often inside a header
            del data[rng.integers(1, min(len(data), 200)):]
        try:
            frame = decompress(ext[1:], bytes(data), 'compressed_image[0]')
        except ValueError as exc:
            assert str(exc).startswith('compressed_image[0].'), exc
            outcomes['refused'] += 1
        else:
            assert frame.shape[0] * frame.shape[1] <= compressed_image.MAX_DECODED_PIXELS
            outcomes['frame'] += 1
    assert outcomes['frame'] and outcomes['refused'], outcomes  # both ways exercised
