#!/usr/bin/env python3
"""Cost of the StreamPacket codecs next to their floor, measured in the same run.

- frame: a 640x480x3 uint8 frame packet -> schnitzel_stream_msgs/StreamPacket -> packet, against
  a plain numpy copy of the same 921,600 bytes. Goal: codec <= 2x the copy. The codec itself copies
  no pixels (the message's data is a view of the frame; publishing copies it into the C message,
  as it copies any Image's data), so the second frame case counts that too: `info_through_cdr` is
  encode -> serialize_message -> deserialize_message -> decode (what one hop costs both processes'
  Python threads together, less DDS), against plain sensor_msgs/Image made and read the way
  cv_bridge does it (cv2_to_imgmsg: tobytes + frombytes; imgmsg_to_cv2: a numpy view), through
  the same CDR calls, for information: rclpy's own work (the copies into and out of the C
  message and CDR, and the page faults of those fresh 0.9 MB buffers) is most of it, and ours
  also carries the StreamPacket envelope. The cross-process goal is measured where it is felt:
  `runtime_bench.py` P3 frames. JPEG both ways for information (size on the wire in the JSON).
- event: a ~1 KB event protocol v0.2 dict as StreamPacket(kind=event) -> message -> packet, and as
  schnitzel_stream_msgs/Event -> dict, against a numpy copy of its JSON bytes and against a
  stdlib json.dumps + json.loads round trip (a more telling floor for JSON work).
- For information: rclpy's CDR serialisation of the same messages (what publishing adds; not part
  of the codec).
- Serialized packets (what a container's DDS inputs receive): `info_serialized_decode` reads a
  small packet, the event packet and the frame packet straight from their bytes
  (`PacketCodec.decode_serialized`) against rclpy's deserialize_message + decode; `info_cdr_readers`
  the fields alone, by rclpy, by rosbags (the well-kept pure-Python CDR library) and by the suite's
  reader (codec/serialized_packet.py) — the same-run measurement behind the hand-written reader.

Baseline and codec run interleaved, round after round, so a busy machine slows both alike; each
figure is the median (and min) of the per-round means, in CPU time of the measuring thread
(time.thread_time: time other processes take from this one is not counted). Prints one JSON object.

Usage: python bench/codec_bench.py [--rounds N] [--iterations N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ament_index_python.packages import get_package_share_directory
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from schnitzel_stream_msgs.msg import Event as EventMsg
from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_msg, event_to_packet, msg_to_event
from schnitzel_stream_ros.codec.image import default_converter
from schnitzel_stream_ros.codec.packet_codec import PacketCodec, decode_packet, encode_packet
from schnitzel_stream_ros.codec.serialized_packet import read_packet_fields
from schnitzel_stream_ros.packet import StreamPacket


def _round_mean_us(fn: Callable[[], object], iterations: int) -> float:
    # CPU time of this thread, not wall time: on a shared machine a round that is preempted would
    # otherwise count another process's time (the codec is single-threaded work on this thread)
    start = time.thread_time()
    for _ in range(iterations):
        fn()
    return (time.thread_time() - start) / iterations * 1e6


def measure(
    cases: dict[str, Callable[[], object]], rounds: int, iterations: int
) -> dict[str, dict[str, float]]:
    """Interleaved rounds of every case; per case the median and min of the round means (µs)."""
    for fn in cases.values():  # warm-up: imports, allocator, caches
        for _ in range(max(3, iterations // 10)):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(_round_mean_us(fn, iterations))
    return {
        name: {'median_us': round(statistics.median(v), 2), 'min_us': round(min(v), 2)}
        for name, v in samples.items()
    }


def _ratio(result: dict[str, dict[str, float]], case: str, floor: str) -> dict[str, float]:
    return {
        'median': round(result[case]['median_us'] / result[floor]['median_us'], 2),
        'min': round(result[case]['min_us'] / result[floor]['min_us'], 2),
    }


def cv_bridge_like_to_msg(frame: np.ndarray) -> Image:
    """sensor_msgs/Image as cv_bridge's cv2_to_imgmsg makes it (bgr8): header, fields, tobytes + frombytes."""
    msg = Image(height=frame.shape[0], width=frame.shape[1], encoding='bgr8', step=frame.shape[1] * 3)
    msg.header.frame_id = 'cam01'
    msg.data.frombytes(frame.tobytes())
    return msg


