"""A StreamPacket read straight from its CDR bytes (codec/serialized_packet.py, what a container's
DDS inputs do) gives what rclpy's message gives, and hostile bytes are refused by name.

The equivalence on valid packets of every payload encoding is checked by every round trip of
test_codec_packet.py; here the fuzzing: every truncation and thousands of seeded random byte
mutations of real serialized packets (rclpy's own serialize_message), each decoded both ways."""

from __future__ import annotations

import random
import struct
import tracemalloc

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import PacketCodec
from schnitzel_stream_ros.codec.serialized_packet import read_packet_fields
from schnitzel_stream_ros.packet import StreamPacket

REF = {'scheme': 'file', 'path': 'ab/cd', 'content_type': 'video/mp4', 'size_bytes': 7, 'sha256': 'a' * 64}
PACKETS = {
    'json': StreamPacket.new('event', 'cam01', {'seq': 5, 'ü': 'ß', 'x': [1.5, None]}, {'zone': 'z1'}),
    'bytes': StreamPacket.new('bytes', 'serial0', b'ab\x00cd', {'content_type': 'application/x-raw'}),
    'image': StreamPacket.new('frame', 'cam01', np.arange(3 * 4 * 3, dtype=np.uint16).reshape(3, 4, 3)),
    'none': StreamPacket.new('control', 'ctl', None, {'idempotency_key': 'k-1'}),
    'blob_ref': StreamPacket.new('bytes_ref', 'rec', {'ref': REF}),
}
PNG = PacketCodec(image_compression='png')


def wires() -> dict[str, bytes]:
    out = {name: serialize_message(PacketCodec().encode(packet)) for name, packet in PACKETS.items()}
    frame = np.zeros((4, 5, 3), np.uint8)
    out['compressed'] = serialize_message(PNG.encode(PACKETS['image'].derive(payload=frame)))
    return out


def outcome(decode) -> tuple[str, object]:
    """('ok', packet) or ('refused', error); anything but ValueError/TypeError fails the test."""
    try:
        return 'ok', decode()
    except (ValueError, TypeError) as exc:
        return 'refused', exc
    except RuntimeError as exc:  # rclpy's RMWError: only rclpy's own deserialisation raises it
        return 'rclpy_refused', exc


def same(a: StreamPacket, b: StreamPacket) -> bool:
    if isinstance(a.payload, np.ndarray) or isinstance(b.payload, np.ndarray):
        payload_same = (
            isinstance(a.payload, np.ndarray)
            and isinstance(b.payload, np.ndarray)
            and a.payload.dtype == b.payload.dtype
            and a.payload.shape == b.payload.shape
            and a.payload.tobytes() == b.payload.tobytes()  # NaNs included
        )
    else:
        payload_same = type(a.payload) is type(b.payload) and a.payload == b.payload
    return payload_same and (a.packet_id, a.ts, a.kind, a.source_id, a.meta) == (
        b.packet_id, b.ts, b.kind, b.source_id, b.meta
    )


@pytest.mark.parametrize('name', [*PACKETS, 'compressed'])
def test_every_truncation_is_refused_by_name(name):
    data = wires()[name]
    codec = PNG if name == 'compressed' else PacketCodec()
    assert same(codec.decode_serialized(data), codec.decode(deserialize_message(data, StreamPacketMsg)))
    for size in range(len(data)):
        kind, error = outcome(lambda size=size: codec.decode_serialized(data[:size]))
        assert kind == 'refused', f'{size} of {len(data)} bytes: {kind} {error}'
        named = str(error).split(':')[0]  # the field, as on the message (or the whole message)
        fields = StreamPacketMsg.get_fields_and_field_types()
        assert named == 'serialized message' or named.split('[')[0].split('.')[0] in fields, error


