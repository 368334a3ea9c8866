"""StreamPacket <-> schnitzel_stream_msgs/StreamPacket: lossless round trips (also through real CDR
serialisation) for every payload encoding, and named refusals of everything that cannot round-trip."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from schnitzel_stream_msgs.msg import BlobRef as BlobRefMsg
from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.blob_ref import FileBlobStore
from schnitzel_stream_ros.codec.compressed_image import CompressedFrame
from schnitzel_stream_ros.codec.image import backing_array
from schnitzel_stream_ros.codec.packet_codec import (
    PacketCodec,
    PayloadEncoding,
    decode_packet,
    encode_packet,
)
from schnitzel_stream_ros.packet import StreamPacket, format_ts, parse_ts

FAST = settings(max_examples=50, deadline=None)
SHA = hashlib.sha256(b'').hexdigest()


def wire(msg: StreamPacketMsg) -> StreamPacketMsg:
    """What a subscriber in another process gets: the message through CDR bytes and back."""
    return deserialize_message(serialize_message(msg), StreamPacketMsg)


def round_trip(packet: StreamPacket, codec: PacketCodec | None = None) -> StreamPacket:
    """Through CDR bytes and back, both ways a receiver decodes: from rclpy's message object and
    straight from the bytes (what a container's DDS input does); both must give the same packet."""
    codec = codec or PacketCodec()
    data = serialize_message(codec.encode(packet))
    back = codec.decode(deserialize_message(data, StreamPacketMsg))
    assert_same_packet(codec.decode_serialized(data), back)
    return back


def assert_same_packet(a: StreamPacket, b: StreamPacket) -> None:
    """Equal in every field; frames equal in dtype, shape, values and writability."""
    envelope = ('packet_id', 'ts', 'kind', 'source_id', 'meta')
    assert [getattr(a, name) for name in envelope] == [getattr(b, name) for name in envelope]
    if isinstance(b.payload, np.ndarray):
        assert isinstance(a.payload, np.ndarray)
        assert (a.payload.dtype, a.payload.shape) == (b.payload.dtype, b.payload.shape)
        assert a.payload.tobytes() == b.payload.tobytes()  # exactly the same values, NaNs included
        assert a.payload.flags.writeable == b.payload.flags.writeable
    else:
        assert type(a.payload) is type(b.payload)
        assert a.payload == b.payload


def assert_same_envelope(back: StreamPacket, packet: StreamPacket) -> None:
    assert back.packet_id == packet.packet_id
    assert back.ts == format_ts(parse_ts(packet.ts))  # canonical spelling, same instant (µs)
    assert parse_ts(back.ts) == parse_ts(packet.ts)
    assert (back.kind, back.source_id) == (packet.kind, packet.source_id)
    assert back.meta == packet.meta


# ------------------------------------------------------------------------------------------ strategies
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
metas = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
# ROS string fields are NUL-terminated: NUL is refused by name (test below), so ids never hold it
ros_text = st.text(st.characters(exclude_categories=('Cs',), exclude_characters='\x00'), max_size=12)
ids = st.text(st.characters(exclude_categories=('Cs',), exclude_characters='\x00'), min_size=1, max_size=12)
timestamps = st.builds(
    lambda dt, minutes: dt.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=datetime(1902, 1, 1), max_value=datetime(2038, 1, 1)),
    st.integers(min_value=-600, max_value=600),
)
kinds = st.sampled_from(
    ['frame', 'detection', 'event', 'sensor', 'metrics', 'control', 'bytes', 'raw', 'x-custom']
)


def packets(payloads, kind=kinds):
    return st.builds(
        lambda pid, ts, k, source, payload, meta: StreamPacket(pid, ts, k, source, payload, meta),
        st.uuids().map(str) | ids,
        timestamps,
        kind,
        ids,
        payloads,
        metas,
    )


frames = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
    shape=st.one_of(
        st.tuples(st.integers(1, 6), st.integers(1, 6)),
        st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([3, 4])),
    ),
)


# ------------------------------------------------------------------------------------------ round trips
@FAST
@given(packets(st.none()))
def test_none_payload(packet):
    msg = encode_packet(packet)
    assert msg.payload_encoding == PayloadEncoding.NONE
    back = round_trip(packet)
    assert_same_envelope(back, packet)
    assert back.payload is None


