"""Person-follow lane over real DDS: the robot's /cmd_vel as another process receives it.

The follow node and the /cmd_vel sink run in our component container (a separate process, loaded
through the composition services as `ros2 component load` would). This test process plays both the
camera side — StreamPackets of frames with a synthetic person detection, published on the follow
node's input topic — and the robot: a plain rclpy subscription to /cmd_vel (geometry_msgs/Twist)
and a publisher on the e-stop topic. Checked: the signs of the commands as the person moves left,
right, nearer and farther, the velocity and acceleration bounds of every received command, and that
a stalled input, a pause (`ros2 param set`) and an e-stop each bring zero within the deadline — the
e-stop latched until released; the stop reasons counted in the report and in /diagnostics; zero
when the container stops.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time

import pytest
from composition_interfaces.srv import LoadNode
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import encode_packet
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.runtime.container_handles import container_command
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CONTAINER = '/t/robot'
FRAMES = '/t/camera/detections'
CMD_VEL = '/t/cmd_vel'
ESTOP = '/t/estop'
W, H = 640, 480
#: the sink's command timeout: the deadline of every stop
DEADLINE_SEC = 0.5
#: what DDS delivery and two node hand-offs may add on a loaded 2-core machine
DELIVERY_SLACK_SEC = 0.3
MAX_LINEAR, MAX_ANGULAR, LINEAR_ACCEL, ANGULAR_ACCEL = 0.18, 1.2, 1.0, 4.0
#: largest step the sink lets a command make at once (accel x its longest ramp step, 0.2 s)
RAMP_STEP_SEC = 0.2


class Robot(RosPeer):
    """The robot side: /cmd_vel subscriber, e-stop publisher, frame publisher, service calls."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, 'robot')
        self.lock = threading.Lock()
        self.received: list[tuple[float, float, float]] = []  # (monotonic, linear.x, angular.z)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(Twist, CMD_VEL, self._on_twist, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.frames = self.node.create_publisher(StreamPacketMsg, FRAMES, 10)
        self.estop = self.node.create_publisher(Bool, ESTOP, 10)

    def _on_twist(self, msg: Twist) -> None:
        with self.lock:
            self.received.append((time.monotonic(), msg.linear.x, msg.angular.z))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def since(self, t: float) -> list[tuple[float, float, float]]:
        with self.lock:
            return [r for r in self.received if r[0] >= t]

    def load(self, plugin: str, name: str, params: dict) -> None:
        request = LoadNode.Request(package_name='schnitzel_stream_ros', plugin_name=plugin, node_name=name,
                                   node_namespace='/t')
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in params.items()]
        answer = self.call(LoadNode, f'{CONTAINER}/_container/load_node', request)
        assert answer.success, answer.error_message

    def set_param(self, node: str, name: str, value) -> None:
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        assert self.call(SetParameters, f'{node}/set_parameters', request).results[0].successful

    def report(self) -> dict:
        return json.loads(self.call(Trigger, f'{CONTAINER}/_schnitzel/report', Trigger.Request()).message)


def frame(cx: float, height_ratio: float) -> StreamPacketMsg:
    h = height_ratio * H
    det = {'bbox': {'x1': cx - 40, 'y1': H / 2 - h / 2, 'x2': cx + 40, 'y2': H / 2 + h / 2},
           'class_id': 0, 'class_name': 'person', 'confidence': 0.9}
    payload = {'frame_width': W, 'frame_height': H, 'detections': [det]}
    return encode_packet(StreamPacket.new(Kind.FRAME, 'cam', payload))


class Camera:
    """Publishes frames at 20 Hz with the person wherever `target` says, until paused or stopped."""

    def __init__(self, robot: Robot) -> None:
        self.robot = robot
        self.target = (W / 2, 0.35)
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.last_sent = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            if self.running.is_set():
                self.robot.frames.publish(frame(*self.target))
                self.last_sent = time.monotonic()
            time.sleep(0.05)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def first_zero_after(robot: Robot, t: float, timeout: float) -> float:
    """Seconds from `t` to the first zero command received after it."""
    found = wait_for(lambda: [r for r in robot.since(t) if r[1] == 0.0 and r[2] == 0.0], timeout, 'zero')
    return found[0][0] - t


