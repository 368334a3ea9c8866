"""numpy frames <-> sensor_msgs/Image: every dtype/channel combination, layouts, refusals, converters."""

from __future__ import annotations

import array
import importlib.util
import logging
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from schnitzel_stream_ros.codec import image as image_codec
from schnitzel_stream_ros.codec.image import (
    BuiltinImageConverter,
    backing_array,
    convert_channel_order,
    frame_to_image_msg,
    image_msg_to_frame,
    new_frame,
    select_converter,
)
from schnitzel_stream_ros.codec.image_encodings import IMAGE_ENCODINGS, default_encoding

FAST = settings(max_examples=60, deadline=None)
DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64]


def _frame(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == 'f':
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize(
    ('dtype', 'channels', 'expected'),
    [
        (np.uint8, 1, 'mono8'),
        (np.uint8, 3, 'bgr8'),
        (np.uint8, 4, 'bgra8'),
        (np.uint16, 1, 'mono16'),
        (np.uint16, 3, '16UC3'),
        (np.float32, 1, '32FC1'),
        (np.float32, 3, '32FC3'),
        (np.int8, 2, '8SC2'),
        (np.float64, 4, '64FC4'),
    ],
)
def test_default_encodings(dtype, channels, expected):
    shape = (3, 5) if channels == 1 else (3, 5, channels)
    msg = frame_to_image_msg(_frame(dtype, shape))
    itemsize = np.dtype(dtype).itemsize
    assert (msg.encoding, msg.height, msg.width, msg.step) == (expected, 3, 5, 5 * channels * itemsize)
    assert msg.is_bigendian == (sys.byteorder == 'big')
    assert len(msg.data) == 3 * msg.step


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels', [1, 2, 3, 4])
def test_every_dtype_and_channel_count_round_trips_exactly(dtype, channels):
    shape = (4, 6) if channels == 1 else (4, 6, channels)
    frame = _frame(dtype, shape, seed=channels)
    msg = frame_to_image_msg(frame)
    back = image_msg_to_frame(msg)
    assert back.dtype == frame.dtype and back.shape == frame.shape
    assert back.tobytes() == frame.tobytes()  # bit-exact, NaN payloads included


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', '8UC3'])
def test_explicit_encodings_of_the_same_layout(encoding):
    frame = _frame(np.uint8, (2, 3, 3))
    msg = frame_to_image_msg(frame, encoding)
    assert msg.encoding == encoding
    assert np.array_equal(image_msg_to_frame(msg), frame)


def test_every_known_encoding_is_accepted_for_its_layout():
    for encoding, fmt in IMAGE_ENCODINGS.items():
        shape = (2, 3) if fmt.channels == 1 else (2, 3, fmt.channels)
        frame = _frame(fmt.dtype, shape)
        back = image_msg_to_frame(frame_to_image_msg(frame, encoding))
        assert back.tobytes() == frame.tobytes(), encoding


@FAST
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
        shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3, 4])),
    ),
    st.sampled_from(['plain', 'squeeze', 'every_other_column', 'transposed', 'reversed', 'channel_slice']),
)
def test_any_layout_round_trips_through_the_wire(frame, layout):
    if layout == 'squeeze':
        frame = frame[..., 0]
    elif layout == 'every_other_column':
        frame = frame[:, ::2]
    elif layout == 'transposed':
        frame = frame.transpose(1, 0, 2)
    elif layout == 'reversed':
        frame = frame[::-1, ::-1]
    elif layout == 'channel_slice' and frame.shape[2] == 4:
        frame = frame[..., :3]
    msg = frame_to_image_msg(frame)
    wire = deserialize_message(serialize_message(msg), Image)
    back = image_msg_to_frame(wire)
    # one channel comes back 2-D, as from cv_bridge and OpenCV: (h, w, 1) -> (h, w), same bytes
    expected_shape = frame.shape[:2] if frame.ndim == 3 and frame.shape[2] == 1 else frame.shape
    assert back.shape == expected_shape and back.dtype == frame.dtype
    assert back.tobytes() == np.ascontiguousarray(frame).tobytes()


def test_decoded_frames_are_read_only_views_unless_copied():
    frame = _frame(np.uint8, (4, 4, 3))
    msg = deserialize_message(serialize_message(frame_to_image_msg(frame)), Image)  # as received
    view = image_msg_to_frame(msg)
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1
    assert backing_array(view) is msg.data  # zero-copy: a view of the received message
    private = image_msg_to_frame(msg, copy=True)
    private[0, 0, 0] ^= 0xFF
    assert private.flags.writeable and backing_array(private) is None
    assert np.array_equal(image_msg_to_frame(msg), frame)