@FAST
@given(packets(json_values.filter(lambda v: v is not None)))
def test_json_payload_unicode_nested_big_ints_floats(packet):
    back = round_trip(packet)
    assert_same_envelope(back, packet)
    assert back.payload == packet.payload
    assert type(back.payload) is type(packet.payload)


@FAST
@given(packets(st.binary(max_size=300) | st.binary(max_size=50).map(bytearray)))
def test_bytes_payload_including_empty(packet):
    msg = encode_packet(packet)
    assert msg.payload_encoding == PayloadEncoding.BYTES
    back = round_trip(packet)
    assert_same_envelope(back, packet)
    assert back.payload == bytes(packet.payload) and type(back.payload) is bytes


def test_bytes_content_type_travels_in_its_field_and_in_meta():
    packet = StreamPacket.new('bytes', 'cam01', b'\xff\xd8jpeg', {'content_type': 'image/jpeg'})
    msg = encode_packet(packet)
    assert msg.content_type == 'image/jpeg'
    assert decode_packet(wire(msg)).meta == {'content_type': 'image/jpeg'}
    assert encode_packet(StreamPacket.new('bytes', 'c', memoryview(b'abc'))).payload_bytes.tobytes() == b'abc'


@FAST
@given(packets(frames, kind=st.just('frame')), st.sampled_from(['plain', 'non_contiguous']))
def test_image_payload_any_dtype_channels_and_layout(packet, layout):
    frame = packet.payload
    if layout == 'non_contiguous':
        frame = frame[::-1, ::2]
        packet = packet.derive(payload=frame)
    msg = encode_packet(packet)
    assert msg.payload_encoding == PayloadEncoding.IMAGE
    assert msg.image[0].header.frame_id == packet.source_id
    back = round_trip(packet)
    assert_same_envelope(back, packet)
    assert back.payload.shape == frame.shape and back.payload.dtype == frame.dtype
    assert back.payload.tobytes() == np.ascontiguousarray(frame).tobytes()
    assert not back.payload.flags.writeable


def test_image_encoding_from_meta_round_trips():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    packet = StreamPacket.new('frame', 'cam01', rgb, {'image_encoding': 'rgb8'})
    msg = encode_packet(packet)
    assert msg.image[0].encoding == 'rgb8'
    back = decode_packet(wire(msg))
    assert back.meta == {'image_encoding': 'rgb8'} and np.array_equal(back.payload, rgb)


def test_frames_decode_without_copy_and_copy_frames_gives_private_ones():
    frame = np.ones((4, 4, 3), np.uint8)
    msg = wire(encode_packet(StreamPacket.new('frame', 'cam01', frame)))
    shared = decode_packet(msg).payload
    assert backing_array(shared) is msg.image[0].data
    private = PacketCodec(copy_frames=True).decode(msg).payload
    assert private.flags.writeable and backing_array(private) is None
    data = serialize_message(msg)  # straight from the received bytes: a read-only view of them
    assert not PacketCodec().decode_serialized(data).payload.flags.writeable
    private = PacketCodec(copy_frames=True).decode_serialized(data).payload
    assert private.flags.writeable and backing_array(private) is None


@FAST
@given(
    packets(
        hnp.arrays(
            dtype=st.sampled_from([np.uint8, np.uint16]),
            shape=st.one_of(
                st.tuples(st.integers(1, 6), st.integers(1, 6)),
                st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([3, 4])),
            ),
        ),
        kind=st.just('frame'),
    )
)
def test_png_compressed_image_payload_round_trips_exactly(packet):
    codec = PacketCodec(image_compression='png')
    msg = codec.encode(packet)
    assert msg.payload_encoding == PayloadEncoding.COMPRESSED_IMAGE
    back = codec.decode(wire(msg))
    assert_same_envelope(back, packet)
    assert back.payload.dtype == packet.payload.dtype and np.array_equal(back.payload, packet.payload)
    assert_same_packet(codec.decode_serialized(serialize_message(msg)), back)
    passthrough = PacketCodec(decompress_images=False).decode(wire(msg))
    assert passthrough.payload == CompressedFrame.from_msg(msg.compressed_image[0])
    kept = PacketCodec(decompress_images=False).decode_serialized(serialize_message(msg))
    assert_same_packet(kept, passthrough)


