"""MCAP recordings: schemas and bytes as ros2 bag writes them, checked by an independent reader
(rosbags: its own .msg parser and CDR decoder, types taken from the file), the bounded reader's
refusals of hostile files, and McapReplaySource giving back the packets that were recorded.

No DDS here: messages are serialized with rclpy exactly as the recorder receives them from DDS
(raw subscriptions hand over the same CDR bytes); the DDS path is in test/integration/test_record_replay.py.
"""
from __future__ import annotations

import io
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard
from mcap.reader import make_reader
from rclpy.serialization import serialize_message
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Range
from std_msgs.msg import Header, String

from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_msg
from schnitzel_stream_ros.codec.image import frame_to_image_msg
from schnitzel_stream_ros.codec.packet_codec import encode_packet
from schnitzel_stream_ros.codec.timestamps import ts_to_stamp
from schnitzel_stream_ros.nodes.core.mcap_replay import McapReplaySource
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.recording.mcap_reader import McapLimitError, McapLimits, McapRecordingReader
from schnitzel_stream_ros.recording.mcap_writer import McapFileWriter
from schnitzel_stream_ros.recording.msg_definitions import SEPARATOR, field_dependencies, full_definition

PACKET_TYPE = 'schnitzel_stream_msgs/msg/StreamPacket'
EVENT_TYPE = 'schnitzel_stream_msgs/msg/Event'
T0 = 1_772_352_000 * 10**9  # 2026-03-01T08:00:00Z in ns