def test_contiguous_frames_encode_without_a_copy_and_strided_ones_are_compacted():
    frame = _frame(np.uint8, (4, 5, 3))
    msg = frame_to_image_msg(frame)
    assert isinstance(msg.data, memoryview) and np.shares_memory(np.asarray(msg.data), frame)
    assert len(msg.data) == frame.nbytes and bytes(msg.data) == frame.tobytes()
    relayed = frame_to_image_msg(image_msg_to_frame(msg))  # relaying a decoded frame: still no copy
    assert np.shares_memory(np.asarray(relayed.data), frame)
    received = deserialize_message(serialize_message(msg), Image)  # publishing reads the view
    assert bytes(received.data) == frame.tobytes() and received == msg
    array_backed = new_frame((4, 5, 3))
    array_backed[:] = frame
    assert np.shares_memory(np.asarray(frame_to_image_msg(array_backed).data), array_backed)
    # a strided frame is made contiguous: one copy, the same bytes as cv_bridge would send
    part = frame[:, ::2]
    strided = frame_to_image_msg(part)
    assert not np.shares_memory(np.asarray(strided.data), frame)
    assert bytes(strided.data) == np.ascontiguousarray(part).tobytes() and strided.step == 3 * 3


def test_padded_rows_from_other_senders_are_read():
    frame = _frame(np.uint16, (3, 4))
    padded = np.zeros((3, 6), dtype=np.uint16)
    padded[:, :4] = frame
    msg = Image(height=3, width=4, encoding='mono16', step=12, data=padded.tobytes())
    back = image_msg_to_frame(msg)
    assert back.flags.c_contiguous and np.array_equal(back, frame)


def test_big_endian_frames_are_sent_as_is_and_read_back_native():
    frame = _frame(np.uint16, (3, 4)).astype('>u2')
    msg = frame_to_image_msg(frame)
    assert msg.is_bigendian == 1 and msg.encoding == 'mono16'
    assert bytes(msg.data) == frame.tobytes()
    back = image_msg_to_frame(msg)
    assert back.dtype == np.dtype('=u2') and np.array_equal(back, frame)


@pytest.mark.parametrize(
    ('frame', 'message', 'error'),
    [
        (np.zeros((0, 4, 3), np.uint8), r'payload: 0-size frame \(shape \(0, 4, 3\)\)', ValueError),
        (np.zeros((4, 0), np.uint8), 'payload: 0-size frame', ValueError),
        (np.zeros(5, np.uint8), r'payload: shape \(5,\) is not an image', ValueError),
        (np.zeros((2, 2, 5), np.uint8), 'is not an image', ValueError),
        (np.zeros((2, 2, 3, 1), np.uint8), 'is not an image', ValueError),
        (
            np.zeros((2, 2), np.complex64),
            'payload: dtype complex64 has no sensor_msgs/Image encoding',
            ValueError,
        ),
        (np.zeros((2, 2), bool), 'payload: dtype bool', ValueError),
        ([[1, 2]], 'payload: expected a numpy.ndarray frame, got list', TypeError),
    ],
)
def test_unsendable_frames_are_refused_by_name(frame, message, error):
    with pytest.raises(error, match=message):
        frame_to_image_msg(frame)


def test_encoding_that_does_not_fit_the_frame_is_refused():
    with pytest.raises(
        ValueError, match=r"payload: encoding 'rgb8' needs uint8 with 3 channels, the frame is uint16"
    ):
        frame_to_image_msg(np.zeros((2, 2, 3), np.uint16), 'rgb8')
    with pytest.raises(ValueError, match="payload encoding: unknown image encoding 'rgb9'"):
        frame_to_image_msg(np.zeros((2, 2, 3), np.uint8), 'rgb9')


def _msg(**fields) -> Image:
    base = {'height': 2, 'width': 3, 'encoding': 'bgr8', 'step': 9, 'data': bytes(18)}
    base.update(fields)
    return Image(**base)


@pytest.mark.parametrize(
    ('fields', 'message'),
    [
        ({'encoding': 'xyz'}, "image.encoding: unknown image encoding 'xyz'"),
        ({'encoding': ''}, "image.encoding: unknown image encoding ''"),
        ({'step': 8}, r'image.step: 8 is less than width \* channels \* bytes per value = 9'),
        ({'data': bytes(17)}, r'image.data: 17 bytes, but step \* height = 9 \* 2 = 18'),
        ({'data': bytes(19)}, 'image.data: 19 bytes'),
        ({'step': 10}, 'image.data: 18 bytes, but step'),
        ({'height': 0, 'data': b''}, r'image: 0-size image \(0 x 3\) is refused'),
        ({'width': 0, 'step': 0, 'data': b''}, 'image: 0-size image'),
        ({'encoding': 'mono16', 'width': 4, 'step': 9}, 'image.step: 9 is not a multiple of 2'),
    ],
)
def test_inconsistent_messages_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=message):
        image_msg_to_frame(_msg(**fields))


def test_header_is_carried():
    header = Header(frame_id='cam01')
    header.stamp.sec = 5
    msg = frame_to_image_msg(_frame(np.uint8, (2, 2)), header=header)
    assert (msg.header.frame_id, msg.header.stamp.sec) == ('cam01', 5)