def test_payload_encodings_are_the_message_constants():
    constants = {getattr(StreamPacketMsg, n) for n in dir(StreamPacketMsg) if n.startswith('ENCODING_')}
    assert constants == {e.value for e in PayloadEncoding}


def test_png_compression_is_lossless_and_jpeg_is_close():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    packet = StreamPacket.new('frame', 'cam01', frame, {'frame_idx': 1})
    png = PacketCodec(image_compression='png')
    msg = png.encode(packet)
    assert msg.payload_encoding == PayloadEncoding.COMPRESSED_IMAGE and not msg.image
    back = png.decode(wire(msg))
    assert_same_envelope(back, packet)
    assert np.array_equal(back.payload, frame)
    smooth = np.broadcast_to(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 32, 3)).copy()
    jpeg = PacketCodec(image_compression='jpeg', jpeg_quality=95)
    approx = jpeg.decode(wire(jpeg.encode(packet.derive(payload=smooth)))).payload
    assert np.abs(approx.astype(int) - smooth).max() <= 8


def test_compressed_frames_pass_through_or_decode():
    frame = np.zeros((8, 8, 3), np.uint8)
    jpeg = (
        PacketCodec(image_compression='jpeg')
        .encode(StreamPacket.new('frame', 'c', frame))
        .compressed_image[0]
    )
    passthrough = StreamPacket.new('frame', 'cam01', CompressedFrame.from_msg(jpeg))
    kept = PacketCodec(decompress_images=False).decode(wire(encode_packet(passthrough)))
    assert kept.payload == passthrough.payload
    decoded = decode_packet(wire(encode_packet(passthrough)))
    assert decoded.payload.shape == (8, 8, 3)


@FAST
@given(
    packets(
        st.builds(
            lambda path, ct, size, digest: {
                'ref': {
                    'scheme': 'file',
                    'path': path,
                    'content_type': ct,
                    'size_bytes': size,
                    'sha256': digest,
                }
            },
            st.from_regex(r'[a-z0-9_]{1,8}(/[a-z0-9_.]{1,8}){0,2}', fullmatch=True).filter(
                lambda p: '..' not in p.split('/')
            ),
            ros_text,
            st.integers(min_value=0, max_value=2**64 - 1),
            st.binary(max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()),
        ),
        kind=st.just('bytes_ref'),
    )
)
def test_blob_ref_payload(packet):
    msg = encode_packet(packet)
    assert msg.payload_encoding == PayloadEncoding.BLOB_REF
    back = round_trip(packet)
    assert_same_envelope(back, packet)
    assert back.payload == packet.payload


def test_blob_refs_are_checked_against_a_store_root(tmp_path):
    store = FileBlobStore(tmp_path)
    ref = store.put(b'snapshot', 'image/jpeg')
    codec = PacketCodec(blob_store=store)
    good = StreamPacket.new('bytes_ref', 'cam01', ref.to_payload())
    assert codec.decode(wire(codec.encode(good))).payload == good.payload
    outside = {'ref': {**ref.to_payload()['ref'], 'path': '/etc/passwd'}}
    with pytest.raises(ValueError, match=r"payload.ref.path: '/etc/passwd' escapes the blob root"):
        codec.encode(good.derive(payload=outside))
    foreign = encode_packet(good.derive(payload=outside))  # a codec without a store lets it pass...
    with pytest.raises(ValueError, match=r"blob_ref\[0\].path: '/etc/passwd' escapes the blob root"):
        codec.decode(foreign)  # ...a receiver with a store does not


def test_idempotency_key_field_mirrors_meta_or_packet_id():
    plain = StreamPacket.new('event', 'cam01', {'a': 1})
    assert encode_packet(plain).idempotency_key == plain.packet_id
    assert 'idempotency_key' not in decode_packet(encode_packet(plain)).meta
    keyed = plain.with_meta(idempotency_key='event:x')
    assert encode_packet(keyed).idempotency_key == 'event:x'
    assert decode_packet(encode_packet(keyed)).meta == {'idempotency_key': 'event:x'}
    same_as_id = plain.with_meta(idempotency_key=plain.packet_id)
    assert decode_packet(encode_packet(same_as_id)).meta == {'idempotency_key': plain.packet_id}


