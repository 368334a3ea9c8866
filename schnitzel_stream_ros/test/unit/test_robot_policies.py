"""Robot telemetry lane without DDS: typed readings of real ROS message objects, the four robot
policies, and their detections through the one event builder (event protocol v0.2, Event.msg).

The runtime hands a topic source `StreamPacket(kind=raw, source_id=<topic>, payload=<message>)`
(docs/wiring.md); the tests do the same. The DDS path is test/integration/test_robot_lane.py.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState
from std_msgs.msg import Header

from schnitzel_stream_ros.codec.event_protocol import event_to_msg, msg_to_event, packet_to_event
from schnitzel_stream_ros.codec.json_values import check_json_value
from schnitzel_stream_ros.demo import sim_robot
from schnitzel_stream_ros.nodes.policy.event_builder import ProtocolV02EventBuilderNode
from schnitzel_stream_ros.nodes.policy.zones import ZoneError, evaluate, parse_zones
from schnitzel_stream_ros.nodes.robot.battery import CRITICAL, LOW, OK, BatteryPolicyNode, next_state
from schnitzel_stream_ros.nodes.robot.diagnostics import DiagnosticsPolicyNode
from schnitzel_stream_ros.nodes.robot.geofence import GeofencePolicyNode
from schnitzel_stream_ros.nodes.robot.stall import StallPolicyNode
from schnitzel_stream_ros.nodes.sensors.reading import sensor_packet
from schnitzel_stream_ros.nodes.sensors.ros_topic import RosSensorTopicSource
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import ParamError, SimpleContext, resolve_params

T0 = 1771070400  # 2026-02-14T12:00:00Z


def make(cls, **params):
    ctx = SimpleContext(node_id=cls.__name__, params=resolve_params(cls, params))
    plugin = cls(ctx)
    plugin.setup()
    return plugin, ctx


def stamp(t: float) -> Time:
    sec = math.floor(t)
    return Time(sec=T0 + sec, nanosec=round((t - sec) * 1e9))


def _ts(t: float) -> str:
    from datetime import UTC, datetime, timedelta

    from schnitzel_stream_ros.packet import format_ts

    return format_ts(datetime.fromtimestamp(T0, UTC) + timedelta(microseconds=round(t * 1e6)))


def odom(x, y, t=0.0, vx=0.0, frame='map', yaw=0.0):
    msg = Odometry(header=Header(stamp=stamp(t), frame_id=frame), child_frame_id='base_link')
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    msg.twist.twist.linear.x = float(vx)
    return msg


def reading(source, msg, topic='/robot/odom'):
    return source.process(StreamPacket.new('raw', topic, msg))


# -- typed readings ---------------------------------------------------------------------------------
def test_odometry_reading_is_flat_with_header_time_and_heading():
    source, _ = make(RosSensorTopicSource, topic='/robot/odom', message_type='nav_msgs/msg/Odometry',
                     sensor_id='robot1')
    msg = odom(3.0, -1.5, t=1.25, vx=0.6, yaw=math.pi / 2)
    msg.twist.twist.linear.y = 0.8
    out = reading(source, msg)
    p = out.payload
    assert (out.kind, out.source_id, out.ts, p['sensor_ts']) == ('sensor', 'robot1', _ts(1.25), _ts(1.25))
    assert (p['sensor_type'], p['x'], p['y'], p['frame_id'], p['child_frame_id']) == (
        'odometry', 3.0, -1.5, 'map', 'base_link')
    assert p['yaw_rad'] == pytest.approx(math.pi / 2) and p['speed_mps'] == pytest.approx(1.0)
    check_json_value(p, 'payload')


def test_battery_diagnostics_and_command_readings():
    source, _ = make(RosSensorTopicSource, topic='/b', message_type='sensor_msgs/msg/BatteryState')
    msg = BatteryState(header=Header(stamp=stamp(2.0), frame_id='pack0'), percentage=float('nan'),
                       voltage=24.1, present=True,
                       power_supply_status=BatteryState.POWER_SUPPLY_STATUS_CHARGING,
                       power_supply_health=BatteryState.POWER_SUPPLY_HEALTH_OVERHEAT)
    p = reading(source, msg, '/b').payload
    assert (p['sensor_type'], p['percentage'], p['quality'], p['sensor_id']) == (
        'battery', None, 'no_percentage', 'pack0')
    assert (p['power_supply_status'], p['health'], p['present']) == ('charging', 'overheat', True)
    assert p['voltage_v'] == pytest.approx(24.1)

    source, _ = make(RosSensorTopicSource, topic='/diagnostics',
                     message_type='diagnostic_msgs/msg/DiagnosticArray', sensor_id='robot1')
    status = DiagnosticStatus(level=DiagnosticStatus.ERROR, name='robot1/motors', message='over current',
                              hardware_id='mc1', values=[KeyValue(key='amps', value='31')])
    many = [DiagnosticStatus(level=DiagnosticStatus.OK, name=f's{i}') for i in range(300)]
    p = reading(source, DiagnosticArray(header=Header(stamp=stamp(3.0)), status=[status, *many])).payload
    assert p['statuses'][0] == {'name': 'robot1/motors', 'level': 'ERROR', 'level_code': 2,
                                'message': 'over current', 'hardware_id': 'mc1', 'values': {'amps': '31'}}
    assert len(p['statuses']) == 256 and p['statuses_truncated'] == 301  # bounded, and says so
    assert p['max_level'] == 2

    source, _ = make(RosSensorTopicSource, topic='/cmd', message_type='geometry_msgs/msg/TwistStamped')
    cmd = TwistStamped(header=Header(stamp=stamp(4.0), frame_id='base_link'))
    cmd.twist.linear.x, cmd.twist.linear.y = 0.3, 0.4
    p = reading(source, cmd, '/cmd').payload
    assert (p['sensor_type'], p['sensor_ts']) == ('velocity_command', _ts(4.0))
    assert p['speed_mps'] == pytest.approx(0.5)
    source, _ = make(RosSensorTopicSource, topic='/cmd_vel', message_type='geometry_msgs/msg/Twist')
    out = reading(source, Twist(), '/cmd_vel')  # no header: receive time, sensor id = topic
    assert out.payload['speed_mps'] == 0.0 and out.source_id == '/cmd_vel'


# -- zones in a frame --------------------------------------------------------------------------------
ZONES = [
    {'zone_id': 'dock', 'polygon': [[0, 300], [640, 300], [640, 480], [0, 480]]},  # camera pixels
    {'zone_id': 'aisle', 'frame_id': 'map', 'polygon': [[3, -1], [6, -1], [6, 1], [3, 1]]},
    {'zone_id': 'charger', 'frame_id': 'map', 'polygon': [[10, -1], [12, -1], [12, 1], [10, 1]]},
]


def test_frame_zones_are_geofences_and_never_apply_to_camera_boxes():
    zones = parse_zones(ZONES, 'zones.yaml')
    # a box whose foot point (4.5, 0.5) is inside 'aisle' numerically: camera zones only
    assert evaluate({'x1': 4, 'y1': 0, 'x2': 5, 'y2': 0.5}, zones) == {'zone_id': '', 'inside': False}
    assert evaluate({'x1': 100, 'y1': 200, 'x2': 140, 'y2': 400}, zones)['zone_id'] == 'dock'
    with pytest.raises(ZoneError, match=r'zones\[0\]: a zone is on a camera image .* not both'):
        parse_zones([{**ZONES[1], 'camera_id': 'cam1'}], 'zones.yaml')
    with pytest.raises(ZoneError, match=r'zones\[0\].frame_id: must be a string'):
        parse_zones([{**ZONES[1], 'frame_id': 3}], 'zones.yaml')


def pose(x, y, t, robot='robot1', frame='map', **extra):
    return sensor_packet(robot, 'odometry', _ts(t), {'x': x, 'y': y, 'frame_id': frame, **extra})


def events_of(builder, detections):
    out = []
    for det in detections:
        out.extend(builder.process(det))
    return [packet_to_event(p) for p in out]


def test_geofence_enter_and_exit_at_the_crossing_points_through_the_event_builder():
    fence, ctx = make(GeofencePolicyNode, zones=ZONES, frame_id='map')
    builder, _ = make(ProtocolV02EventBuilderNode, site_id='S001')
    detections = []
    for i in range(61):  # the simulated robot's path: 0.25 m steps along x
        detections.extend(fence.process(pose(i * 0.25, 0.0, i / 10)) or [])
    events = events_of(builder, detections)
    got = [(e['event_type'], e['zone']['zone_id'], e['zone']['inside'], e['sensor']['x'], e['ts'])
           for e in events]
    assert got == [
        ('GEOFENCE_ENTER', 'aisle', True, 3.0, _ts(1.2)),  # first point on the boundary: inside
        ('GEOFENCE_EXIT', 'aisle', False, 6.25, _ts(2.5)),  # first point past it
        ('GEOFENCE_ENTER', 'charger', True, 10.0, _ts(4.0)),
        ('GEOFENCE_EXIT', 'charger', False, 12.25, _ts(4.9)),
    ]
    first = events[0]
    assert (first['camera_id'], first['object_type'], first['severity'], first['bbox']) == (
        'robot1', 'ROBOT', 'MEDIUM', {'x1': 0, 'y1': 0, 'x2': 0, 'y2': 0})
    assert events[1]['severity'] == 'INFO'
    assert msg_to_event(event_to_msg(first)) == first  # typed Event.msg round trip, identity checked
    assert ctx.counters['enters_total'] == 2 and ctx.counters['exits_total'] == 2


def test_geofence_first_pose_frames_and_direct_zone_change():
    fence, ctx = make(GeofencePolicyNode, zones=ZONES, frame_id='map', max_robots=2)
    started = fence.process(pose(4, 0, 0))
    assert [d.payload['event_type'] for d in started] == ['GEOFENCE_ENTER']  # starts inside: an event
    assert fence.process(pose(1, 0, 0, robot='r2')) == []  # starts outside: nothing
    assert fence.process(pose(4, 0, 0, frame='odom')) is None  # another frame: not transformed
    assert ctx.counters['frame_mismatch_total'] == 1
    moved = fence.process(pose(11, 0, 1))  # aisle -> charger in one step: exit, then enter
    assert [(d.payload['event_type'], d.payload['zone']['zone_id']) for d in moved] == [
        ('GEOFENCE_EXIT', 'aisle'), ('GEOFENCE_ENTER', 'charger')]
    fence.process(pose(1, 0, 0, robot='r3'))  # a third robot: the least recently heard is forgotten
    assert ctx.counters['robots_evicted_total'] == 1
    assert fence.process(pose(float('nan'), 0, 2)) is None and ctx.counters['no_pose_total'] == 1


def test_geofence_reads_the_cameras_zone_file(tmp_path):
    import yaml

    path = tmp_path / 'zones.yaml'
    path.write_text(yaml.safe_dump({'zones': ZONES}))
    fence, _ = make(GeofencePolicyNode, source='file', file_path=str(path))
    assert fence.process(pose(3, 1, 0))[0].payload['zone'] == {'zone_id': 'aisle', 'inside': True}


def test_battery_hysteresis_rule():
    lo, cr, h = 0.2, 0.1, 0.05
    states, state = [], None
    for v in (0.5, 0.21, 0.2, 0.22, 0.19, 0.249, 0.25, 0.2, 0.1, 0.14, 0.15, 0.3, 0.05):
        state = next_state(state, v, lo, cr, h)
        states.append(state)
    assert states == [OK, OK, LOW, LOW, LOW, LOW, OK, LOW, CRITICAL, CRITICAL, LOW, OK, CRITICAL]
    assert next_state(None, 0.15, lo, cr, h) == LOW and next_state(None, 0.05, lo, cr, h) == CRITICAL


def battery(value, t, robot='robot1'):
    return sensor_packet(robot, 'battery', _ts(t), {'percentage': value})


def test_battery_events_once_per_change_of_state_despite_ripple():
    node, ctx = make(BatteryPolicyNode)
    builder, _ = make(ProtocolV02EventBuilderNode, site_id='S001')
    values = [0.3 - 0.005 * i + 0.03 * math.sin(i) for i in range(60)]
    raw_low_crossings = sum(1 for a, b in itertools.pairwise(values) if a > 0.2 >= b)
    assert raw_low_crossings > 1  # without hysteresis this trace would alarm more than once
    detections = [d for i, v in enumerate(values) if (d := node.process(battery(v, i / 10))) is not None]
    events = events_of(builder, detections)
    assert [(e['event_type'], e['severity']) for e in events] == [
        ('BATTERY_LOW', 'MEDIUM'), ('BATTERY_CRITICAL', 'CRITICAL')]
    first_low = next(i for i, v in enumerate(values) if v <= 0.2)
    assert events[0]['ts'] == _ts(first_low / 10) and events[0]['sensor']['percentage'] == values[first_low]
    node.process(battery(0.9, 7.0))
    assert node.process(battery(0.9, 7.1)) is None
    assert ctx.counters['ok_total'] == 1
    assert node.process(battery(None, 8)) is None and ctx.counters['no_value_total'] == 1


def test_battery_thresholds_are_checked():
    assert BatteryPolicyNode.check_params({'low': 0.1, 'critical': 0.2}) == [
        "parameter 'critical': 0.2 must be below low (0.1)"]
    with pytest.raises(ParamError, match=r"'hysteresis': -0\.1 is below the minimum"):
        resolve_params(BatteryPolicyNode, {'hysteresis': -0.1})


def command(speed, t, robot='robot1'):
    return sensor_packet(robot, 'velocity_command', _ts(t), {'speed_mps': speed})


def test_stall_when_commanded_but_the_pose_does_not_move():
    node, ctx = make(StallPolicyNode, stall_sec=1.0)
    out = []
    for i in range(40):
        t = i / 10
        node.process(command(0.5, t), 'command')
        x = min(i, 10) * 0.05 if i < 30 else 0.5 + (i - 30) * 0.05  # stuck at 0.5 m from t=1.0 to 3.0
        # wheels keep reporting the commanded speed: only the pose shows the stall
        for det in node.process(pose(x, 0.0, t, speed_mps=0.5), 'odometry') or ():
            out.append((i, det))
    assert len(out) == 1
    i, det = out[0]
    assert i == 21  # stuck from sample 11 (first zero-speed pose) + 1.0 s
    assert det.payload['event_type'] == 'ROBOT_STALLED' and det.payload['sensor']['stalled_sec'] == 1.0
    assert det.payload['sensor']['command']['speed_mps'] == 0.5
    assert ctx.counters['stalls_total'] == 1

    # trusting the wheel twist instead, the same stuck robot never stalls
    twist, _ = make(StallPolicyNode, stall_sec=1.0, measured_from='twist')
    stalls = 0
    for i in range(30):
        twist.process(command(0.5, i / 10), 'command')
        stalls += len(twist.process(pose(0.5, 0.0, i / 10, speed_mps=0.5), 'odometry') or ())
    assert stalls == 0


def test_stall_matches_commands_by_stamp_when_the_command_lane_runs_ahead():
    """The two ports arrive through separate topics and inboxes: a backed-up odometry lane can be
    seconds behind the commands. The stop command at the end must not hide the stall before it."""
    node, ctx = make(StallPolicyNode, stall_sec=1.0, max_commands=64)
    for i in range(40):  # every command first: move at 0.5 m/s, stop from t=3.5
        node.process(command(0.5 if i < 35 else 0.0, i / 10), 'command')
    out = []
    for i in range(40):
        x = min(i, 10) * 0.05 if i < 30 else 0.5 + (i - 30) * 0.05  # stuck from t=1.0 to 3.0
        for det in node.process(pose(x, 0.0, i / 10), 'odometry') or ():
            out.append((i, det.payload['sensor']['command']['speed_mps']))
    assert out == [(21, 0.5)]
    assert ctx.counters.get('commands_evicted_total', 0) == 0

    bounded, bounded_ctx = make(StallPolicyNode, max_commands=8)
    for i in range(20):
        bounded.process(command(0.5, i / 10), 'command')
    assert bounded_ctx.counters['commands_evicted_total'] == 12


def test_stall_waits_for_the_command_lane_when_the_odometry_runs_ahead():
    """The reverse skew: a loaded machine took the odometry backlog first, the commands of the
    same seconds come after it. Judged at once, every pose would find only stale commands and the
    stall would be missed (command_wait_sec 0 shows that); waiting for the command lane finds it."""
    xs = [min(i, 10) * 0.05 if i < 30 else 0.5 + (i - 30) * 0.05 for i in range(40)]  # stuck t=1..3
    for wait, expected in ((2.0, [(21, 0.5)]), (0.0, [])):
        node, ctx = make(StallPolicyNode, stall_sec=1.0, command_wait_sec=wait)
        out = [node.process(pose(x, 0.0, i / 10), 'odometry') for i, x in enumerate(xs)]
        assert out == [None] * 40  # nothing can be judged yet (or, without waiting: no command in force)
        for i in range(40):
            for det in node.process(command(0.5, i / 10), 'command') or ():
                out.append((i, det.payload['sensor']['command']['speed_mps']))
        assert out[40:] == expected
        assert ctx.counters.get('poses_waited_out_total', 0) == 0


def test_waiting_poses_are_judged_when_the_commands_stop_or_too_many_wait():
    node, ctx = make(StallPolicyNode, stall_sec=0.5, command_timeout_sec=0.5, command_wait_sec=0.05)
    assert StallPolicyNode.tick_period(node.params) == 0.05
    node.process(command(0.5, 0.0), 'command')  # the controller's last command
    results = [node.process(pose(0.0, 0.0, i / 10), 'odometry') for i in range(30)]
    assert all(r is None for r in results)
    assert node.on_tick() is None and ctx.counters.get('poses_waited_out_total', 0) == 0  # still waiting
    time.sleep(0.06)
    assert node.on_tick() is None  # judged now: the command went stale after 0.5 s, before stall_sec
    assert ctx.counters['poses_waited_out_total'] == 29
    assert not any(r.waiting for r in node.robots.values())

    # a stall found by a waited-out reading comes out of on_tick
    node, ctx = make(StallPolicyNode, stall_sec=0.5, command_timeout_sec=1.0, command_wait_sec=0.05)
    node.process(command(0.5, 0.0), 'command')
    for i in range(10):
        node.process(pose(0.0, 0.0, i / 10), 'odometry')
    time.sleep(0.06)
    (det,) = node.on_tick()
    assert det.payload['event_type'] == 'ROBOT_STALLED' and det.payload['sensor']['stalled_sec'] == 0.5

    bounded, bounded_ctx = make(StallPolicyNode, max_waiting_poses=4, command_wait_sec=60.0)
    for i in range(10):
        bounded.process(pose(0.0, 0.0, i / 10), 'odometry')
    (robot,) = bounded.robots.values()
    assert [t for t, _, _ in robot.waiting] == [bounded._time_us(pose(0, 0, i / 10)) for i in range(6, 10)]
    assert bounded_ctx.counters['poses_waited_out_total'] == 6


def diag(level, t, name='robot1/motors', robot='robot1'):
    status = {'name': name, 'level': level, 'level_code': 0, 'message': 'm', 'hardware_id': '', 'values': {}}
    return sensor_packet(robot, 'diagnostics', _ts(t), {'statuses': [status], 'max_level': 0})


def test_diagnostics_error_once_until_it_recovers():
    node, _ = make(DiagnosticsPolicyNode)
    builder, _ = make(ProtocolV02EventBuilderNode, site_id='S001')
    levels = ['OK', 'ERROR', 'ERROR', 'WARN', 'ERROR', 'STALE']
    detections = [d for i, lv in enumerate(levels) if (d := node.process(diag(lv, i))) is not None]
    events = events_of(builder, detections)
    assert [(e['event_type'], e['ts'], e['severity']) for e in events] == [
        ('ROBOT_DIAGNOSTIC_ERROR', _ts(1), 'HIGH'), ('ROBOT_DIAGNOSTIC_ERROR', _ts(4), 'HIGH')]
    assert events[0]['sensor']['statuses'][0]['name'] == 'robot1/motors'
    assert DiagnosticsPolicyNode.check_params({'levels': ['FATAL']}) == [
        "parameter 'levels': 'FATAL' is not one of ['OK', 'WARN', 'ERROR', 'STALE']"]


def test_diagnostics_names_are_patterns_that_keep_other_nodes_statuses_out():
    """/diagnostics also carries our containers' statuses (`/site/lanes: det`): name the robots."""
    node, _ = make(DiagnosticsPolicyNode, names=['robot1/*'])
    ours = node.process(diag('ERROR', 1, name='/site/lanes: det', robot='site'))
    theirs = node.process(diag('ERROR', 2))
    assert ours is None and theirs is not None


