"""A three-process packet chain over real ROS topics: source -> relay -> sink.

The smallest end-to-end proof that the suite's messages cross Fast DDS between processes: the
source publishes numbered StreamPacket messages, the relay derives each one (keeps packet_id, adds
meta) and republishes it, the sink checks that every packet arrived intact and in order. Used by the
foundation tests and as the first demo. Each role is its own process, as on a real site.

    python -m schnitzel_stream_ros.demo.pingpong              # all three roles, prints a JSON summary
    python -m schnitzel_stream_ros.demo.pingpong source|relay|sink [--count N] [--prefix /demo]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

SOURCE_TOPIC = 'source/out'
RELAY_TOPIC = 'relay/out'


def make_packet(index: int, source_id: str):
    from schnitzel_stream_msgs.msg import StreamPacket

    msg = StreamPacket()
    now_ns = time.time_ns()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
    msg.header.frame_id = source_id
    msg.packet_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f'pingpong:{index}'))
    msg.kind = 'sensor'
    msg.source_id = source_id
    msg.idempotency_key = f'pingpong:{source_id}:{index}'
    msg.payload_encoding = StreamPacket.ENCODING_JSON
    msg.payload_json = json.dumps({'seq': index, 'text': f'päckchen {index}', 'values': [index, index * 0.5]})
    msg.meta_json = json.dumps({'frame_idx': index})
    return msg


def _qos():
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def _wait_for_peers(node, endpoint, count_fn, want: int, timeout: float) -> bool:
    import rclpy

    deadline = time.monotonic() + timeout
    while count_fn() < want and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    return count_fn() >= want


def run_source(prefix: str, count: int, timeout: float) -> int:
    import rclpy

    from schnitzel_stream_msgs.msg import StreamPacket

    rclpy.init()
    node = rclpy.create_node('pingpong_source', namespace=prefix)
    pub = node.create_publisher(StreamPacket, SOURCE_TOPIC, _qos())
    if not _wait_for_peers(node, pub, pub.get_subscription_count, 1, timeout):
        print('source: no subscriber appeared', file=sys.stderr)
        return 1
    time.sleep(0.3)  # let discovery settle both ways before the first packet
    for index in range(count):
        pub.publish(make_packet(index, 'pingpong'))
    # stay until the relay has everything (reliable delivery needs the writer alive)
    pub.wait_for_all_acked(rclpy.duration.Duration(seconds=timeout))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_relay(prefix: str, count: int, timeout: float) -> int:
    import rclpy

    from schnitzel_stream_msgs.msg import StreamPacket

    rclpy.init()
    node = rclpy.create_node('pingpong_relay', namespace=prefix)
    pub = node.create_publisher(StreamPacket, RELAY_TOPIC, _qos())
    relayed = 0

    def on_packet(msg: StreamPacket) -> None:
        nonlocal relayed
        meta = json.loads(msg.meta_json)
        meta['relayed_by'] = 'pingpong_relay'
        msg.meta_json = json.dumps(meta)  # derive in place: same packet_id, enriched meta
        pub.publish(msg)
        relayed += 1

    node.create_subscription(StreamPacket, SOURCE_TOPIC, on_packet, _qos())
    deadline = time.monotonic() + timeout
    while relayed < count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    pub.wait_for_all_acked(rclpy.duration.Duration(seconds=timeout))
    node.destroy_node()
    rclpy.shutdown()
    return 0 if relayed == count else 1


def run_sink(prefix: str, count: int, timeout: float) -> int:
    """Receive `count` packets, check each one against what the source made; print a JSON summary."""
    import rclpy

    from schnitzel_stream_msgs.msg import StreamPacket

    rclpy.init()
    node = rclpy.create_node('pingpong_sink', namespace=prefix)
    received: list[StreamPacket] = []
    node.create_subscription(StreamPacket, RELAY_TOPIC, received.append, _qos())
    started = time.monotonic()
    deadline = started + timeout
    while len(received) < count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    elapsed = time.monotonic() - started
    mismatches = []
    for index, msg in enumerate(received):
        expected = make_packet(index, 'pingpong')
        meta = json.loads(msg.meta_json)
        same = (
            msg.packet_id == expected.packet_id
            and msg.kind == expected.kind
            and msg.source_id == expected.source_id
            and msg.header.frame_id == expected.header.frame_id
            and msg.idempotency_key == expected.idempotency_key
            and msg.payload_encoding == expected.payload_encoding
            and json.loads(msg.payload_json) == json.loads(expected.payload_json)
            and meta == {'frame_idx': index, 'relayed_by': 'pingpong_relay'}
        )
        if not same:
            mismatches.append(index)
    summary = {
        'expected': count,
        'received': len(received),
        'intact': len(received) - len(mismatches),
        'first_mismatch': mismatches[0] if mismatches else None,
        'seconds': round(elapsed, 3),
        'ros_domain_id': os.environ.get('ROS_DOMAIN_ID', '0'),
        'discovery_range': os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'SUBNET (default)'),
    }
    print(json.dumps(summary), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(received) == count and not mismatches else 1


def run_all(prefix: str, count: int, timeout: float) -> int:
    """The demo: three processes on a leased, localhost-only ROS domain."""
    import subprocess

    from schnitzel_stream_ros.testing import processes
    from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

    with lease_domain() as lease:
        env = localhost_env(lease.domain_id)
        args = ['--prefix', prefix, '--count', str(count), '--timeout', str(timeout)]
        module = ['-m', 'schnitzel_stream_ros.demo.pingpong']
        print(f'pingpong: source -> relay -> sink, {count} packets, ROS_DOMAIN_ID={lease.domain_id}, '
              'discovery LOCALHOST', file=sys.stderr)
        sink_cmd = processes.python_cmd(*module, 'sink', *args)
        sink = processes.start(sink_cmd, env, stdout=subprocess.PIPE, text=True)
        relay = processes.start(processes.python_cmd(*module, 'relay', *args), env)
        source = processes.start(processes.python_cmd(*module, 'source', *args), env)
        try:
            out, _ = sink.communicate(timeout=timeout + 30)
        finally:
            for proc in (source, relay, sink):
                processes.stop(proc)
        sys.stdout.write(out)
        return sink.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='pingpong', description=__doc__.splitlines()[0])
    parser.add_argument('role', nargs='?', default='all', choices=['all', 'source', 'relay', 'sink'])
    parser.add_argument('--count', type=int, default=200)
    parser.add_argument('--prefix', default='/demo')
    parser.add_argument('--timeout', type=float, default=30.0)
    args = parser.parse_args(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # DDS discovery never leaves this machine
    role = {'all': run_all, 'source': run_source, 'relay': run_relay, 'sink': run_sink}[args.role]
    return role(args.prefix, args.count, args.timeout)


if __name__ == '__main__':
    sys.exit(main())