def test_foreign_senders_fill_mirrored_meta_entries():
    msg = encode_packet(StreamPacket.new('bytes', 'robot', b'x'))
    msg.meta_json = ''
    msg.idempotency_key = 'robot:42'
    msg.content_type = 'text/plain'
    back = decode_packet(msg)
    assert back.meta == {'idempotency_key': 'robot:42', 'content_type': 'text/plain'}
    assert back.idempotency_key == 'robot:42'
    image = encode_packet(StreamPacket.new('frame', 'robot', np.zeros((2, 2, 3), np.uint8)))
    image.image[0].encoding = 'rgb8'
    assert decode_packet(image).meta == {'image_encoding': 'rgb8'}


def test_source_id_falls_back_to_header_frame_id():
    msg = encode_packet(StreamPacket.new('raw', 'cam01', 1))
    msg.source_id = ''
    assert decode_packet(msg).source_id == 'cam01'


def test_empty_and_edge_payloads_keep_their_type():
    for payload in ['', [], {}, 0, False, -0.0, 'ü' * 1000]:
        back = decode_packet(encode_packet(StreamPacket.new('raw', 's', payload)))
        assert back.payload == payload and type(back.payload) is type(payload)


def test_meta_at_the_limit_passes_and_over_it_is_refused():
    overhead = len('{"k":""}')
    fits = StreamPacket.new('raw', 's', None, {'k': 'x' * (65536 - overhead)})
    assert decode_packet(wire(encode_packet(fits))).meta == fits.meta
    with pytest.raises(ValueError, match='meta: 65537 bytes as JSON, over the limit of 65536 bytes'):
        encode_packet(fits.with_meta(k='x' * (65536 - overhead + 1)))
    small = PacketCodec(meta_limit_bytes=1024)
    with pytest.raises(ValueError, match='over the limit of 1024 bytes'):
        small.encode(StreamPacket.new('raw', 's', None, {'k': 'x' * 2000}))
    big_msg = encode_packet(StreamPacket.new('raw', 's', None, {'k': 'x' * 2000}))
    with pytest.raises(ValueError, match='meta_json: larger than the meta limit of 1024 bytes'):
        small.decode(big_msg)


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ('packet', 'message', 'error'),
    [
        (
            StreamPacket.new('raw', 's', None, {'a': float('nan')}),
            'meta.a: nan is not a JSON number',
            ValueError,
        ),
        (
            StreamPacket.new('raw', 's', None, {'a': {'b': object()}}),
            'meta.a.b: object is not a JSON type',
            TypeError,
        ),
        (
            StreamPacket.new('raw', 's', None, {'n': np.int64(1)}),
            'meta.n: int64 is not a JSON type',
            TypeError,
        ),
        (
            StreamPacket.new('raw', 's', None, {'a': {1: 2}}),
            r'meta.a\[1\]: JSON object keys must be str',
            TypeError,
        ),
        (
            StreamPacket.new('raw', 's', {'x': float('inf')}),
            'payload.x: inf is not a JSON number',
            ValueError,
        ),
        (StreamPacket.new('raw', 's', [1, {2, 3}]), r'payload\[1\]: set is not a JSON type', TypeError),
        (StreamPacket.new('raw', 's', {'conf': np.float32(0.9)}), 'payload.conf: float32', TypeError),
        (
            StreamPacket.new('detection', 's', np.zeros(512, np.float32)),
            r'payload: shape \(512,\) is not an image',
            ValueError,
        ),
        (StreamPacket.new('frame', 's', np.zeros((0, 2, 3), np.uint8)), 'payload: 0-size frame', ValueError),
        (
            StreamPacket.new('frame', 's', np.zeros((2, 2, 3), np.uint8), {'image_encoding': 'mono8'}),
            "payload: encoding 'mono8' needs uint8 with 1 channel",
            ValueError,
        ),
        (
            StreamPacket.new('frame', 's', np.zeros((2, 2, 3), np.uint8), {'image_encoding': 3}),
            'meta.image_encoding: expected str',
            TypeError,
        ),
        (
            StreamPacket.new('bytes', 's', b'x', {'content_type': 1}),
            'meta.content_type: expected str',
            TypeError,
        ),
        (
            StreamPacket.new('bytes_ref', 's', {'ref': {'path': '../x'}}),
            'payload.ref: keys must be',
            ValueError,
        ),
        (
            StreamPacket.new('raw', 's', 1, ts='yesterday'),
            "ts: not an ISO-8601 time: 'yesterday'",
            ValueError,
        ),
        (
            StreamPacket.new('raw', 's', 1, ts='2040-01-01T00:00:00Z'),
            'ts: .* outside the range of header.stamp',
            ValueError,
        ),
        (StreamPacket('', '2026-02-14T00:00:00Z', 'raw', 's'), 'packet_id: must not be empty', ValueError),
    ],
)
def test_packets_that_cannot_round_trip_are_refused_by_name(packet, message, error):
    with pytest.raises(error, match=message):
        encode_packet(packet)


