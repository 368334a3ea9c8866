"""Person-follow lane: upstream's graph loads unchanged, the control law, and the /cmd_vel sink's safety.

The DDS side (a separate process receiving /cmd_vel, stall/pause/e-stop deadlines) is in
test/integration/test_person_follow_lane.py.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from geometry_msgs.msg import TwistStamped
from std_msgs.msg import Bool

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate
from schnitzel_stream_ros.graph.wiring import node_load_request
from schnitzel_stream_ros.nodes.robot.cmd_vel_sink import Ros2CmdVelSink, command_of
from schnitzel_stream_ros.nodes.robot.person_follow import PersonFollowCmdVelNode
from schnitzel_stream_ros.packet import Kind, StreamPacket, format_ts
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

GRAPH = (Path(__file__).resolve().parents[1] / 'graphs' / 'upstream_exp'
         / 'dev_webcam_yolo_person_follow_ros2_v2.yaml')
W, H = 640, 480


def make(cls, **params):
    ctx = SimpleContext(node_id=cls.__name__, params=resolve_params(cls, params))
    plugin = cls(ctx)
    plugin.setup()
    return plugin, ctx


def frame(*boxes, ts: str | None = None, **extra) -> StreamPacket:
    """A frame packet in upstream's shape: payload {frame_width, frame_height, detections}."""
    dets = [{'bbox': dict(zip(('x1', 'y1', 'x2', 'y2'), box, strict=True)), 'class_id': 0,
             'class_name': 'person', 'confidence': 0.9, **extra} for box in boxes]
    payload = {'frame_width': W, 'frame_height': H, 'detections': dets}
    return StreamPacket.new(Kind.FRAME, 'cam', payload, ts=ts)


def box(cx: float, height: float, width: float = 80) -> tuple[float, float, float, float]:
    return (cx - width / 2, H / 2 - height / 2, cx + width / 2, H / 2 + height / 2)


# -- upstream's graph ---------------------------------------------------------------------------
def test_upstream_person_follow_graph_validates_unchanged_and_maps_to_our_plugins(monkeypatch):
    monkeypatch.setenv('SS_YOLO_MODEL_PATH', 'models/person.onnx')
    monkeypatch.setenv('SS_FOLLOW_MAX_LINEAR', '0.25')
    result = load_and_validate(GRAPH, PluginRegistry(Allowlist()))
    assert result.errors == [] and result.ok
    graph = result.graph
    assert [n.plugin_ref.rsplit(':', 1)[1] for n in graph.nodes] == [
        'OpenCvWebcamSource', 'YoloV8DetectorNode', 'PersonFollowCmdVelNode', 'Ros2CmdVelSink']
    assert graph.node('yolo').params['model_path'] == 'models/person.onnx'  # from the environment
    follow = graph.node('follow').params
    assert follow['max_linear'] == 0.25 and follow['target_select'] == 'largest'
    assert follow['person_class_ids'] == [0] and follow['allow_reverse'] is False
    (into_follow,) = graph.inputs_of('follow')
    assert (into_follow.inbox_max, str(into_follow.overflow)) == (1, 'drop_oldest')
    sink = graph.node('cmd_vel')
    assert sink.output_topics['cmd_vel'] == '/cmd_vel'  # the sink's `topic` parameter names it
    assert '~/cmd_vel:=/cmd_vel' in node_load_request(graph, sink).remap_rules


def test_cmd_vel_topic_parameter_is_checked_at_its_line(tmp_path):
    text = GRAPH.read_text().replace('${oc.env:SS_CMD_VEL_TOPIC,/cmd_vel}', "'cmd vel'")
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    result = load_and_validate(path, PluginRegistry(Allowlist()))
    (error,) = result.errors
    assert "node 'cmd_vel'" in str(error) and "parameter 'topic'" in str(error)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "'cmd vel'" in t)
    assert f'bad.yaml:{line}:' in str(error)


# -- control law ------------------------------------------------------------------------------
def follow_cmd(plugin, packet):
    (out,) = [plugin.process(packet)]
    return out.payload


