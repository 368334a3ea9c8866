"""The slot-filling message builders the packet codec uses give the messages the generated
constructors give, on the wire too, and the per-stream time caches never hand out a wrong time."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec import message_builders
from schnitzel_stream_ros.codec.message_builders import new_header, new_packet_msg, new_time
from schnitzel_stream_ros.codec.packet_codec import decode_packet, encode_packet
from schnitzel_stream_ros.codec.timestamps import stamp_to_ts, ts_to_stamp
from schnitzel_stream_ros.packet import Kind, StreamPacket


def test_fast_builders_are_verified_and_used_with_this_rosidl():
    # if this fails, the generated message layout changed: the codec then falls back (slower)
    assert message_builders.FAST_BUILDERS
    assert new_time is message_builders._fast_time


def test_built_message_equals_the_generated_one_after_a_wire_round_trip():
    args = ('p-1', 'event', 'cam0', 'key-1', '{"zone":"a"}', 'json')
    fast = new_packet_msg(new_header(new_time(1_700_000_000, 123_000), 'cam0'), *args)
    fast.payload_json = '{"n":1}'
    generated = StreamPacketMsg(
        header=Header(stamp=Time(sec=1_700_000_000, nanosec=123_000), frame_id='cam0'),
        packet_id='p-1', kind='event', source_id='cam0', idempotency_key='key-1',
        meta_json='{"zone":"a"}', payload_encoding='json', payload_json='{"n":1}',
    )
    assert fast == generated
    wire = serialize_message(fast)
    assert wire == serialize_message(generated)
    assert deserialize_message(wire, StreamPacketMsg) == generated


def test_built_messages_share_no_mutable_field():
    header = new_header(new_time(1, 2), 'a')
    one = new_packet_msg(header, 'p1', 'raw', 'a', 'p1', '{}', 'bytes')
    two = new_packet_msg(header, 'p2', 'raw', 'a', 'p2', '{}', 'bytes')
    one.payload_bytes = b'xyz'
    one.image.append(object())
    assert len(two.payload_bytes) == 0 and two.image == [] and two.compressed_image == []
    assert one.blob_ref is not two.blob_ref


def test_a_changed_message_layout_is_detected():
    class Renamed:
        __slots__ = ('_check_fields', '_nanoseconds', '_sec')

    assert not message_builders._slots_are(Renamed, ('sec', 'nanosec'))
    assert message_builders._slots_are(Time, ('sec', 'nanosec'))


def test_time_caches_follow_every_change_of_time():
    a, b = '2026-02-14T00:00:00.000001Z', '2026-02-14T00:00:01Z'
    for ts in (a, a, b, a, b, b):
        stamp = ts_to_stamp(ts)
        assert stamp_to_ts(stamp) == ts
    # a cached time gives a new Time object each time: changing one message's stamp changes no other
    first, second = ts_to_stamp(a), ts_to_stamp(a)
    first.sec += 1
    assert second.sec == first.sec - 1
    assert stamp_to_ts(Time(sec=second.sec, nanosec=999)) == '2026-02-14T00:00:00Z'  # cut to the µs


def test_codec_round_trip_with_alternating_times_and_meta():
    packets = [
        StreamPacket(f'id-{i}', ts, Kind.EVENT, 'cam', {'i': i}, {'frame_idx': i})
        for i, ts in enumerate(['2026-01-01T00:00:00Z', '2026-01-01T00:00:00.5Z', '2026-01-01T00:00:00Z'])
    ]
    for packet in packets:
        back = decode_packet(encode_packet(packet))
        assert (back.packet_id, back.payload) == (packet.packet_id, packet.payload)
        assert dict(back.meta) == dict(packet.meta)
    assert [decode_packet(encode_packet(p)).ts for p in packets] == [
        '2026-01-01T00:00:00Z', '2026-01-01T00:00:00.500000Z', '2026-01-01T00:00:00Z'
    ]


def test_both_image_builders_take_a_frame_view_and_send_the_same_bytes():
    # the codec hands the frame's bytes over as a memoryview; the fallback (generated) builder
    # copies it into the array.array its checking setter wants, the fast one keeps it
    from sensor_msgs.msg import Image

    pixels = bytes(range(24))
    view = memoryview(pixels)
    header = new_header(new_time(3, 4), 'cam')
    fast = message_builders._fast_image(header, 2, 4, 'bgr8', 0, 12, view)
    generated = message_builders._generated_image(header, 2, 4, 'bgr8', 0, 12, view)
    assert fast.data is view and generated.data.tobytes() == pixels
    assert serialize_message(fast) == serialize_message(generated)
    assert deserialize_message(serialize_message(fast), Image) == generated