@pytest.mark.parametrize(
    ('packet', 'message'),
    [
        (StreamPacket('a\x00b', '2026-02-14T00:00:00Z', 'raw', 's'), 'packet_id: contains a NUL character'),
        (StreamPacket('p', '2026-02-14T00:00:00Z', 'raw\x00', 's'), 'kind: contains a NUL character'),
        (StreamPacket('p', '2026-02-14T00:00:00Z', 'raw', '\x00'), 'source_id: contains a NUL character'),
        (
            StreamPacket('p', '2026-02-14T00:00:00Z', 'raw', 'cam\ud800'),
            r'source_id: is not valid UTF-8 text',
        ),
        (
            StreamPacket('p', '2026-02-14T00:00:00Z', 'raw', 's', None, {'idempotency_key': 'k\x00'}),
            'meta.idempotency_key: contains a NUL',
        ),
        (
            StreamPacket('p', '2026-02-14T00:00:00Z', 'bytes', 's', b'', {'content_type': 'a\x00'}),
            'meta.content_type: contains a NUL',
        ),
    ],
)
def test_text_that_ros_strings_cannot_carry_is_refused(packet, message):
    with pytest.raises(ValueError, match=message):
        encode_packet(packet)
    # inside JSON the same characters are escaped and travel fine
    nul_meta = StreamPacket.new('raw', 's', {'t': 'a\x00b'}, {'t': 'x\x00'})
    back = decode_packet(wire(encode_packet(nul_meta)))
    assert (back.payload, back.meta) == ({'t': 'a\x00b'}, {'t': 'x\x00'})


def test_blob_ref_path_escaping_is_refused_by_name():
    payload = {
        'ref': {'scheme': 'file', 'path': 'a/../../x', 'content_type': '', 'size_bytes': 0, 'sha256': SHA}
    }
    with pytest.raises(ValueError, match=r"payload.ref.path: 'a/../../x' escapes its root"):
        encode_packet(StreamPacket.new('bytes_ref', 's', payload))


def test_only_packets_are_encoded_and_only_messages_decoded():
    with pytest.raises(TypeError, match='packet: expected a StreamPacket, got dict'):
        encode_packet({'kind': 'raw'})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='msg: expected schnitzel_stream_msgs/StreamPacket, got Image'):
        decode_packet(Image())  # type: ignore[arg-type]


def _valid_msg(**changes) -> StreamPacketMsg:
    msg = encode_packet(StreamPacket.new('raw', 'cam01', {'a': 1}, {'frame_idx': 2}))
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    ('changes', 'message'),
    [
        ({'payload_encoding': 'protobuf'}, "payload_encoding: unknown encoding 'protobuf'"),
        ({'payload_encoding': ''}, "payload_encoding: unknown encoding ''"),
        ({'packet_id': ''}, 'packet_id: must not be empty'),
        ({'kind': ''}, 'kind: must not be empty'),
        ({'meta_json': '{"a": NaN}'}, 'meta_json: NaN is not JSON'),
        ({'meta_json': '[1]'}, 'meta_json: expected a JSON object'),
        ({'meta_json': '{"a":1,"a":2}'}, "meta_json: duplicate key 'a'"),
        ({'payload_json': '{"a": Infinity}'}, 'payload_json: Infinity is not JSON'),
        ({'payload_json': ''}, 'payload_json: empty, but payload_encoding is json'),
        ({'payload_json': '{"a":'}, 'payload_json: not JSON'),
        ({'payload_json': '[' * 65 + ']' * 65},
         'payload_json: nested more than 64 levels deep: over the limit max_depth = 64'),
        ({'payload_json': '[' * 100_000 + ']' * 100_000}, 'payload_json: nested more than 64 levels deep'),
        ({'payload_json': '"' + 'x' * 4 * 1024 * 1024 + '"'}, 'payload_json: text too large: over the limit '
                                                              'max_bytes = 4,194,304'),
        ({'meta_json': '{"a": ' + '[' * 70 + ']' * 70 + '}'}, 'meta_json: nested more than 64 levels deep'),
        ({'payload_bytes': b'x'}, "payload_bytes: holds data, but payload_encoding is 'json'"),
        ({'image': [Image()]}, "image: holds data, but payload_encoding is 'json'"),
        (
            {'compressed_image': [CompressedImage()]},
            "compressed_image: holds data, but payload_encoding is 'json'",
        ),
        ({'blob_ref': [BlobRefMsg()]}, "blob_ref: holds data, but payload_encoding is 'json'"),
        ({'idempotency_key': 'other'}, "idempotency_key: 'other' contradicts meta.idempotency_key"),
    ],
)
def test_inconsistent_messages_are_refused_by_name(changes, message):
    msg = _valid_msg(**changes)
    if 'idempotency_key' in changes:
        msg.meta_json = '{"idempotency_key":"mine"}'
    with pytest.raises(ValueError, match=message):
        decode_packet(msg)
    with pytest.raises(ValueError, match=message):  # the same refusal straight from the bytes
        PacketCodec().decode_serialized(serialize_message(msg))