def test_simulated_robot_plan_is_exact_on_axis_aligned_paths():
    args = sim_robot.build_parser().parse_args(
        ['--path', '0,0;15,0;15,5', '--speed', '2.5', '--rate-hz', '10', '--stall-at', '1:2'])
    plan = sim_robot.plan(args)
    xs = [s.x for s in plan]
    assert xs[:10] == [i * 0.25 for i in range(10)] and xs[10:21] == [2.5] * 11  # stuck for 1 s
    assert plan[15].command_mps == 2.5 and plan[15].wheel_mps == 2.5
    corner = next(s for s in plan if s.y > 0)
    assert (corner.x, corner.y) == (15.0, 0.25) and corner.yaw == pytest.approx(math.pi / 2)
    assert plan[-1].command_mps == 0.0 and (plan[-1].x, plan[-1].y) == (15.0, 5.0)
    assert np.float32(plan[0].battery) == np.float32(1.0)


def test_geofence_on_gnss_fixes_in_a_wgs84_frame():
    """NavSatFix readings (the existing typed converter) against zones drawn in longitude/latitude."""
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    gnss, _ = make(RosSensorTopicSource, topic='/robot/fix', message_type='sensor_msgs/msg/NavSatFix',
                   sensor_id='robot1')
    yard = {'zone_id': 'yard', 'frame_id': 'wgs84',
            'polygon': [[16.370, 48.200], [16.380, 48.200], [16.380, 48.210], [16.370, 48.210]]}
    fence, ctx = make(GeofencePolicyNode, zones=[yard], frame_id='wgs84', x_field='longitude',
                      y_field='latitude')
    out = []
    for i, lon in enumerate((16.365, 16.372, 16.385)):
        fix = NavSatFix(header=Header(stamp=stamp(i), frame_id='gps'), latitude=48.205, longitude=lon)
        fix.status.status = NavSatStatus.STATUS_FIX
        out.extend(fence.process(reading(gnss, fix, '/robot/fix')) or [])
    assert [(d.payload['event_type'], d.payload['sensor']['longitude'], d.ts) for d in out] == [
        ('GEOFENCE_ENTER', 16.372, _ts(1)), ('GEOFENCE_EXIT', 16.385, _ts(2))]
    assert ctx.counters['poses_total'] == 3
