"""`ros2 topic echo`-style listener for tests: prints decoded StreamPackets as JSON lines, then exits.

Usage: python echo_packets.py TOPIC COUNT [TIMEOUT_SEC]
A plain rclpy subscriber in its own process (no part of our runtime), so a test can prove that an
in-container edge is visible from outside and decodes to the same packets.
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from rclpy.node import Node

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import decode_packet


def main() -> int:
    topic, count = sys.argv[1], int(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    rclpy.init()
    node = Node('echo_packets')
    got: list[dict] = []

    def on_message(msg: StreamPacketMsg) -> None:
        packet = decode_packet(msg)
        got.append(
            {
                'packet_id': packet.packet_id,
                'kind': packet.kind,
                'source_id': packet.source_id,
                'payload': packet.payload,
            }
        )
        print(json.dumps(got[-1]), flush=True)

    node.create_subscription(StreamPacketMsg, topic, on_message, 10)
    print('subscribed', file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(got) >= count else 1


if __name__ == '__main__':
    sys.exit(main())