def test_json_over_the_receivers_limits_is_refused_when_sent():
    levels_64: list = []
    for _ in range(63):
        levels_64 = [levels_64]
    with pytest.raises(ValueError, match='payload: nested more than 64 levels deep: over the limit'):
        encode_packet(StreamPacket.new('event', 'cam01', {'a': levels_64}))
    with pytest.raises(ValueError, match='payload: nested more than 64 levels deep'):
        encode_packet(StreamPacket.new('event', 'cam01', {'a': (levels_64,)}))  # tuples travel as arrays
    with pytest.raises(ValueError, match='meta: nested more than 64 levels deep'):
        encode_packet(StreamPacket.new('event', 'cam01', {}, meta={'a': levels_64}))
    with pytest.raises(ValueError, match=r'payload: 4,194,312 bytes as JSON: over the limit of 4,194,304'):
        encode_packet(StreamPacket.new('event', 'cam01', {'s': 'x' * 4 * 1024 * 1024}))
    msg = encode_packet(StreamPacket.new('event', 'cam01', {'a': levels_64[0], 'n': list(range(100))}))
    assert decode_packet(wire(msg)).payload['a'] == levels_64[0]  # 64 levels with the dict: fine both ways


def test_image_message_errors_name_the_image_field():
    msg = encode_packet(StreamPacket.new('frame', 'cam01', np.zeros((2, 3, 3), np.uint8)))
    msg.image[0].step = 8
    with pytest.raises(ValueError, match=r'image\[0\].step: 8 is less than'):
        decode_packet(msg)
    with pytest.raises(ValueError, match=r'image\[0\].step: 8 is less than'):
        PacketCodec().decode_serialized(serialize_message(msg))
    msg.image = []
    with pytest.raises(ValueError, match='image: expected exactly one element'):
        decode_packet(msg)
    with pytest.raises(ValueError, match='image: expected exactly one element'):
        PacketCodec().decode_serialized(serialize_message(msg))
    bad_time = encode_packet(StreamPacket.new('raw', 'c', 1))
    bad_time.header.stamp.nanosec = 2_000_000_000
    with pytest.raises(ValueError, match=r'header.stamp.nanosec'):
        decode_packet(bad_time)
    with pytest.raises(ValueError, match=r'header.stamp.nanosec'):
        PacketCodec().decode_serialized(serialize_message(bad_time))


def test_codec_settings_are_checked():
    with pytest.raises(ValueError, match="image_compression: 'gif'"):
        PacketCodec(image_compression='gif')
    with pytest.raises(ValueError, match='meta_limit_bytes'):
        PacketCodec(meta_limit_bytes=0)


def test_packet_ids_need_not_be_uuids_but_are_kept_exactly():
    packet = StreamPacket('frame:cam01:17', '2026-02-14T00:00:00Z', 'raw', 'cam01', 1)
    assert decode_packet(encode_packet(packet)).packet_id == 'frame:cam01:17'
    assert uuid.UUID(StreamPacket.new('raw', 's').packet_id)