def test_target_left_right_near_far_give_upstream_signs_and_bounds():
    follow, _ = make(PersonFollowCmdVelNode)
    centred_far = follow_cmd(follow, frame(box(W / 2, 0.2 * H)))
    assert centred_far['linear_x'] == pytest.approx(0.8 * (0.35 - 0.2)) and centred_far['angular_z'] == 0.0
    too_close = follow_cmd(follow, frame(box(W / 2, 0.8 * H)))
    assert too_close['linear_x'] == 0.0  # no reverse unless allowed
    very_far = follow_cmd(follow, frame(box(W / 2, 0.01 * H)))
    assert very_far['linear_x'] == pytest.approx(0.18)  # clamped to max_linear
    left = follow_cmd(follow, frame(box(W * 0.2, 0.35 * H)))
    right = follow_cmd(follow, frame(box(W * 0.8, 0.35 * H)))
    assert left['angular_z'] > 0 > right['angular_z']  # REP 103: positive z turns left
    assert left['angular_z'] == pytest.approx(-right['angular_z']) == pytest.approx(1.2 * 0.6)
    far_left = follow_cmd(follow, frame(box(W * 0.2, 0.1 * H)))
    assert far_left['linear_x'] == 0.0  # off centre beyond center_error_for_linear: turn first
    deadband = follow_cmd(follow, frame(box(W / 2, 0.33 * H)))
    assert deadband['linear_x'] == 0.0 and deadband['target_found'] is True


def test_reverse_min_linear_target_selection_and_non_persons():
    follow, ctx = make(PersonFollowCmdVelNode, allow_reverse=True, min_linear=0.05, target_select='center')
    assert follow_cmd(follow, frame(box(W / 2, 0.8 * H)))['linear_x'] == pytest.approx(-0.18)
    assert follow_cmd(follow, frame(box(W / 2, 0.37 * H)))['linear_x'] == 0.0  # deadband still
    assert follow_cmd(follow, frame(box(W / 2, 0.34 * H), ))['linear_x'] == 0.0
    assert follow_cmd(follow, frame(box(W / 2, 0.29 * H)))['linear_x'] == pytest.approx(0.05)  # min_linear
    # centre selection picks the centred small box over the large one at the edge
    chosen = follow_cmd(follow, frame(box(W * 0.9, 0.9 * H, 60), box(W / 2 + 10, 0.2 * H)))
    assert chosen['target_bbox']['x1'] == round(W / 2 + 10 - 40) and chosen['candidate_count'] == 2
    cat = frame(box(W / 2, 0.2 * H), class_id=15, class_name='cat')
    weak = frame(box(W / 2, 0.2 * H), confidence=0.1)
    broken = StreamPacket.new(Kind.FRAME, 'cam', {'detections': [{'bbox': {'x1': 'a'}}, 'junk', {}]})
    for packet in (cat, weak, broken):
        stop = follow_cmd(follow, packet)
        assert (stop['linear_x'], stop['angular_z'], stop['target_found']) == (0.0, 0.0, False)
    assert ctx.counters['stops_no_target_total'] == 3


def test_suite_detector_output_meta_detections_and_frame_shape_are_read():
    import numpy as np

    follow, _ = make(PersonFollowCmdVelNode)
    image = np.zeros((200, 400, 3), dtype=np.uint8)
    det = {'bbox': {'x1': 300, 'y1': 50, 'x2': 380, 'y2': 150}, 'class_id': 0, 'class_name': 'person',
           'confidence': 0.8}
    packet = StreamPacket.new(Kind.FRAME, 'cam', image, {'detections': [det]})
    cmd = follow_cmd(follow, packet)
    assert (cmd['frame_width'], cmd['frame_height']) == (400, 200) and cmd['angular_z'] < 0
    as_detection = StreamPacket.new(Kind.DETECTION, 'cam', [det], {'frame_width': 400, 'frame_height': 200})
    assert follow_cmd(follow, as_detection)['angular_z'] == cmd['angular_z']


def test_stale_frames_pause_and_input_timeout_command_zero():
    follow, ctx = make(PersonFollowCmdVelNode, max_detection_age_sec=0.5, detection_timeout_sec=0.2)
    old = format_ts(datetime.now(UTC) - timedelta(seconds=3))
    stale = follow_cmd(follow, frame(box(W * 0.2, 0.2 * H), ts=old))
    assert (stale['linear_x'], stale['angular_z'], stale['stop_reason']) == (0.0, 0.0, 'stale_input')
    moving = follow_cmd(follow, frame(box(W * 0.2, 0.2 * H)))
    assert moving['angular_z'] > 0
    assert follow.on_tick() is None  # fresh: nothing to do
    time.sleep(0.25)
    timeout = follow.on_tick()
    assert (timeout.payload['linear_x'], timeout.payload['angular_z']) == (0.0, 0.0)
    assert follow.on_tick() is None  # once per silence
    follow.params['paused'] = True
    assert follow_cmd(follow, frame(box(W * 0.2, 0.2 * H)))['stop_reason'] == 'paused'
    assert {k: v for k, v in ctx.counters.items() if k.startswith('stops_')} == {
        'stops_stale_input_total': 1, 'stops_input_timeout_total': 1, 'stops_paused_total': 1}


# -- the /cmd_vel sink ---------------------------------------------------------------------------
def cmd(lx: float, az: float) -> StreamPacket:
    return StreamPacket.new('cmd_vel', 'follow', {'linear_x': lx, 'angular_z': az})