@pytest.mark.parametrize('name', [*PACKETS, 'compressed'])
def test_mutated_bytes_are_refused_or_read_exactly_as_rclpy_reads_them(name):
    """Seeded random mutations (1-3 bytes each, the encapsulation kept): both readers accept the
    same messages and make the same packet of them (strings up to their first NUL, invalid UTF-8
    replaced, as rclpy's generated conversion does); what one refuses the other refuses too."""
    data = wires()[name]
    codec = PNG if name == 'compressed' else PacketCodec()
    rng = random.Random(name)
    counts = {'both_read': 0, 'both_refused': 0}
    for _ in range(1500):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(2, len(mutated))] = rng.randrange(256)
        mutated = bytes(mutated)
        ours = outcome(lambda m=mutated: codec.decode_serialized(m))
        assert ours[0] != 'rclpy_refused', ours  # ours refuses with ValueError, naming the field
        theirs = outcome(lambda m=mutated: codec.decode(deserialize_message(m, StreamPacketMsg)))
        if ours[0] == 'ok':
            assert theirs[0] == 'ok', (mutated, theirs)
            assert same(ours[1], theirs[1]), (mutated, ours[1], theirs[1])
            counts['both_read'] += 1
        else:
            assert theirs[0] != 'ok', (mutated, ours[1], theirs[1])
            counts['both_refused'] += 1
    assert counts['both_read'] > 50 and counts['both_refused'] > 50, counts  # both sides exercised


def _string_size_offset(data: bytes) -> int:
    """Offset of packet_id's size field: after the encapsulation, the stamp and header.frame_id."""
    frame_id_size = struct.unpack_from('<I', data, 12)[0]
    return (16 + frame_id_size + 3) & ~3


def test_a_length_beyond_the_message_is_refused_without_allocating_it():
    data = bytearray(wires()['json'])
    at = _string_size_offset(bytes(data))
    struct.pack_into('<I', data, at, 0xFFFF_FFF0)  # packet_id claims ~4 GB
    tracemalloc.start()
    with pytest.raises(ValueError, match=r'packet_id: the message ends \d+ bytes early'):
        PacketCodec().decode_serialized(bytes(data))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000


def test_a_bounded_sequence_holds_at_most_its_bound():
    packet = PACKETS['none']
    msg = PacketCodec().encode(packet)
    data = bytearray(serialize_message(msg))
    # the three bounded sequences (image, compressed_image, blob_ref) follow payload_bytes' empty size
    counts_at = data.rindex(b'\x00' * 16, 0, len(data) - len(msg.meta_json) - 5) + 4
    assert struct.unpack_from('<3I', data, counts_at) == (0, 0, 0)
    struct.pack_into('<I', data, counts_at, 2)
    with pytest.raises(ValueError, match='image: 2 elements, at most 1'):
        PacketCodec().decode_serialized(bytes(data))


def test_other_encapsulations_are_left_to_rclpy():
    data = wires()['json']
    big_endian = b'\x00\x00' + data[2:]
    assert read_packet_fields(big_endian) is None
    assert read_packet_fields(data) is not None
    with pytest.raises(ValueError, match='serialized message: failed to deserialize'):
        PacketCodec().decode_serialized(big_endian)  # little-endian bytes read as big endian: refused
    assert read_packet_fields(b'') is None  # too short to hold an encapsulation: rclpy refuses it
    with pytest.raises(ValueError, match='serialized message'):
        PacketCodec().decode_serialized(b'')


def test_byte_fields_are_views_of_the_received_bytes():
    data = wires()['bytes']
    fields = read_packet_fields(data)
    assert isinstance(fields.payload_bytes, memoryview) and fields.payload_bytes.obj is data
    back = PacketCodec().decode_serialized(data)
    assert back.payload == b'ab\x00cd' and type(back.payload) is bytes


def test_frames_of_8_byte_values_come_back_aligned():
    """Image data starts at a 4-aligned offset of the received bytes: float64 values there are
    copied once to an aligned frame (numpy and OpenCV expect it); smaller values stay views."""
    codec = PacketCodec()
    for source_id in ('c', 'ca', 'cam', 'cam0'):  # shifts the image data by 0-3 bytes
        for dtype in (np.float64, np.float32, np.uint16):
            frame = np.arange(12, dtype=dtype).reshape(3, 4)
            data = serialize_message(codec.encode(StreamPacket.new('frame', source_id, frame)))
            back = codec.decode_serialized(data)
            assert back.payload.flags.aligned and np.array_equal(back.payload, frame)
            assert not back.payload.flags.writeable
