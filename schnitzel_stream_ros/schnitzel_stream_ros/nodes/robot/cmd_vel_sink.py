"""Ros2CmdVelSink: velocity commands onto the robot's /cmd_vel — the last line of safety before motion.

Upstream's sink (schnitzel-stream-platform, person-follow lane, Apache-2.0; same keys) publishes each
cmd_vel packet as geometry_msgs/Twist and a zero Twist on close. Here the command leaves through an
output port of a ROS type (the runtime publishes it, docs/wiring.md) on the topic the `topic`
parameter names, as `geometry_msgs/Twist`, or `geometry_msgs/TwistStamped` with `frame_id` (what
Jazzy's nav2 expects: `stamped: true`).

Because this is what moves a robot, the sink is a safety layer of its own, whatever feeds it:
- limits: |linear_x| <= max_linear, |angular_z| <= max_angular; the change between two published
  commands <= max_*_accel x elapsed time (a jump from 0 to full speed becomes a ramp). Stops are
  never ramped: a zero command, and every stop below, is published at once.
- watchdog (the node's tick): no fresh command within `command_timeout_sec` -> zero (input stalled:
  camera, detector or follow node gone quiet).
- e-stop: a std_msgs/Bool on `estop_topic`; `true` latches zero — commands are refused, zero is
  repeated — until a `false` arrives on the same topic (an explicit release). After a release, or
  un-pausing, the robot moves only on a command that arrives afterwards.
- pause: the dynamic parameter `paused` (`ros2 param set <node> paused true`) -> zero until unpaused.
- close (the container stops or unloads the node): zero, when `stop_on_close` (upstream default).
While stopped, zero is repeated every `stop_repeat_sec` for a base that missed it. Each stop reason
is counted on entering it (`stops_<reason>_total`: estop, paused, command_timeout, closed) and
the current state is a gauge (`stopped`, `estop_engaged`, `paused`); all appear in /diagnostics.
Commands with non-finite numbers are refused and counted (`invalid_commands_total`).

A process that is killed (SIGKILL, power loss) publishes nothing; the base's own command timeout
must cover that — this sink only shortens the time a stale command is in force.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from geometry_msgs.msg import Twist, TwistStamped
from std_msgs.msg import Bool

from schnitzel_stream_ros.nodes.robot.person_follow import CMD_VEL_KIND
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role

TWIST_MSG_TYPE = 'geometry_msgs/msg/Twist'
TWIST_STAMPED_MSG_TYPE = 'geometry_msgs/msg/TwistStamped'
BOOL_MSG_TYPE = 'std_msgs/msg/Bool'
CMD_VEL_PORT = 'cmd_vel'
ESTOP_PORT = 'estop'
#: longest time step an acceleration limit grants at once (after a pause in commands the ramp
#: restarts from the last published command instead of jumping)
MAX_RAMP_STEP_SEC = 0.2


def _cmd_port(stamped: bool) -> Port:
    return Port(CMD_VEL_PORT, frozenset({CMD_VEL_KIND}), PayloadProfile.INPROC_ANY,
                msg_type=TWIST_STAMPED_MSG_TYPE if stamped else TWIST_MSG_TYPE, topic_param='topic',
                description='geometry_msgs Twist (or TwistStamped) on `topic`')


_IN = Port('in', frozenset({CMD_VEL_KIND}), description='cmd_vel packets {linear_x, angular_z} or {twist}')
_ESTOP = Port(ESTOP_PORT, frozenset({Kind.RAW}), PayloadProfile.INPROC_ANY, msg_type=BOOL_MSG_TYPE,
              required=False, topic_param='estop_topic',
              description='std_msgs/Bool on `estop_topic`: true latches zero, false releases')
_FORWARD = Port('out', frozenset({CMD_VEL_KIND}), description='the command packets (forward: true)')


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def command_of(payload: Any) -> tuple[float, float] | None:
    """(linear_x, angular_z) of a command payload as upstream reads it; None when not finite.

    `linear_x`/`angular_z` keys, else `twist: {linear: {x}, angular: {z}}`, else a zero command.
    """
    if not isinstance(payload, Mapping):
        return None
    if 'linear_x' in payload or 'angular_z' in payload:
        lx, az = payload.get('linear_x', 0.0), payload.get('angular_z', 0.0)
    else:
        twist = payload.get('twist')
        twist = twist if isinstance(twist, Mapping) else {}
        linear, angular = twist.get('linear'), twist.get('angular')
        lx = linear.get('x', 0.0) if isinstance(linear, Mapping) else 0.0
        az = angular.get('z', 0.0) if isinstance(angular, Mapping) else 0.0
    lx, az = _number(lx), _number(az)
    if lx is None or az is None or not (math.isfinite(lx) and math.isfinite(az)):
        return None
    return lx, az


def _toward(current: float, target: float, max_step: float | None) -> float:
    if max_step is None or abs(target - current) <= max_step:
        return target
    return current + math.copysign(max_step, target - current)


class Ros2CmdVelSink(Plugin):
    """Publish velocity commands on /cmd_vel with limits, a command watchdog, e-stop and pause."""

    ROLE = Role.SINK
    INPUTS = (_IN, _ESTOP)
    OUTPUTS = (_cmd_port(False),)
    PARAMS = (
        Param('topic', str, '/cmd_vel', 'topic of the velocity commands (absolute)'),
        Param('node_name', str, '',
              'upstream: name of its own rclpy node; here the graph node id is the name'),
        Param('qos_depth', int, 10, 'upstream: publisher depth; here the graph\'s qos sets it (default 10)',
              min=1),
        Param('stop_on_close', bool, True, 'publish zero when the node closes'),
        Param('forward', bool, False, 'also pass the command packets on (port out)'),
        Param('stamped', bool, False, 'publish geometry_msgs/TwistStamped (Jazzy nav2) instead of Twist'),
        Param('frame_id', str, 'base_link', 'header.frame_id of TwistStamped'),
        Param('max_linear', float, 0.5, 'largest |linear.x| published (m/s; 0 = no limit)', min=0.0,
              dynamic=True),
        Param('max_angular', float, 1.5, 'largest |angular.z| published (rad/s; 0 = no limit)', min=0.0,
              dynamic=True),
        Param('max_linear_accel', float, 1.0, 'largest change of linear.x per second (0 = no limit)',
              min=0.0, dynamic=True),
        Param('max_angular_accel', float, 4.0, 'largest change of angular.z per second (0 = no limit)',
              min=0.0, dynamic=True),
        Param('command_timeout_sec', float, 0.5, 'no command for this long: zero (0 = off)', min=0.0),
        Param('estop_topic', str, '/estop', 'std_msgs/Bool e-stop topic (true latches zero, false '
              'releases; empty = none)'),
        Param('stop_repeat_sec', float, 1.0, 'while stopped, repeat zero this often (0 = once)', min=0.0),
        Param('paused', bool, False, 'publish zero and refuse commands while true', dynamic=True),
    )

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        inputs = (_IN, _ESTOP) if params.get('estop_topic', '/estop') else (_IN,)
        outputs = [_cmd_port(bool(params.get('stamped', False)))]
        if params.get('forward', False):
            outputs.append(_FORWARD)
        return inputs, tuple(outputs)

    @classmethod
    def tick_period(cls, params: Mapping[str, Any]) -> float | None:
        timeout = params.get('command_timeout_sec', 0.5)
        return max(0.01, min(0.05, timeout / 4)) if timeout and timeout > 0 else 0.1

    def setup(self) -> None:
        self.stamped = self.params['stamped']
        self.out = (0.0, 0.0)  # last published command
        self.published_at: float | None = None
        self.last_command_at: float | None = None  # monotonic time of the last accepted command
        self.estop = False
        self.stop_reason: str | None = None  # why the robot is held at zero now (None: moving/idle)
        self.gauge('estop_engaged', 0)
        self.gauge('paused', int(self.params['paused']))
        self.gauge('stopped', 0)

    # -- publishing ------------------------------------------------------------------------------
    def _publish(self, linear: float, angular: float) -> None:
        now = time.monotonic()
        if self.stamped:
            msg = TwistStamped()
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            msg.header.frame_id = self.params['frame_id']
            twist = msg.twist
        else:
            msg = twist = Twist()
        twist.linear.x = float(linear)
        twist.angular.z = float(angular)
        self.emit(StreamPacket.new(CMD_VEL_KIND, self.node_id, msg), CMD_VEL_PORT)
        self.out = (float(linear), float(angular))
        self.published_at = now
        self.count('published_total')
        self.gauge('linear_x', float(linear))
        self.gauge('angular_z', float(angular))

    def _hold(self, reason: str) -> None:
        """Zero now; count the reason when entering it (a held stop repeats without counting)."""
        if reason != self.stop_reason:
            self.stop_reason = reason
            self.count(f'stops_{reason}_total')
            self.gauge('stopped', 1)
        self._publish(0.0, 0.0)

    def _limited(self, linear: float, angular: float, now: float) -> tuple[float, float]:
        p = self.params
        if p['max_linear'] > 0:
            linear = min(p['max_linear'], max(-p['max_linear'], linear))
        if p['max_angular'] > 0:
            angular = min(p['max_angular'], max(-p['max_angular'], angular))
        since = MAX_RAMP_STEP_SEC if self.published_at is None else now - self.published_at
        dt = min(MAX_RAMP_STEP_SEC, since)
        lin_step = p['max_linear_accel'] * dt if p['max_linear_accel'] > 0 else None
        ang_step = p['max_angular_accel'] * dt if p['max_angular_accel'] > 0 else None
        return _toward(self.out[0], linear, lin_step), _toward(self.out[1], angular, ang_step)

    # -- inputs ----------------------------------------------------------------------------------
    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        if port == ESTOP_PORT:
            self._on_estop(packet.payload)
            return None
        command = command_of(packet.payload)
        if command is None:
            self.count('invalid_commands_total')
            return None
        if self.estop or self.params['paused']:
            self.count('commands_refused_total')
            return None
        now = time.monotonic()
        self.last_command_at = now
        if self.stop_reason is not None:
            self.stop_reason = None
            self.gauge('stopped', 0)
        # a zero command is a stop (no target, a stalled camera upstream): never ramped
        self._publish(*(command if command == (0.0, 0.0) else self._limited(*command, now)))
        return packet if self.params['forward'] else None

    def _on_estop(self, msg: Any) -> None:
        if not isinstance(msg, Bool):
            self.count('invalid_estop_total')
            return
        if msg.data:
            self.count('estop_messages_total')
            if not self.estop:
                self.estop = True
                self.gauge('estop_engaged', 1)
                self.log.warning(f'{self.node_id}: e-stop engaged: holding zero until released')
            self._hold('estop')
        elif self.estop:
            self.estop = False
            self.last_command_at = None  # move again only on a command that arrives from now on
            self.gauge('estop_engaged', 0)
            self.log.warning(f'{self.node_id}: e-stop released')

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if 'paused' in changed:
            self.gauge('paused', int(changed['paused']))
            if changed['paused']:
                self._hold('paused')
            else:
                self.last_command_at = None

    # -- watchdog --------------------------------------------------------------------------------
    def on_tick(self) -> Outputs:
        now = time.monotonic()
        if self.estop:
            reason = 'estop'
        elif self.params['paused']:
            reason = 'paused'
        elif self.last_command_at is None:
            reason = self.stop_reason  # idle since start or since a release: hold what holds
        else:
            timeout = self.params['command_timeout_sec']
            stale = timeout > 0 and now - self.last_command_at > timeout
            reason = 'command_timeout' if stale else None
        if reason is None:
            return None
        repeat = self.params['stop_repeat_sec']
        due = self.published_at is None or (repeat > 0 and now - self.published_at >= repeat)
        if reason != self.stop_reason or self.out != (0.0, 0.0) or due:
            self._hold(reason)
        return None

    def close(self) -> None:
        if self.params['stop_on_close'] and hasattr(self, 'out'):  # upstream: always, once set up
            self.count('stops_closed_total')
            self._publish(0.0, 0.0)