def _frame(seed: int, shape=(48, 64, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _packets() -> list[StreamPacket]:
    return [
        StreamPacket.new('frame', 'cam0', _frame(i), {'frame_idx': i, 'idempotency_key': f'frame:cam0:{i}'},
                         ts=f'2026-03-01T08:00:0{i}.500000Z')
        for i in range(3)
    ] + [
        StreamPacket.new('sensor', 'dist0', {'value': 1.25, 'unit': 'm'}, {'seq': 7},
                         ts='2026-03-01T08:00:04Z'),
        StreamPacket.new('bytes', 'blob', b'\x00\xffabc', {'content_type': 'application/octet-stream'},
                         ts='2026-03-01T08:00:05Z'),
    ]


def _event() -> dict:
    return build_event(site_id='S001', camera_id='cam0', ts='2026-03-01T08:00:06Z', object_type='PERSON',
                       bbox={'x1': 10, 'y1': 20, 'x2': 30, 'y2': 90}, confidence=0.875, track_id=3)


def _write_recording(path: Path, **writer_options) -> dict[str, list]:
    """A recording of every message family; returns what was written, per topic."""
    written: dict[str, list] = {'/cam/out': _packets()[:3], '/misc/out': _packets()[3:]}
    header = Header(stamp=ts_to_stamp('2026-03-01T08:00:07Z'), frame_id='cam9')
    image = frame_to_image_msg(_frame(9), None, header)
    compressed = CompressedImage(format='png', data=list(b''))  # filled below
    import cv2

    compressed.header = Header(stamp=ts_to_stamp('2026-03-01T08:00:08Z'), frame_id='cam8')
    compressed.data = cv2.imencode('.png', _frame(8))[1].tobytes()
    written['/cam9/image_raw'] = [image]
    written['/cam8/image_raw/compressed'] = [compressed]
    written['/site/events'] = [event_to_msg(_event())]
    written['/range'] = [Range(header=Header(frame_id='us0'), range=1.5, min_range=0.1, max_range=4.0)]
    written['/chatter'] = [String(data='héllo')]
    types = {'/cam/out': PACKET_TYPE, '/misc/out': PACKET_TYPE, '/cam9/image_raw': 'sensor_msgs/msg/Image',
             '/cam8/image_raw/compressed': 'sensor_msgs/msg/CompressedImage', '/site/events': EVENT_TYPE,
             '/range': 'sensor_msgs/msg/Range', '/chatter': 'std_msgs/msg/String'}
    with McapFileWriter(path, **writer_options) as writer:
        t = T0
        for topic, items in written.items():
            writer.add_topic(topic, types[topic])
            for item in items:
                msg = encode_packet(item) if isinstance(item, StreamPacket) else item
                t += 10**8
                writer.write(topic, serialize_message(msg), t, t - 1000)
    return written


# ------------------------------------------------------------------------------ definitions
def test_full_definition_has_every_dependency_once_in_rosbag2_layout():
    text = full_definition(PACKET_TYPE)
    blocks = text.split(f'\n{SEPARATOR}\nMSG: ')
    names = [b.split('\n', 1)[0] for b in blocks[1:]]
    # the root first, then each dependency once, depth first in sorted order as rosbag2 writes them
    assert names == ['schnitzel_stream_msgs/BlobRef', 'sensor_msgs/CompressedImage', 'std_msgs/Header',
                     'builtin_interfaces/Time', 'sensor_msgs/Image']
    assert 'std_msgs/Header header' in blocks[0] and 'string meta_json' in blocks[0]
    assert 'int32 sec' in blocks[4] and 'uint32 nanosec' in blocks[4]


def test_field_dependencies_skip_primitives_comments_and_constants():
    text = ('uint8 X=1  # a Foo/Bar in a comment\n# std_msgs/Header h\nstring<=5 s\nPoint[] p\n'
            'std_msgs/Header h\n')
    assert field_dependencies(text, 'geometry_msgs') == ['geometry_msgs/Point', 'std_msgs/Header']


# ------------------------------------------------------------------------------ independent reader
def test_rosbags_reads_every_message_with_the_types_from_the_file(tmp_path):
    path = tmp_path / 'rec.mcap'
    written = _write_recording(path)
    seen: dict[str, list] = {}
    # EMPTY type store: rosbags knows no type except what the file's ros2msg schemas define
    with AnyReader([path], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        for connection, _t, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            assert type(msg).__name__ == connection.msgtype.replace('/', '__')
            seen.setdefault(connection.topic, []).append((connection.msgtype, msg))
    assert {t: len(v) for t, v in seen.items()} == {t: len(v) for t, v in written.items()}
    for packet, (msgtype, msg) in zip(written['/cam/out'], seen['/cam/out'], strict=True):
        assert msgtype == PACKET_TYPE
        assert (msg.packet_id, msg.kind, msg.source_id, msg.payload_encoding) == (
            packet.packet_id, 'frame', 'cam0', 'image')
        image = msg.image[0]
        assert (image.height, image.width, image.encoding) == (48, 64, 'bgr8')
        assert bytes(image.data) == packet.payload.tobytes()
    sensor = seen['/misc/out'][0][1]
    assert sensor.payload_json == '{"value":1.25,"unit":"m"}' and sensor.meta_json == '{"seq":7}'
    assert bytes(seen['/misc/out'][1][1].payload_bytes) == b'\x00\xffabc'
    event = seen['/site/events'][0][1]
    assert (event.event_id, event.track_id, event.bbox.x2) == (_event()['event_id'], 3, 30.0)
    assert bytes(seen['/cam9/image_raw'][0][1].data) == _frame(9).tobytes()
    assert seen['/cam8/image_raw/compressed'][0][1].format == 'png'
    assert (seen['/range'][0][1].range, seen['/range'][0][1].header.frame_id) == (1.5, 'us0')
    assert seen['/chatter'][0][1].data == 'héllo'


@pytest.mark.parametrize('compression', ['zstd', 'lz4', 'none'])
def test_mcap_summary_has_ros2_profile_schemas_and_counts(tmp_path, compression):
    path = tmp_path / 'rec.mcap'
    _write_recording(path, compression=compression, chunk_bytes=4096)
    with open(path, 'rb') as stream:
        reader = make_reader(stream)
        assert reader.get_header().profile == 'ros2'
        summary = reader.get_summary()
        types = (PACKET_TYPE, 'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage', EVENT_TYPE,
                 'sensor_msgs/msg/Range', 'std_msgs/msg/String')
        assert {s.name: s.encoding for s in summary.schemas.values()} == dict.fromkeys(types, 'ros2msg')
        assert {c.message_encoding for c in summary.channels.values()} == {'cdr'}
        assert summary.statistics.message_count == 10
        assert summary.chunk_indexes and {c.compression for c in summary.chunk_indexes} == {
            {'none': ''}.get(compression, compression)}


# ------------------------------------------------------------------------------ replay source
def _source(path: Path, **params) -> tuple[McapReplaySource, SimpleContext]:
    params = resolve_params(McapReplaySource, {'path': str(path), **params})
    ctx = SimpleContext(node_id='replay', params=params)
    node = McapReplaySource(ctx)
    node.setup()
    return node, ctx


def test_replay_gives_back_the_recorded_packets(tmp_path):
    path = tmp_path / 'rec.mcap'
    written = _write_recording(path)
    node, ctx = _source(path, rate='max')
    out = list(node.produce())
    assert len(out) == 10 and ctx.counters['messages_total'] == 10
    for original, back in zip(written['/cam/out'] + written['/misc/out'], out[:5], strict=True):
        assert (back.packet_id, back.ts, back.kind, back.source_id) == (
            original.packet_id, original.ts, original.kind, original.source_id)
        assert back.meta == original.meta
        if isinstance(original.payload, np.ndarray):
            assert np.array_equal(back.payload, original.payload)
        else:
            assert back.payload == original.payload
    image, compressed, event, range_, chatter = out[5:]
    assert (image.kind, image.source_id, image.ts, image.meta['frame_idx']) == (
        'frame', 'cam9', '2026-03-01T08:00:07Z', 0)
    assert np.array_equal(image.payload, _frame(9))
    assert np.array_equal(compressed.payload, _frame(8)) and compressed.source_id == 'cam8'
    assert (event.kind, event.payload['event_id'], event.meta['idempotency_key']) == (
        'event', _event()['event_id'], _event_key())
    assert (range_.kind, range_.payload['range']) == ('raw', 1.5)
    assert range_.meta['ros_type'] == 'sensor_msgs/msg/Range'
    assert chatter.payload == {'data': 'héllo'}
    # a second replay: the same packets, ids included (derived, never random)
    again, _ = _source(path, rate='max')
    assert [p.packet_id for p in again.produce()] == [p.packet_id for p in out]


def _event_key() -> str:
    from schnitzel_stream_ros.codec.event_protocol import event_key_of

    return event_key_of(_event())


def test_replay_topic_filter_loop_and_recorded_pacing(tmp_path):
    path = tmp_path / 'rec.mcap'
    _write_recording(path)
    node, ctx = _source(path, topics=['/cam/out'], rate='max', loop=True)
    produced = node.produce()
    first = [next(produced) for _ in range(7)]
    assert [p.meta['frame_idx'] for p in first] == [0, 1, 2, 0, 1, 2, 0]
    assert ctx.counters['loops_total'] == 2
    produced.close()
    # recorded rate: the three frames were logged 100 ms apart, so the replay takes >= 200 ms
    node, _ = _source(path, topics=['/cam/out'], rate='recorded')
    t0 = time.monotonic()
    assert len(list(node.produce())) == 3
    assert time.monotonic() - t0 >= 0.19


def test_replay_of_topics_the_file_does_not_have_is_an_error(tmp_path):
    path = tmp_path / 'rec.mcap'
    _write_recording(path)
    node, _ = _source(path, topics=['/cam0/out'], rate='max')
    expected = (r"^node 'replay': parameter 'topics': none of \['/cam0/out'\] is in .*rec.mcap "
                r"\(its topics: /cam/out, /cam8/image_raw/compressed, ")
    with pytest.raises(ValueError, match=expected):
        list(node.produce())


def test_replay_source_refuses_a_bad_topic_name():
    assert McapReplaySource.check_params({'topics': ['cam/out']}) == [
        "parameter 'topics': 'cam/out' is not an absolute topic name"]


# ------------------------------------------------------------------------------ hostile files
def _raw_mcap(records: list[tuple[int, bytes]], *, footer: bool = True) -> bytes:
    out = io.BytesIO()
    out.write(b'\x89MCAP0\r\n')
    for opcode, body in records:
        out.write(struct.pack('<BQ', opcode, len(body)) + body)
    if footer:
        out.write(struct.pack('<BQ', 0x02, 20) + bytes(20))
        out.write(b'\x89MCAP0\r\n')
    return out.getvalue()


def _s(text: str) -> bytes:
    data = text.encode()
    return struct.pack('<I', len(data)) + data


HEADER = (0x01, _s('ros2') + _s('test'))
SCHEMA = (0x03, struct.pack('<H', 1) + _s('std_msgs/msg/String') + _s('ros2msg') + _s('string data'))
CHANNEL = (0x04, struct.pack('<HH', 1, 1) + _s('/chatter') + _s('cdr') + struct.pack('<I', 0))


def _message(data: bytes, channel: int = 1) -> tuple[int, bytes]:
    return 0x05, struct.pack('<HIQQ', channel, 0, T0, T0) + data


def _chunk(inner: bytes, compression: str, declared: int | None = None,
           sized: bool = True) -> tuple[int, bytes]:
    data = (zstandard.ZstdCompressor(write_content_size=sized).compress(inner) if compression == 'zstd'
            else inner)
    body = (struct.pack('<QQQI', T0, T0, len(inner) if declared is None else declared, 0) + _s(compression)
            + struct.pack('<Q', len(data)) + data)
    return 0x06, body


def _records_bytes(records: list[tuple[int, bytes]]) -> bytes:
    return b''.join(struct.pack('<BQ', op, len(body)) + body for op, body in records)


CDR_HELLO = serialize_message(String(data='hello'))


def _read_all(path: Path, limits: McapLimits | None = None) -> list:
    return list(McapRecordingReader(path, limits or McapLimits()).messages())


def test_a_well_formed_hand_made_file_reads(tmp_path):
    path = tmp_path / 'ok.mcap'
    inner = _records_bytes([SCHEMA, CHANNEL, _message(CDR_HELLO)])
    path.write_bytes(_raw_mcap([HEADER, _chunk(inner, 'zstd')]))
    (message,) = _read_all(path)
    assert (message.topic, message.type_name, message.data) == ('/chatter', 'std_msgs/msg/String', CDR_HELLO)


@pytest.mark.parametrize(('records', 'limits', 'expected'), [
    ([HEADER, SCHEMA, CHANNEL, _message(b'x' * 200)], McapLimits(max_message_bytes=100),
     'over the limit of 122 (max_message_bytes + its fixed fields)'),
    ([HEADER, SCHEMA, CHANNEL, _message(CDR_HELLO), _message(CDR_HELLO)], McapLimits(max_messages=1),
     'more than 1 messages (max_messages)'),
    ([HEADER, (0x03, struct.pack('<H', 1) + _s('a/msg/B') + _s('ros2msg') + _s('x' * 5000))],
     McapLimits(max_schema_bytes=1000), 'over the limit of 2024 (max_schema_bytes + its fixed fields)'),
    ([HEADER, SCHEMA, CHANNEL, _message(CDR_HELLO, channel=9)], McapLimits(),
     'names channel 9, which was not declared'),
    ([HEADER, _chunk(_records_bytes([SCHEMA]), 'zstd', declared=1 << 40)], McapLimits(),
     'chunk declares 1099511627776 bytes uncompressed, over the limit'),
    ([HEADER, _chunk(bytes(10_000_000), 'zstd', declared=1000)], McapLimits(),
     'chunk inflates beyond its declared 1000 bytes'),  # a zstd bomb: 10 MB from a few hundred bytes
    ([HEADER, _chunk(bytes(10_000_000), 'zstd', declared=1000, sized=False)], McapLimits(),
     'chunk inflates beyond its declared 1000 bytes'),  # the same bomb without a size in its frame
    ([HEADER, _chunk(b'\x05' + struct.pack('<Q', 1 << 50), '')], McapLimits(),
     'in a chunk claims 1125899906842624 bytes, more than the chunk holds'),
    ([HEADER, _chunk(b'abc', 'brotli')], McapLimits(), "chunk compression 'brotli' is not none, lz4 or zstd"),
    ([HEADER, (0x05, b'\x01\x00')], McapLimits(),
     'message record of 2 bytes is shorter than its fixed fields'),
], ids=['message', 'count', 'schema', 'channel', 'chunk-size', 'zstd-bomb', 'zstd-bomb-unsized',
        'inner-length', 'compression', 'short-message'])
def test_hostile_files_are_refused_in_one_line_naming_file_and_limit(tmp_path, records, limits, expected):
    path = tmp_path / 'hostile.mcap'
    path.write_bytes(_raw_mcap(records))
    with pytest.raises(McapLimitError) as err:
        _read_all(path, limits)
    text = str(err.value)
    assert text.startswith(f'{path}: ') and expected in text and '\n' not in text


def test_file_size_and_magic_are_checked_before_reading(tmp_path):
    path = tmp_path / 'big.mcap'
    path.write_bytes(_raw_mcap([HEADER]))
    with pytest.raises(McapLimitError, match=r'big.mcap: \d+ bytes, over the limit of 10 \(max_file_bytes\)'):
        McapRecordingReader(path, McapLimits(max_file_bytes=10))
    (tmp_path / 'not.mcap').write_bytes(b'PK\x03\x04 zip')
    with pytest.raises(McapLimitError, match='not an MCAP file'):
        McapRecordingReader(tmp_path / 'not.mcap')
    node_ctx = SimpleContext(node_id='replay', params=resolve_params(McapReplaySource, {
        'path': str(path), 'max_file_bytes': 10}))
    expected = r"^node 'replay': parameter 'path': .*big.mcap: \d+ bytes, over the limit"
    with pytest.raises(ValueError, match=expected):
        McapReplaySource(node_ctx).setup()


def test_a_limit_broken_mid_file_stops_the_source_with_node_and_file(tmp_path):
    path = tmp_path / 'rec.mcap'
    _write_recording(path)
    node, _ = _source(path, rate='max', max_messages=4)
    expected = r"^node 'replay': .*rec.mcap: more than 4 messages \(max_messages\)"
    with pytest.raises(ValueError, match=expected):
        list(node.produce())


def test_undecodable_message_is_counted_and_skipped(tmp_path):
    path = tmp_path / 'bad.mcap'
    schema = (0x03, struct.pack('<H', 1) + _s(PACKET_TYPE) + _s('ros2msg') + _s('string x'))
    channel = (0x04, struct.pack('<HH', 1, 1) + _s('/cam/out') + _s('cdr') + struct.pack('<I', 0))
    packet = _packets()[3]
    good = serialize_message(encode_packet(packet))
    garbage = b'\x00\x01\x00\x00garbage'
    path.write_bytes(_raw_mcap([HEADER, schema, channel, _message(garbage), _message(good)]))
    node, ctx = _source(path, rate='max')
    out = list(node.produce())
    assert [p.packet_id for p in out] == [packet.packet_id]
    assert ctx.counters['invalid_messages_total'] == 1 and ctx.counters['messages_total'] == 1


def test_a_killed_recording_replays_its_flushed_messages(tmp_path):
    """A recorder killed mid-file: no summary, maybe a partial record at the end."""
    path = tmp_path / 'rec.mcap'
    writer = McapFileWriter(path, chunk_bytes=1 << 30)
    writer.add_topic('/cam/out', PACKET_TYPE)
    for i, packet in enumerate(_packets()[:3]):
        writer.write('/cam/out', serialize_message(encode_packet(packet)), T0 + i, T0 + i)
        writer.flush()  # the periodic flush
    killed = tmp_path / 'killed.mcap'
    shutil.copyfile(path, killed)  # the bytes on disk at the moment of the kill
    writer.close()
    with open(killed, 'ab') as stream:
        stream.write(b'\x06' + struct.pack('<Q', 5000) + b'partial')  # a chunk cut short
    reader = McapRecordingReader(killed)
    assert len(list(reader.messages())) == 3 and reader.stats.truncated
    node, ctx = _source(killed, rate='max')
    assert [p.meta['frame_idx'] for p in node.produce()] == [0, 1, 2]
    assert ctx.counters['truncated_files_total'] == 1
