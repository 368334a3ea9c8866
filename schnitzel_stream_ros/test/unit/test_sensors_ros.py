"""RosSensorTopicSource / RosImageTopicSource with real message objects from the ROS wheels.

The runtime hands these plugins `StreamPacket(kind=raw, source_id=<topic>, payload=<message>)`
(docs/wiring.md); the tests do the same, without DDS (the topic plumbing is the runtime's and is
tested there). Conversions are checked field by field and for strict JSON (the JSON lanes' rule).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CompressedImage, Image, Imu, NavSatFix, NavSatStatus, Range, Temperature
from std_msgs.msg import ByteMultiArray, Float64MultiArray, Header, String

from schnitzel_stream_ros.codec.compressed_image import compress_frame
from schnitzel_stream_ros.codec.image import frame_to_image_msg
from schnitzel_stream_ros.codec.json_values import check_json_value
from schnitzel_stream_ros.graph.ports import declared_ports
from schnitzel_stream_ros.nodes.sensors.ros_image import RosImageTopicSource
from schnitzel_stream_ros.nodes.sensors.ros_message_json import interface_name, message_to_dict
from schnitzel_stream_ros.nodes.sensors.ros_topic import RosSensorTopicSource
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

STAMP = Time(sec=1771070400, nanosec=123456789)  # 2026-02-14T12:00:00.123456789Z
STAMP_TS = '2026-02-14T12:00:00.123456Z'  # nanoseconds cut to microseconds


def make(cls, **params):
    ctx = SimpleContext(node_id='ros_in', params=resolve_params(cls, params))
    plugin = cls(ctx)
    plugin.setup()
    return plugin, ctx


def delivered(msg, topic='/sensors/x'):
    """What the runtime hands the plugin for one received message."""
    return StreamPacket.new('raw', topic, msg)


def header(frame_id='front_ultrasonic', stamp=STAMP):
    return Header(stamp=stamp, frame_id=frame_id)


# -- typed sensor messages ----------------------------------------------------------------------
def test_range_reading():
    source, ctx = make(RosSensorTopicSource, topic='/ultrasonic/front')
    msg = Range(
        header=header(),
        radiation_type=Range.ULTRASOUND,
        field_of_view=0.5,
        min_range=0.02,
        max_range=4.0,
        range=1.25,
    )
    out = source.process(delivered(msg, '/ultrasonic/front'))
    assert out.kind == 'sensor' and out.source_id == 'front_ultrasonic' and out.ts == STAMP_TS
    assert out.payload == {
        'sensor_id': 'front_ultrasonic',
        'sensor_type': 'range',
        'sensor_ts': STAMP_TS,
        'range_m': 1.25,
        'distance_cm': 125.0,
        'min_range_m': pytest.approx(0.02),
        'max_range_m': 4.0,
        'field_of_view_rad': 0.5,
        'radiation_type': 'ultrasound',
        'unit': 'm',
        'quality': 'ok',
    }
    assert out.meta == {'ros_topic': '/ultrasonic/front'}
    assert ctx.counters['readings_total'] == 1


@pytest.mark.parametrize(
    ('value', 'quality'),
    [
        (math.inf, 'no_return'),
        (-math.inf, 'too_close'),
        (math.nan, 'out_of_range'),
        (5.0, 'out_of_range'),
    ],
)
def test_range_rep117_special_values(value, quality):
    source, _ = make(RosSensorTopicSource, topic='/r', sensor_id='u1')
    msg = Range(header=header(), min_range=0.02, max_range=4.0, range=value, radiation_type=Range.INFRARED)
    payload = source.process(delivered(msg)).payload
    assert payload['quality'] == quality and payload['range_m'] is None and payload['distance_cm'] is None
    assert payload['sensor_id'] == 'u1' and payload['radiation_type'] == 'infrared'
    check_json_value(payload, 'payload')  # no NaN/Infinity reaches a JSON lane


def test_imu_reading_without_orientation():
    source, _ = make(RosSensorTopicSource, topic='/imu', message_type='sensor_msgs/msg/Imu')
    msg = Imu(header=header('imu_link'))
    msg.orientation_covariance[0] = -1.0  # REP 145: no orientation estimate
    msg.angular_velocity.z = 0.5
    msg.linear_acceleration.x, msg.linear_acceleration.z = 0.1, 9.81
    payload = source.process(delivered(msg)).payload
    assert payload['sensor_type'] == 'imu' and payload['orientation'] is None
    assert payload['angular_velocity'] == {'x': 0.0, 'y': 0.0, 'z': 0.5}
    assert payload['linear_acceleration'] == {'x': 0.1, 'y': 0.0, 'z': 9.81}
    msg.orientation_covariance[0] = 0.01
    msg.orientation.w = 1.0
    assert source.process(delivered(msg)).payload['orientation'] == {'x': 0.0, 'y': 0.0, 'z': 0.0, 'w': 1.0}


def test_navsatfix_reading():
    source, _ = make(RosSensorTopicSource, topic='/gps/fix', message_type='sensor_msgs/msg/NavSatFix')
    msg = NavSatFix(
        header=header('gps'),
        latitude=48.137,
        longitude=11.575,
        altitude=math.nan,
        status=NavSatStatus(status=NavSatStatus.STATUS_FIX, service=NavSatStatus.SERVICE_GPS),
    )
    payload = source.process(delivered(msg)).payload
    assert (payload['latitude'], payload['longitude'], payload['altitude']) == (48.137, 11.575, None)
    assert payload['quality'] == 'ok' and payload['fix_status'] == 0 and payload['service'] == 1
    msg.status.status = NavSatStatus.STATUS_NO_FIX
    assert source.process(delivered(msg)).payload['quality'] == 'no_fix'


def test_temperature_reading_and_unset_stamp_uses_receive_time():
    source, _ = make(RosSensorTopicSource, topic='/t', message_type='sensor_msgs/msg/Temperature')
    msg = Temperature(header=Header(frame_id=''), temperature=21.5, variance=0.25)
    out = source.process(delivered(msg, '/t'))
    assert out.payload['temperature_c'] == 21.5 and out.payload['variance'] == 0.25
    assert out.payload['unit'] == 'degC' and out.source_id == '/t'  # no frame_id: the topic
    assert out.ts != '1970-01-01T00:00:00Z' and out.payload['sensor_ts'] == out.ts


# -- any message as JSON ------------------------------------------------------------------------
def test_any_message_as_json():
    source, _ = make(
        RosSensorTopicSource, topic='/pose', message_type='geometry_msgs/msg/PoseStamped', sensor_id='robot'
    )
    msg = PoseStamped(header=header('map'))
    msg.pose.position.x, msg.pose.orientation.w = 1.5, 1.0
    payload = source.process(delivered(msg)).payload
    assert payload['sensor_type'] == 'geometry_msgs/msg/PoseStamped'
    assert payload['pose'] == {
        'position': {'x': 1.5, 'y': 0.0, 'z': 0.0},
        'orientation': {'x': 0.0, 'y': 0.0, 'z': 0.0, 'w': 1.0},
    }
    assert 'header' not in payload and payload['sensor_ts'] == STAMP_TS


def test_typed_message_forced_to_json():
    source, _ = make(RosSensorTopicSource, topic='/r', as_json=True)
    msg = Range(header=header(), range=1.0, max_range=math.inf)
    payload = source.process(delivered(msg)).payload
    assert payload['sensor_type'] == 'sensor_msgs/msg/Range'
    assert payload['range'] == 1.0 and payload['max_range'] is None  # Infinity -> null


def test_message_to_dict_arrays_bytes_and_truncation():
    arr = Float64MultiArray(data=[1.0, math.nan, 3.0])
    assert message_to_dict(arr)['data'] == [1.0, None, 3.0]
    assert message_to_dict(ByteMultiArray(data=[b'\x01', b'\xff']))['data'] == [1, 255]
    image = Image(height=100, width=100, encoding='mono8', step=100, data=bytes(10000))
    converted = message_to_dict(image, max_array_items=4096)
    assert converted['data'] == {'length': 10000, 'truncated': True} and converted['width'] == 100
    assert len(message_to_dict(image, max_array_items=0)['data']) == 10000
    nested = message_to_dict(Imu())
    assert nested['orientation_covariance'] == [0.0] * 9 and nested['header']['stamp'] == {
        'sec': 0,
        'nanosec': 0,
    }
    check_json_value(nested, 'imu')
    assert interface_name(Imu()) == 'sensor_msgs/msg/Imu'
    with pytest.raises(TypeError, match=r'expected a ROS message'):
        message_to_dict({'a': 1})


def test_message_type_decides_the_input_port_and_is_checked():
    params = resolve_params(RosSensorTopicSource, {'topic': '/imu', 'message_type': 'sensor_msgs/msg/Imu'})
    port = RosSensorTopicSource.ports_for(params)[0][0]
    assert (port.name, port.msg_type, port.required) == ('in', 'sensor_msgs/msg/Imu', False)
    assert declared_ports(RosSensorTopicSource, params)[1][0].kinds == frozenset({'sensor'})
    for bad, message in (
        ('sensor_msgs/Range', 'not a message type name'),
        ('no_such_pkg/msg/Thing', "package 'no_such_pkg' is not installed"),
        ('sensor_msgs/msg/Nope', "has no message 'Nope'"),
    ):
        with pytest.raises(ValueError, match=rf'ros_in: parameter message_type: .*{message}'):
            make(RosSensorTopicSource, topic='/x', message_type=bad)
    source, _ = make(RosSensorTopicSource, topic='/x')
    with pytest.raises(
        ValueError, match=r'ros_in: port in: expected sensor_msgs/msg/Range, got std_msgs.msg._string.String'
    ):
        source.process(delivered(String(data='hi')))


# -- images -------------------------------------------------------------------------------------
def rgb_test_frame() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def test_image_rgb8_becomes_a_bgr_frame():
    source, ctx = make(RosImageTopicSource, topic='/camera/image_raw')
    rgb = rgb_test_frame()
    msg = frame_to_image_msg(rgb, 'rgb8', header('cam_front'))
    out = source.process(delivered(msg, '/camera/image_raw'))
    assert out.kind == 'frame' and out.source_id == 'cam_front' and out.ts == STAMP_TS
    assert np.array_equal(out.payload, rgb[..., ::-1])  # exact channel swap
    assert out.meta['frame_idx'] == 0 and out.meta['ros_topic'] == '/camera/image_raw'
    assert source.process(delivered(msg)).meta['frame_idx'] == 1
    assert ctx.counters['frames_total'] == 2


def test_image_bgr8_passes_as_is_and_mono8_gets_three_channels():
    source, _ = make(RosImageTopicSource, topic='/c', camera_id='cam9')
    bgr = rgb_test_frame()
    out = source.process(delivered(frame_to_image_msg(bgr, 'bgr8', header())))
    assert np.array_equal(out.payload, bgr) and out.source_id == 'cam9'
    mono = bgr[..., 0].copy()
    out = source.process(delivered(frame_to_image_msg(mono, 'mono8', header())))
    assert out.payload.shape == (6, 8, 3) and all(np.array_equal(out.payload[..., c], mono) for c in range(3))
    raw, _ = make(RosImageTopicSource, topic='/c', to_bgr8=False)
    assert raw.process(delivered(frame_to_image_msg(mono, 'mono8', header()))).payload.shape == (6, 8)


def test_compressed_image_topic():
    source, _ = make(
        RosImageTopicSource,
        topic='/camera/image_raw/compressed',
        message_type='sensor_msgs/msg/CompressedImage',
    )
    bgr = np.zeros((16, 16, 3), dtype=np.uint8)
    bgr[:, 8:] = (255, 0, 0)
    msg = compress_frame(bgr, 'png', encoding='bgr8', header=header('cam_c'))
    out = source.process(delivered(msg))
    assert np.array_equal(out.payload, bgr)  # PNG is lossless
    broken = CompressedImage(header=header(), format='jpeg', data=b'not a jpeg')
    assert source.process(delivered(broken)) is None  # counted, not raised: one bad image != camera down
    assert (
        RosImageTopicSource.ports_for({'message_type': 'sensor_msgs/msg/CompressedImage'})[0][0].msg_type
        == 'sensor_msgs/msg/CompressedImage'
    )


def test_message_time_rule_header_stamp_zero_stamp_and_impossible_stamp():
    """One rule for every ROS topic source: the header stamp, now when unset, counted when impossible."""
    from sensor_msgs.msg import Range

    from schnitzel_stream_ros.nodes.sensors.reading import message_ts
    from schnitzel_stream_ros.nodes.sensors.ros_topic import RosSensorTopicSource
    from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

    ctx = SimpleContext('range0', resolve_params(RosSensorTopicSource, {'topic': '/range'}))
    node = RosSensorTopicSource(ctx)
    msg = Range()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_771_027_200, 500_000_000
    assert message_ts(node, msg) == '2026-02-14T00:00:00.500000Z'
    received = message_ts(node, Range())  # zero stamp (unset by the publisher): the time of reception
    assert received.endswith('Z') and not received.startswith('1970')
    assert 'bad_stamp_total' not in ctx.counters
    msg.header.stamp.nanosec = 1_500_000_000  # not a valid stamp: counted, replaced by now
    assert message_ts(node, msg) != '2026-02-14T00:00:01.500000Z'
    assert ctx.counters['bad_stamp_total'] == 1
