"""A robot in another process receives typed schnitzel_stream_msgs/Event messages over DDS.

The site side is a real graph run by the embedded runner (`schnitzel-stream run`): a simulated
distance sensor (square wave, 150 cm / 50 cm) -> SensorFusionNode raising a SENSOR_EVENT each time
the distance drops below 60 cm -> RobotEventSink publishing Event on /site/robot/events and the
legacy JSON String on /ai/events. The robot side is a plain rclpy subscriber process that checks
every message it gets with the codec (identity included) and prints a JSON summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from schnitzel_stream_ros.testing import processes

pytestmark = pytest.mark.integration

EVENT_TOPIC = '/site/robot/events'
LEGACY_TOPIC = '/ai/events'
WANTED = 5

ROBOT = textwrap.dedent(f"""
    import json, sys, time
    import rclpy
    from std_msgs.msg import String
    from schnitzel_stream_msgs.msg import Event
    from schnitzel_stream_ros.codec.event_protocol import msg_to_event

    rclpy.init()
    node = rclpy.create_node('robot')
    seen = {{'typed': 0, 'valid': 0, 'legacy': 0, 'legacy_sensor_events': 0, 'event_types': [], 'errors': []}}

    def on_event(msg):
        seen['typed'] += 1
        try:
            event = msg_to_event(msg)  # validates fields and event_id == uuid5(idempotency_key)
        except Exception as exc:
            seen['errors'].append(str(exc))
            return
        seen['valid'] += 1
        seen['event_types'].append(event['event_type'])
        seen['last'] = {{'severity': event['severity'], 'camera_id': event['camera_id'],
                        'distance_cm': (event['sensor'] or {{}}).get('distance_cm')}}

    def on_legacy(msg):
        seen['legacy'] += 1
        if json.loads(msg.data).get('event_type') == 'SENSOR_EVENT':
            seen['legacy_sensor_events'] += 1

    node.create_subscription(Event, '{EVENT_TOPIC}', on_event, 10)
    node.create_subscription(String, '{LEGACY_TOPIC}', on_legacy, 10)
    print('ready', flush=True)
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline and (seen['valid'] < {WANTED} or seen['legacy'] < {WANTED}):
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(seen), flush=True)
    node.destroy_node()
    rclpy.shutdown()
""")


#: The same three plugins, hosted by a minimal rclpy loop instead of the runtime: it does what
#: docs/wiring.md promises for ROS-typed output ports (publish the packet payload as is).
PLUGINS_PUBLISHER = textwrap.dedent(f"""
    import sys, time
    import rclpy
    from std_msgs.msg import String
    from schnitzel_stream_msgs.msg import Event
    from schnitzel_stream_ros.nodes.fusion.sensor_fusion import SensorFusionNode
    from schnitzel_stream_ros.nodes.sensors.simulated import SimulatedSensorSource
    from schnitzel_stream_ros.nodes.sinks.robot_event import RobotEventSink
    from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

    def make(cls, **params):
        ctx = SimpleContext(node_id=cls.__name__, params=resolve_params(cls, params))
        plugin = cls(ctx)
        plugin.setup()
        return plugin, ctx

    source, _ = make(SimulatedSensorSource, sensor_id='ultra1', field='distance_cm', unit='cm',
                     waveform='square', amplitude=50.0, offset=100.0, period_sec=0.2, rate_hz=20.0)
    fusion, _ = make(SensorFusionNode, emit_sensor_event=True, site_id='S001',
                     sensor_event_rule={{'field': 'distance_cm', 'below': 60.0, 'severity': 'HIGH'}})
    sink, out = make(RobotEventSink, legacy_json=True)
    rclpy.init()
    node = rclpy.create_node('site')
    typed = node.create_publisher(Event, '{EVENT_TOPIC}', 10)
    legacy = node.create_publisher(String, '{LEGACY_TOPIC}', 10)
    deadline = time.monotonic() + float(sys.argv[1])
    for reading in source.produce():
        if time.monotonic() > deadline:
            break
        event = fusion.process(reading, 'sensor')
        if event is not None:
            sink.process(event)
        for packet in out.outputs.pop('events', []):
            typed.publish(packet.payload)
        for packet in out.outputs.pop('legacy_json', []):
            legacy.publish(packet.payload)
    node.destroy_node()
    rclpy.shutdown()
""")


def site_graph(path: Path) -> Path:
    graph = {
        'version': 2,
        'nodes': [
            {
                'id': 'ultra',
                'kind': 'source',
                'plugin': 'schnitzel_stream_ros.nodes.sensors.simulated:SimulatedSensorSource',
                'config': {
                    'sensor_id': 'ultra1',
                    'field': 'distance_cm',
                    'unit': 'cm',
                    'waveform': 'square',
                    'amplitude': 50.0,
                    'offset': 100.0,
                    'period_sec': 0.2,
                    'rate_hz': 20.0,
                },
            },
            {
                'id': 'fusion',
                'plugin': 'schnitzel_stream_ros.nodes.fusion.sensor_fusion:SensorFusionNode',
                'config': {
                    'emit_sensor_event': True,
                    'site_id': 'S001',
                    'sensor_event_rule': {'field': 'distance_cm', 'below': 60.0, 'severity': 'HIGH'},
                },
            },
            {
                'id': 'robot',
                'kind': 'sink',
                'plugin': 'schnitzel_stream_ros.nodes.sinks.robot_event:RobotEventSink',
                'config': {'legacy_json': True},
                'topics': {'events': EVENT_TOPIC, 'legacy_json': LEGACY_TOPIC},
            },
        ],
        'edges': [
            {'from': 'ultra', 'to': 'fusion', 'to_port': 'sensor'},
            {'from': 'fusion', 'to': 'robot'},
        ],
    }
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def run_robot(tmp_path: Path, ros_env: dict, site_cmd: list[str]) -> dict:
    """Start the robot subscriber, then the site; the robot's JSON summary."""
    robot_script = tmp_path / 'robot.py'
    robot_script.write_text(ROBOT)
    robot = processes.start(
        [sys.executable, str(robot_script), '60'], ros_env, stdout=subprocess.PIPE, text=True
    )
    site = None
    try:
        assert robot.stdout.readline().strip() == 'ready'
        site = processes.start(site_cmd, ros_env)
        out, _ = robot.communicate(timeout=90)
    finally:
        for proc in (site, robot):
            if proc is not None:
                processes.stop(proc)
    return json.loads(out.strip().splitlines()[-1])


def check_seen(seen: dict) -> None:
    assert seen['errors'] == []
    assert seen['valid'] >= WANTED and set(seen['event_types']) == {'SENSOR_EVENT'}
    assert seen['last'] == {'severity': 'HIGH', 'camera_id': 'ultra1', 'distance_cm': 50.0}
    assert seen['legacy'] >= WANTED and seen['legacy_sensor_events'] == seen['legacy']


def test_robot_event_messages_cross_dds_typed(tmp_path, ros_env):
    """The sink's Event / String payloads, published by a bare rclpy host, reach another process intact."""
    script = tmp_path / 'site.py'
    script.write_text(PLUGINS_PUBLISHER)
    check_seen(run_robot(tmp_path, ros_env, [sys.executable, str(script), '60']))


def test_robot_receives_typed_events_from_another_process(tmp_path, ros_env):
    graph = site_graph(tmp_path / 'robot_site.yaml')
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros.cli', 'run', str(graph), '--duration', '60']
    check_seen(run_robot(tmp_path, ros_env, cmd))
