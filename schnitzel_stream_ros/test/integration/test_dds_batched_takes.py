"""A Python executor's subscription callback takes what else already waits in its subscription
(runtime/ros_node.py, take_waiting; issue 17, P3): one wake-up of the `single` / `multi`
executor costs far more than a small packet. Real DDS (rclpy, Fast DDS) in this process on a
leased domain: the messages are published before anything is taken, so they wait in the reader."""

from __future__ import annotations

import time

import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import decode_packet, encode_packet
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.runtime.container_handles import init_context
from schnitzel_stream_ros.runtime.executors import make_executor
from schnitzel_stream_ros.runtime.ros_node import TAKES_PER_CALLBACK, take_waiting

pytestmark = pytest.mark.integration


@pytest.fixture
def dds(monkeypatch, ros_domain):
    monkeypatch.setenv('ROS_DOMAIN_ID', str(ros_domain))
    context = init_context()
    node = Node('batched_takes', context=context)
    yield context, node
    node.destroy_node()
    context.try_shutdown()


def _publish_and_subscribe(node: Node, count: int, callback) -> tuple:
    qos = QoSProfile(depth=100)
    pub = node.create_publisher(StreamPacketMsg, '/takes/t', qos)
    sub = node.create_subscription(StreamPacketMsg, '/takes/t', callback, qos)
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0:
        assert time.monotonic() < deadline, 'publisher and subscription did not match'
        time.sleep(0.01)
    for seq in range(count):
        pub.publish(encode_packet(StreamPacket.new(Kind.RAW, 'src', seq)))
    return pub, sub


def test_one_callback_of_the_single_executor_takes_what_waits_bounded(dds):
    context, node = dds
    calls: list[int] = []  # messages per executor callback
    got: list[int] = []

    def receive(msg, info) -> None:
        assert 'source_timestamp' in info  # message info, as the executor gives it
        got.append(decode_packet(msg).payload)

    def callback(msg, info) -> None:
        receive(msg, info)
        calls.append(1 + take_waiting(sub, receive))

    _pub, sub = _publish_and_subscribe(node, 40, callback)
    executor = make_executor('single', context)
    executor.add_node(node)
    deadline = time.monotonic() + 30
    while len(got) < 40 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.5)
    executor.shutdown()
    assert got == list(range(40))  # every message, in order, each once
    assert max(calls) == TAKES_PER_CALLBACK  # one wake-up took many, but no more than the bound
    assert len(calls) < 40


def test_taking_from_a_destroyed_subscription_ends_quietly(dds):
    _context, node = dds
    _pub, sub = _publish_and_subscribe(node, 3, lambda msg, info: None)
    node.destroy_subscription(sub)  # an unload or a rewire on another thread
    got: list = []
    assert take_waiting(sub, lambda msg, info: got.append(msg)) == 0
    assert got == []
