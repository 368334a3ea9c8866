"""A container's DDS inputs take StreamPackets serialized and read them from the bytes
(codec/serialized_packet.py): hostile bytes from another process on the domain are counted and
warned about once, never stop the input, and every valid packet around them arrives in order.

Real DDS (rclpy, Fast DDS) on a leased domain: a container in this process (the runtime's own
executor and spinner threads, a JsonlSink writing a real file) and a plain rclpy publisher in its
own context that publishes serialized bytes as they are (`Publisher.publish(bytes)`) — a process
that is no schnitzel node, or a broken one."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import serialize_message

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import PacketCodec, encode_packet
from schnitzel_stream_ros.graph.wiring import LoadRequest
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.runtime.container_handles import LocalContainerHandle, init_context

pytestmark = pytest.mark.integration

TOPIC = '/ser/in'
VALID = 30


def _png_bomb() -> bytes:
    """A valid StreamPacket whose PNG (~70 bytes) declares 40000 x 40000 pixels."""
    codec = PacketCodec(image_compression='png')
    msg = codec.encode(StreamPacket.new('frame', 'cam', np.zeros((4, 4, 3), np.uint8)))
    png = bytearray(msg.compressed_image[0].data)
    png[16:24] = (40000).to_bytes(4, 'big') * 2
    msg.compressed_image[0].data = bytes(png)
    return serialize_message(msg)


def _hostile(valid: bytes) -> list[bytes]:
    huge = bytearray(valid)
    struct.pack_into('<I', huge, 12, 0xFFFF_FFF0)  # header.frame_id claims ~4 GB
    return [
        valid[: len(valid) // 2],  # cut in the middle
        bytes(huge),
        b'\x00\x01\x00\x00' + b'\xff' * 7,  # a CDR header, then nothing that fits
        b'\x00\x00' + valid[2:],  # little-endian bytes announced as big endian (left to rclpy)
        _png_bomb(),  # OpenCV would allocate 4.8 GB (or raise out of the callback)
    ]


@pytest.mark.parametrize('executor', ['events', 'single'])
def test_hostile_serialized_packets_are_counted_and_every_valid_one_arrives(
    executor, tmp_path, monkeypatch, ros_domain
):
    monkeypatch.setenv('ROS_DOMAIN_ID', str(ros_domain))
    out = tmp_path / 'got.jsonl'
    handle = LocalContainerHandle('ser_container', '/ser', executor=executor, max_events=None,
                                  drain_timeout=2.0)
    params = {'path': str(out), 'inputs.in': [TOPIC], 'inbox.in.max': 256, 'inbox.in.overflow': 'block',
              'qos.in.depth': 200}
    plugin = 'schnitzel_stream_ros.nodes.core.jsonl_sink:JsonlSink'
    result = handle.load(LoadRequest('schnitzel_stream_ros', plugin, 'sink', '/ser', (), params, 'ser'))
    assert result.success, result.error_message
    handle.start()
    node = next(iter(handle.container._nodes.values()))
    warnings: list[str] = []
    node.on_warning = warnings.append
    context = init_context()
    publisher_node = Node('hostile_publisher', context=context)
    try:
        pub = publisher_node.create_publisher(StreamPacketMsg, TOPIC, QoSProfile(depth=200))
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, 'the container did not subscribe'
            time.sleep(0.02)
        wire = [serialize_message(encode_packet(StreamPacket.new(Kind.RAW, 'src', {'seq': i})))
                for i in range(VALID)]
        hostile = _hostile(wire[0])
        for i, data in enumerate(wire):
            pub.publish(data)
            if i % 7 == 3:  # hostile bytes between valid packets
                for bad in hostile:
                    pub.publish(bad)
        deadline = time.monotonic() + 30
        while (not out.exists() or len(out.read_text().splitlines()) < VALID) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = out.read_text().splitlines() if out.exists() else []
        assert [json.loads(line)['payload']['seq'] for line in lines] == list(range(VALID))
        sent_hostile = len(hostile) * sum(1 for i in range(VALID) if i % 7 == 3)
        deadline = time.monotonic() + 10
        while node.bus.transport.decode_failed_total < sent_hostile and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.bus.transport.decode_failed_total == sent_hostile
        assert node.bus.transport.dds_received_total == VALID + sent_hostile
        assert len(warnings) == 1 and "input 'in': undecodable message on /ser/in" in warnings[0], warnings
        assert handle.executors.error is None  # the input's executor thread lives on
    finally:
        publisher_node.destroy_node()
        context.try_shutdown()
        handle.shutdown(1.0)
        handle.close()