def test_channel_order_conversions_are_exact_permutations():
    rgb = _frame(np.uint8, (2, 2, 3))
    bgr = convert_channel_order(rgb, 'rgb8', 'bgr8', 'payload')
    assert np.array_equal(bgr, rgb[..., ::-1])
    rgba = _frame(np.uint16, (2, 2, 4))
    assert np.array_equal(convert_channel_order(rgba, 'rgba16', 'bgra16', 'p'), rgba[..., [2, 1, 0, 3]])
    for source, target in [('rgb8', 'mono8'), ('rgb8', 'bgra8'), ('rgb8', 'bgr16')]:
        with pytest.raises(ValueError, match=f"payload: cannot convert encoding '{source}' to '{target}'"):
            convert_channel_order(rgb, source, target, 'payload')


def test_default_encoding_is_none_for_unsupported_layouts():
    assert default_encoding(np.dtype(np.uint8), 5) is None
    assert default_encoding(np.dtype(np.complex128), 1) is None


# ------------------------------------------------------------------------------------------ converters
@pytest.mark.skipif(importlib.util.find_spec('cv_bridge') is None, reason='cv_bridge is not importable here')
def test_real_cv_bridge_gives_the_builtin_results():
    bridge = select_converter('cv_bridge')
    builtin = BuiltinImageConverter()
    for dtype in DTYPES:
        for channels in (1, 3, 4):
            shape = (3, 5) if channels == 1 else (3, 5, channels)
            frame = _frame(dtype, shape)
            a, b = frame_to_image_msg(frame, converter=bridge), frame_to_image_msg(frame, converter=builtin)
            assert (a.encoding, a.step, a.is_bigendian, bytes(a.data)) == (
                b.encoding,
                b.step,
                b.is_bigendian,
                bytes(b.data),
            )
            assert np.array_equal(
                image_msg_to_frame(a, converter=bridge), image_msg_to_frame(a, converter=builtin)
            )


class _StandInBridge:
    """cv_bridge cannot be installed here (no wheel for numpy 2), so the selection logic is tested
    against a stand-in module with cv_bridge's documented API and behaviour (cv2_to_imgmsg:
    data = tobytes(), step = len(data) // height; imgmsg_to_cv2('passthrough'): view of the data).
    The converter's real equivalence is checked by the test above wherever cv_bridge exists."""

    def __init__(self, step_error: int = 0):
        self.step_error = step_error

    def cv2_to_imgmsg(self, cvim, encoding='passthrough', header=None):
        msg = Image()
        if header is not None:
            msg.header = header
        msg.height, msg.width = cvim.shape[0], cvim.shape[1]
        msg.encoding = encoding
        msg.is_bigendian = cvim.dtype.byteorder == '>'
        msg.data = array.array('B', cvim.tobytes())
        msg.step = len(msg.data) // msg.height + self.step_error
        return msg

    def imgmsg_to_cv2(self, img_msg, desired_encoding='passthrough'):
        fmt = IMAGE_ENCODINGS[img_msg.encoding]
        dtype = fmt.dtype.newbyteorder('>' if img_msg.is_bigendian else '<')
        shape = (img_msg.height, img_msg.width) + (() if fmt.channels == 1 else (fmt.channels,))
        return np.frombuffer(img_msg.data, dtype=dtype).reshape(shape)


@pytest.fixture
def stand_in_cv_bridge(monkeypatch):
    module = types.ModuleType('cv_bridge')
    module.CvBridge = _StandInBridge  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, 'cv_bridge', module)
    monkeypatch.setattr(image_codec, '_selected', None)
    return module


def test_auto_takes_cv_bridge_when_it_passes_the_self_check(stand_in_cv_bridge):
    converter = select_converter('auto')
    assert converter.name == 'cv_bridge'
    frame = _frame(np.uint8, (3, 4, 3))
    assert np.array_equal(image_msg_to_frame(frame_to_image_msg(frame, converter=converter)), frame)


def test_auto_falls_back_when_cv_bridge_disagrees(stand_in_cv_bridge, caplog):
    stand_in_cv_bridge.CvBridge = lambda: _StandInBridge(step_error=1)
    with caplog.at_level(logging.WARNING):
        assert select_converter('auto').name == 'builtin'
    assert 'fails the self-check' in caplog.text
    with pytest.raises(RuntimeError, match='cv_bridge fails the self-check: bgr8: message differs'):
        select_converter('cv_bridge')


def test_builtin_without_cv_bridge_and_bad_preferences(monkeypatch):
    monkeypatch.setitem(sys.modules, 'cv_bridge', None)  # import fails
    assert select_converter('auto').name == 'builtin'
    with pytest.raises(RuntimeError, match='cv_bridge was asked for but does not load'):
        select_converter('cv_bridge')
    monkeypatch.setenv('SCHNITZEL_STREAM_IMAGE_CONVERTER', 'builtin')
    assert select_converter().name == 'builtin'
    with pytest.raises(ValueError, match="image converter: 'opencv' is not one of"):
        select_converter('opencv')
