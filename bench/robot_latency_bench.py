"""Robot lane latency: from the robot's message to the typed Event another process receives.

    python bench/robot_latency_bench.py [--seconds 30] [--rate-hz 50]     # prints one JSON object

Lane: `sim_robot` loops the path (0,0) -> (4,0) at 5 m/s and `--rate-hz`, crossing four 0.5 m zones
per lap (8 geofence events a lap), battery draining; `schnitzel-stream run` of the robot graph
(four typed topic sources, geofence / battery / stall / diagnostics policies, the event builder,
RobotEventSink on /site/events); a listener process receives every Event. Latency of an event =
its receive time − its `ts`, which is the header stamp of the Odometry (or BatteryState) message it
came from — the stamp is the publication time, so this is message -> event across three processes.

Baseline in the same run: the same simulator and listener with a plain rclpy relay instead of the
graph (subscribe Odometry, republish it unchanged): the floor of two DDS hops on this machine.
Same clock on both sides (one machine), so no clock offset enters.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.testing import processes  # noqa: E402
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env  # noqa: E402

LISTENER = '''
import json, sys, time
import rclpy
from rclpy.qos import QoSProfile
kind, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
if kind == 'event':
    from schnitzel_stream_msgs.msg import Event as Msg
else:
    from nav_msgs.msg import Odometry as Msg
rclpy.init()
node = rclpy.create_node('latency_listener')
latencies = []
types = {}
def on_msg(msg):
    now = time.time_ns()
    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    latencies.append((now - stamp) / 1e6)
    if kind == 'event':
        types[msg.event_type] = types.get(msg.event_type, 0) + 1
node.create_subscription(Msg, topic, on_msg, QoSProfile(depth=100))
print('ready', flush=True)
while node.count_publishers(topic) < 1:
    rclpy.spin_once(node, timeout_sec=0.05)
time.sleep(0.5)
print('matched', flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
print(json.dumps({'latencies_ms': latencies, 'types': types}), flush=True)
'''

RELAY = '''
import rclpy
from nav_msgs.msg import Odometry
rclpy.init()
node = rclpy.create_node('plain_relay')
pub = node.create_publisher(Odometry, '/relay/odom', 10)
node.create_subscription(Odometry, '/robot/odom', pub.publish, 10)
try:
    rclpy.spin(node)
except BaseException:
    pass
'''

ZONES = [{'zone_id': f'z{i}', 'frame_id': 'map',
          'polygon': [[i + 0.45, -1], [i + 0.95, -1], [i + 0.95, 1], [i + 0.45, 1]]} for i in range(4)]


def robot_graph(path: Path) -> Path:
    def source(node_id: str, topic: str, message_type: str) -> dict:
        return {'id': node_id, 'kind': 'source', 'plugin': 'RosSensorTopicSource',
                'config': {'topic': topic, 'message_type': message_type, 'sensor_id': 'robot1'}}

    graph = {
        'version': 2,
        'nodes': [
            source('odom', '/robot/odom', 'nav_msgs/msg/Odometry'),
            source('cmd', '/robot/cmd_vel', 'geometry_msgs/msg/TwistStamped'),
            source('battery', '/robot/battery', 'sensor_msgs/msg/BatteryState'),
            source('diag', '/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray'),
            {'id': 'geofence', 'plugin': 'GeofencePolicyNode', 'config': {'zones': ZONES}},
            {'id': 'battery_policy', 'plugin': 'BatteryPolicyNode', 'config': {}},
            {'id': 'stall', 'plugin': 'StallPolicyNode', 'config': {}},
            {'id': 'diagnostics', 'plugin': 'DiagnosticsPolicyNode', 'config': {}},
            {'id': 'events', 'plugin': 'ProtocolV02EventBuilderNode', 'config': {'site_id': 'S001'}},
            {'id': 'robots', 'kind': 'sink', 'plugin': 'RobotEventSink', 'config': {},
             'topics': {'events': '/site/events'}},
        ],
        'edges': [
            {'from': 'odom', 'to': 'geofence'}, {'from': 'odom', 'to': 'stall', 'to_port': 'odometry'},
            {'from': 'cmd', 'to': 'stall', 'to_port': 'command'}, {'from': 'battery', 'to': 'battery_policy'},
            {'from': 'diag', 'to': 'diagnostics'}, {'from': 'geofence', 'to': 'events'},
            {'from': 'battery_policy', 'to': 'events'}, {'from': 'stall', 'to': 'events'},
            {'from': 'diagnostics', 'to': 'events'}, {'from': 'events', 'to': 'robots'},
        ],
    }
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def measure(env: dict, tmp: Path, middle: list[str], kind: str, topic: str, args) -> dict:
    listener_script = tmp / 'listener.py'
    listener_script.write_text(LISTENER)
    sim = [sys.executable, '-m', 'schnitzel_stream_ros.demo.sim_robot', '--path', '0,0;4,0', '--loop',
           '--speed', '5', '--rate-hz', str(args.rate_hz), '--duration', str(args.seconds),
           '--battery-start', '0.35', '--battery-drain', str(0.3 / args.seconds),
           '--wait-subscribers', '1', '--wait-topics', 'odom', '--linger-sec', '1']
    listener = processes.start([sys.executable, str(listener_script), kind, topic, str(args.seconds + 5)],
                               env, stdout=subprocess.PIPE, text=True)
    mid = robot = None
    try:
        assert listener.stdout.readline().strip() == 'ready'
        mid = processes.start(middle, env, stdout=(tmp / f'{kind}.log').open('w'), stderr=subprocess.STDOUT)
        assert listener.stdout.readline().strip() == 'matched'
        robot = processes.start(sim, env, stdout=subprocess.PIPE, text=True)
        out, _ = listener.communicate(timeout=args.seconds + 60)
        robot.communicate(timeout=30)
    finally:
        for proc in (robot, mid, listener):
            if proc is not None:
                processes.stop(proc)
    result = json.loads(out.strip().splitlines()[-1])
    lat = result['latencies_ms']
    summary = {'messages': len(lat), 'p50_ms': percentile(lat, 0.5), 'p99_ms': percentile(lat, 0.99),
               'max_ms': round(max(lat), 3) if lat else None}
    if result['types']:
        summary['event_types'] = result['types']
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--rate-hz', type=float, default=50.0)
    args = parser.parse_args()
    with lease_domain() as lease, tempfile.TemporaryDirectory() as tmp_dir:
        env = localhost_env(lease.domain_id)
        tmp = Path(tmp_dir)
        graph = robot_graph(tmp / 'robot.yaml')
        run = [sys.executable, '-m', 'schnitzel_stream_ros.cli', 'run', str(graph), '--quiet',
               '--duration', str(args.seconds + 60)]
        lane = measure(env, tmp, run, 'event', '/site/events', args)
        relay_script = tmp / 'relay.py'
        relay_script.write_text(RELAY)
        baseline = measure(env, tmp, [sys.executable, str(relay_script)], 'odom', '/relay/odom', args)
    print(json.dumps({
        'bench': 'robot_latency',
        'seconds': args.seconds, 'rate_hz': args.rate_hz,
        'robot_lane_message_to_event': lane,
        'baseline_plain_rclpy_relay': baseline,
        'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