def cv_bridge_like_to_frame(msg: Image) -> np.ndarray:
    """As cv_bridge's imgmsg_to_cv2(msg, 'passthrough'): a numpy view of the message's buffer."""
    return np.ndarray((msg.height, msg.width, 3), dtype=np.uint8, buffer=msg.data)


def one_kb_event() -> dict:
    """A realistic event whose JSON is about 1 KB (sensor reading and metrics attached)."""
    event = build_event(
        site_id='S001',
        camera_id='cam01',
        ts='2026-02-14T00:00:00.250000Z',
        object_type='PERSON',
        bbox={'x1': 120, 'y1': 64, 'x2': 212, 'y2': 388},
        confidence=0.8734,
        track_id=17,
        zone={'zone_id': 'loading-dock-north', 'inside': True},
        snapshot_path='snapshots/S001/cam01/2026-02-14T00-00-00.250000Z.jpg',
        sensor={
            'source_id': 'range01',
            'ts': '2026-02-14T00:00:00.180000Z',
            'kind': 'sensor',
            'payload': {'range_m': 3.42, 'min_range_m': 0.2, 'max_range_m': 12.0, 'field_of_view_rad': 0.26},
            'delta_ms': 70.0,
        },
        extra={
            'model': {'name': 'ssdlite-pedestrian', 'version': '1.0.0', 'input': [320, 320]},
            'pipeline': {'graph': 'site.yaml', 'node_id': 'events', 'frame_idx': 123456, 'epoch': 2},
            'labels': {'shift': 'night', 'operator': 'Zoë Müller', 'area': 'Halle 3 – Rampe'},
            'history': [{'ts': f'2026-02-13T23:59:5{i}Z', 'x': 100 + i, 'y': 60 + i} for i in range(6)],
        },
    )
    return event