@pytest.fixture
def container(ros_env, tmp_path):
    cmd = container_command('robot', '/t', executor='events', max_events=None)
    cmd.remove('--paused')
    log = (tmp_path / 'container.log').open('w')
    proc = processes.start(cmd, ros_env, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    processes.stop(proc)
    log.close()


def test_person_follow_commands_and_every_stop_reach_another_process(container, ros_domain):
    robot = Robot(ros_domain)
    camera = Camera(robot)
    try:
        robot.load('schnitzel_stream_ros.nodes.robot.person_follow:PersonFollowCmdVelNode', 'follow', {
            'inputs.in': [FRAMES], 'allow_reverse': True, 'max_linear': MAX_LINEAR,
            'max_angular': MAX_ANGULAR, 'detection_timeout_sec': 0.3, 'max_detection_age_sec': 1.0,
            'inbox.in.max': 1, 'inbox.in.overflow': 'drop_oldest',
        })
        robot.load('schnitzel_stream_ros.nodes.robot.cmd_vel_sink:Ros2CmdVelSink', 'cmd_vel_sink', {
            'inputs.in': ['/t/follow/out'], 'topic': CMD_VEL, 'estop_topic': ESTOP,
            'command_timeout_sec': DEADLINE_SEC, 'max_linear_accel': LINEAR_ACCEL,
            'max_angular_accel': ANGULAR_ACCEL, 'stop_repeat_sec': 0.0,
        })
        wait_for(lambda: robot.frames.get_subscription_count() > 0
                 and robot.node.count_publishers(CMD_VEL) > 0, 20, 'discovery')
        camera.running.set()

        # -- the person moves: signs and bounds ---------------------------------------------------
        def settle(target, check, what):
            camera.target = target
            t = time.monotonic()
            wait_for(lambda: [r for r in robot.since(t + 0.3) if check(r[1], r[2])], 10, what)

        settle((W * 0.15, 0.35), lambda lx, az: az > 0.5, 'a left turn toward a person on the left')
        settle((W * 0.85, 0.35), lambda lx, az: az < -0.5, 'a right turn toward a person on the right')
        settle((W / 2, 0.1), lambda lx, az: lx > 0.1 and az == 0.0, 'forward toward a far person')
        settle((W / 2, 0.8), lambda lx, az: lx < -0.1 and az == 0.0, 'backward from a near person')
        moving = robot.since(0.0)
        assert all(abs(lx) <= MAX_LINEAR + 1e-9 and abs(az) <= MAX_ANGULAR + 1e-9 for _, lx, az in moving)
        steps = [(abs(b[1] - a[1]), abs(b[2] - a[2])) for a, b in itertools.pairwise(moving)
                 if b[1:] != (0.0, 0.0)]  # stops are immediate by design, motion is ramped
        assert max(s[0] for s in steps) <= LINEAR_ACCEL * RAMP_STEP_SEC + 1e-9
        assert max(s[1] for s in steps) <= ANGULAR_ACCEL * RAMP_STEP_SEC + 1e-9

        # -- stalled camera: zero within the deadline ---------------------------------------------
        settle((W * 0.15, 0.2), lambda lx, az: az > 0.5, 'moving again')
        camera.running.clear()
        time.sleep(0.06)
        stall_sec = first_zero_after(robot, camera.last_sent, DEADLINE_SEC + 2)
        assert stall_sec <= DEADLINE_SEC + DELIVERY_SLACK_SEC
        # first line: the follow node's own timeout (0.3 s) sent zero; second line: the sink's
        # command watchdog holds it once commands have been missing for its deadline as well
        wait_for(lambda: robot.report()['nodes']['cmd_vel_sink']['counters'].get(
            'stops_command_timeout_total') == 1, 5, "the sink's command watchdog")
        assert robot.report()['nodes']['follow']['counters']['stops_input_timeout_total'] == 1

        # -- pause: zero at once, frames keep coming and change nothing ---------------------------
        camera.running.set()
        settle((W * 0.15, 0.2), lambda lx, az: az > 0.5, 'moving after the stall')
        t_pause = time.monotonic()
        robot.set_param('/t/cmd_vel_sink', 'paused', True)
        assert first_zero_after(robot, t_pause, DEADLINE_SEC + 2) <= DEADLINE_SEC + DELIVERY_SLACK_SEC
        time.sleep(1.0)
        assert all((lx, az) == (0.0, 0.0) for _, lx, az in robot.since(t_pause + DEADLINE_SEC))
        robot.set_param('/t/cmd_vel_sink', 'paused', False)
        settle((W * 0.15, 0.2), lambda lx, az: az > 0.5, 'moving after unpausing')

        # -- e-stop: zero at once, latched while frames keep coming, until released ---------------
        t_estop = time.monotonic()
        robot.estop.publish(Bool(data=True))
        assert first_zero_after(robot, t_estop, DEADLINE_SEC + 2) <= DEADLINE_SEC + DELIVERY_SLACK_SEC
        time.sleep(1.5)
        latched = robot.since(t_estop + DEADLINE_SEC)
        assert all((lx, az) == (0.0, 0.0) for _, lx, az in latched)
        robot.estop.publish(Bool(data=False))
        settle((W * 0.15, 0.2), lambda lx, az: az > 0.5, 'moving after the release')

        # -- every stop reason counted, in the report and in /diagnostics -------------------------
        counters = robot.report()['nodes']['cmd_vel_sink']['counters']
        assert counters['stops_paused_total'] == 1 and counters['stops_estop_total'] == 1
        assert counters['estop_engaged'] == 0 and counters['commands_refused_total'] > 0
        diag = wait_for(lambda: next((v for k, v in robot.diagnostics.items() if k.endswith('cmd_vel_sink')
                                      and 'stops_estop_total' in v), None), 10, '/diagnostics of the sink')
        assert diag['stops_estop_total'] == '1' and diag['stops_paused_total'] == '1'

        # -- the container stops while the robot moves: zero on close -----------------------------
        t_stop = time.monotonic()
        processes.stop(container)
        time.sleep(0.3)
        assert robot.since(t_stop)[-1][1:] == (0.0, 0.0)
    finally:
        camera.stopped.set()
        robot.close()