def published(ctx) -> list[tuple[float, float]]:
    out = [p.payload for p in ctx.outputs.pop('cmd_vel', [])]
    return [((m.twist if isinstance(m, TwistStamped) else m).linear.x,
             (m.twist if isinstance(m, TwistStamped) else m).angular.z) for m in out]


def test_sink_limits_velocity_and_acceleration_and_stops_at_once():
    sink, ctx = make(Ros2CmdVelSink, max_linear=0.3, max_angular=1.0, max_linear_accel=1.0,
                     max_angular_accel=2.0)
    sink.process(cmd(5.0, -9.0))
    ((lx, az),) = published(ctx)
    assert 0 < lx <= 0.2 + 1e-9 and -0.4 - 1e-9 <= az < 0  # a ramp of at most accel x 0.2 s
    for _ in range(40):
        time.sleep(0.02)
        sink.process(cmd(5.0, -9.0))
    *_, last = published(ctx)
    assert last == pytest.approx((0.3, -1.0))  # clamped to the velocity limits
    sink.process(cmd(float('nan'), 0.0))
    assert published(ctx) == [] and ctx.counters['invalid_commands_total'] == 1
    sink.process(StreamPacket.new('cmd_vel', 'x', {'twist': {'linear': {'x': 0.05}, 'angular': {'z': -0.1}}}))
    ((lx, az),) = published(ctx)
    assert 0.3 - 0.2 <= lx < 0.3 and -1.0 < az <= -1.0 + 0.4  # a commanded slow-down ramps too
    sink.process(cmd(0.0, 0.0))
    assert published(ctx) == [(0.0, 0.0)]  # a stop does not: zero at once
    assert command_of({'twist': {'linear': {'x': 0.1}, 'angular': {'z': 0.2}}}) == (0.1, 0.2)


def test_sink_watchdog_estop_latch_pause_and_close():
    sink, ctx = make(Ros2CmdVelSink, command_timeout_sec=0.1, max_linear_accel=0.0, max_angular_accel=0.0,
                     stop_repeat_sec=0.0, stamped=True, frame_id='base_footprint')
    sink.process(cmd(0.2, 0.5))
    assert published(ctx) == [(0.2, 0.5)]
    assert ctx.outputs == {} and sink.on_tick() is None and published(ctx) == []
    time.sleep(0.15)
    sink.on_tick()
    assert published(ctx) == [(0.0, 0.0)] and ctx.counters['stops_command_timeout_total'] == 1
    sink.on_tick()
    assert published(ctx) == []  # held; stop_repeat_sec 0 = once
    sink.process(cmd(0.2, 0.5))
    sink.process(StreamPacket.new(Kind.RAW, 'estop', Bool(data=True)), 'estop')
    assert published(ctx) == [(0.2, 0.5), (0.0, 0.0)] and ctx.counters['estop_engaged'] == 1
    sink.process(cmd(0.2, 0.5))
    sink.on_tick()
    assert published(ctx) == [] and ctx.counters['commands_refused_total'] == 1  # latched
    sink.process(StreamPacket.new(Kind.RAW, 'estop', Bool(data=False)), 'estop')
    sink.on_tick()
    assert published(ctx) == []  # released: still zero until a fresh command
    sink.process(cmd(0.1, 0.0))
    assert published(ctx) == [(0.1, 0.0)]
    sink.params['paused'] = True
    sink.on_params({'paused': True})
    sink.process(cmd(0.1, 0.0))
    assert published(ctx) == [(0.0, 0.0)]
    sink.close()
    (msg,) = [p.payload for p in ctx.outputs['cmd_vel']]
    assert isinstance(msg, TwistStamped) and msg.header.frame_id == 'base_footprint'
    assert msg.header.stamp.sec > 0 and (msg.twist.linear.x, msg.twist.angular.z) == (0.0, 0.0)
    assert {k: v for k, v in ctx.counters.items() if k.startswith('stops_')} == {
        'stops_command_timeout_total': 1, 'stops_estop_total': 1, 'stops_paused_total': 1,
        'stops_closed_total': 1}


def test_sink_ports_follow_parameters():
    inputs, outputs = Ros2CmdVelSink.ports_for({'estop_topic': '', 'stamped': True, 'forward': True})
    assert [p.name for p in inputs] == ['in']
    assert [(p.name, p.msg_type) for p in outputs] == [
        ('cmd_vel', 'geometry_msgs/msg/TwistStamped'), ('out', 'schnitzel_stream_msgs/msg/StreamPacket')]
    _, (default,) = Ros2CmdVelSink.ports_for({})
    assert default.msg_type == 'geometry_msgs/msg/Twist' and default.topic_param == 'topic'