def _cdr_readers(wires: dict[str, bytes]) -> dict[str, Callable[[], object]]:
    """rclpy, rosbags and our reader on the same bytes (rosbags: a test dependency; left out where
    it is not installed)."""
    cases: dict[str, Callable[[], object]] = {}
    try:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    except ImportError:
        get_typestore = None
    if get_typestore is not None:
        store = get_typestore(Stores.ROS2_JAZZY)
        share = Path(get_package_share_directory('schnitzel_stream_msgs')) / 'msg'
        for name in ('BlobRef', 'StreamPacket'):
            store.register(get_types_from_msg((share / f'{name}.msg').read_text(),
                                              f'schnitzel_stream_msgs/msg/{name}'))
    for name, wire in wires.items():
        cases[f'{name}_rclpy_deserialize_message'] = lambda w=wire: deserialize_message(w, StreamPacketMsg)
        if get_typestore is not None:
            cases[f'{name}_rosbags_deserialize_cdr'] = lambda w=wire: store.deserialize_cdr(
                w, 'schnitzel_stream_msgs/msg/StreamPacket'
            )
        cases[f'{name}_read_packet_fields'] = lambda w=wire: read_packet_fields(w)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--iterations', type=int, default=200)
    args = parser.parse_args()

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame_packet = StreamPacket.new('frame', 'cam01', frame, {'frame_idx': 1, 'pos_msec': 33.3})
    frame_msg = encode_packet(frame_packet)
    # JPEG of noise says nothing: a camera-like frame (gradients and shapes) for the compressed case
    yy, xx = np.mgrid[0:480, 0:640]
    camera = np.stack([(xx * 255 // 639), (yy * 255 // 479), ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    camera[100:300, 200:400] = (40, 160, 220)
    camera_packet = frame_packet.derive(payload=camera)
    jpeg = PacketCodec(image_compression='jpeg', jpeg_quality=90)
    jpeg_wire = serialize_message(jpeg.encode(camera_packet))
    assert np.array_equal(decode_packet(frame_msg).payload, frame)
    assert np.array_equal(
        decode_packet(deserialize_message(serialize_message(frame_msg), StreamPacketMsg)).payload, frame
    )
    assert np.array_equal(
        cv_bridge_like_to_frame(deserialize_message(serialize_message(cv_bridge_like_to_msg(frame)), Image)),
        frame,
    )

    codec = PacketCodec()
    event = one_kb_event()
    event_json = json.dumps(event, ensure_ascii=False).encode('utf-8')
    event_bytes = np.frombuffer(event_json, dtype=np.uint8)
    event_packet = event_to_packet(event)
    event_packet_msg = encode_packet(event_packet)
    event_msg = event_to_msg(event)
    frame_wire = serialize_message(frame_msg)
    event_wire = serialize_message(event_packet_msg)
    assert decode_packet(event_packet_msg).payload == event
    assert msg_to_event(event_msg) == event

    frame_result = measure(
        {
            'numpy_copy_floor': frame.copy,
            'packet_codec_encode_decode': lambda: decode_packet(encode_packet(frame_packet)),
            'packet_codec_encode': lambda: encode_packet(frame_packet),
            'packet_codec_decode': lambda: decode_packet(frame_msg),
            # for hosts that need small frames on the wire: JPEG (quality 90) both ways, for information
            'info_jpeg_codec_encode_decode': lambda: jpeg.decode(jpeg.encode(camera_packet)),
        },
        args.rounds,
        args.iterations,
    )
    cdr_result = measure(
        {
            'plain_image_through_cdr': lambda: cv_bridge_like_to_frame(
                deserialize_message(serialize_message(cv_bridge_like_to_msg(frame)), Image)
            ),
            'packet_codec_through_cdr': lambda: decode_packet(
                deserialize_message(serialize_message(encode_packet(frame_packet)), StreamPacketMsg)
            ),
            # what a container's DDS input does: the serialized bytes read straight into a packet
            'packet_codec_through_cdr_serialized': lambda: codec.decode_serialized(
                serialize_message(encode_packet(frame_packet))
            ),
        },
        args.rounds,
        max(10, args.iterations // 4),
    )
    event_result = measure(
        {
            'numpy_copy_floor': event_bytes.copy,
            'json_dumps_loads': lambda: json.loads(json.dumps(event)),
            'packet_codec_encode_decode': lambda: decode_packet(encode_packet(event_packet)),
            'event_msg_encode_decode': lambda: msg_to_event(event_to_msg(event)),
        },
        args.rounds,
        args.iterations * 5,
    )
    # the hand-written CDR reader (codec/serialized_packet.py) against rclpy's deserialisation
    # followed by the message decode, for the packets a container receives from other processes
    small_packet = StreamPacket.new('raw', 'src', {'seq': 1})
    small_wire = serialize_message(encode_packet(small_packet))
    assert codec.decode_serialized(small_wire) == decode_packet(
        deserialize_message(small_wire, StreamPacketMsg)
    )
    assert codec.decode_serialized(event_wire).payload == event
    assert np.array_equal(codec.decode_serialized(frame_wire).payload, frame)
    serialized_result = measure(
        {
            f'{name}_{way}': fn
            for name, wire in (('small', small_wire), ('event', event_wire), ('frame', frame_wire))
            for way, fn in (
                ('rclpy_deserialize_then_decode',
                 lambda w=wire: decode_packet(deserialize_message(w, StreamPacketMsg))),
                ('decode_serialized', lambda w=wire: codec.decode_serialized(w)),
            )
        },
        args.rounds,
        args.iterations,
    )
    readers = _cdr_readers({'small': small_wire, 'event': event_wire})
    readers_result = measure(readers, args.rounds, args.iterations)
    wire_result = measure(
        {
            'frame_serialize': lambda: serialize_message(frame_msg),
            'frame_deserialize': lambda: deserialize_message(frame_wire, StreamPacketMsg),
            'event_packet_serialize': lambda: serialize_message(event_packet_msg),
            'event_packet_deserialize': lambda: deserialize_message(event_wire, StreamPacketMsg),
            'event_msg_serialize': lambda: serialize_message(event_msg),
        },
        max(3, args.rounds // 3),
        max(10, args.iterations // 4),
    )
    _ = EventMsg  # imported so the message class load is not part of any measured case

    frame_ratio = _ratio(frame_result, 'packet_codec_encode_decode', 'numpy_copy_floor')
    cdr_ratio = _ratio(cdr_result, 'packet_codec_through_cdr', 'plain_image_through_cdr')
    report = {
        'bench': 'codec',
        'machine': {
            'cpus': os.cpu_count(),
            'cpu': platform.processor() or platform.machine(),
            'load_average_at_start': load_at_start,
            'load_average_at_end': [round(x, 2) for x in os.getloadavg()],
        },
        'python': platform.python_version(),
        'numpy': np.__version__,
        'image_converter': default_converter().name,
        'rounds': args.rounds,
        'iterations': args.iterations,
        'frame': {
            'shape': list(frame.shape),
            'bytes': frame.nbytes,
            'results': frame_result,
            'ratio_codec_to_copy': frame_ratio,
            'goal_ratio_max': 2.0,
            'goal_met': frame_ratio['median'] <= 2.0,
            'info_through_cdr': {
                'baseline': "plain sensor_msgs/Image as cv_bridge makes and reads it, same CDR calls",
                'results': cdr_result,
                'ratio_ours_to_plain': cdr_ratio,
                'ratio_ours_serialized_to_plain': _ratio(
                    cdr_result, 'packet_codec_through_cdr_serialized', 'plain_image_through_cdr'
                ),
            },
            'info_jpeg_wire_bytes': len(jpeg_wire),
            'info_ratio_jpeg_codec_to_copy': _ratio(
                frame_result, 'info_jpeg_codec_encode_decode', 'numpy_copy_floor'
            ),
        },
        'event': {
            'json_bytes': len(event_json),
            'results': event_result,
            'ratio_packet_codec_to_copy': _ratio(
                event_result, 'packet_codec_encode_decode', 'numpy_copy_floor'
            ),
            'ratio_packet_codec_to_json': _ratio(
                event_result, 'packet_codec_encode_decode', 'json_dumps_loads'
            ),
            'ratio_event_msg_to_json': _ratio(event_result, 'event_msg_encode_decode', 'json_dumps_loads'),
        },
        'info_serialized_decode': {
            'what': 'a received serialized StreamPacket -> packet: rclpy deserialize_message + decode '
                    '(a message object in between) vs PacketCodec.decode_serialized (what a container does)',
            'results': serialized_result,
            'ratio_serialized_to_rclpy': {
                name: _ratio(
                    serialized_result, f'{name}_decode_serialized', f'{name}_rclpy_deserialize_then_decode'
                )
                for name in ('small', 'event', 'frame')
            },
        },
        'info_cdr_readers': {
            'what': 'the fields of a serialized StreamPacket read by rclpy (deserialize_message: a message '
                    'object), by rosbags (a well-kept pure-Python CDR library: deserialize_cdr) and by the '
                    "suite's reader (read_packet_fields), without the packet's decode that follows",
            'results': readers_result,
        },
        'wire_serialization_info': {
            'frame_wire_bytes': len(frame_wire),
            'event_packet_wire_bytes': len(event_wire),
            'results': wire_result,
        },
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == '__main__':
    main()
