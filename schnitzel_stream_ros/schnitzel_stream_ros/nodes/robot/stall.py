"""StallPolicyNode: ROBOT_STALLED when a robot is told to move but does not.

Inputs: `command` — velocity command readings (geometry_msgs/Twist or TwistStamped on cmd_vel:
`speed_mps`), and `odometry` — odometry readings (`x`, `y`, `speed_mps`). For each odometry reading
at time t the command in force at t counts — the latest command stamped at or before t — when it is at
most `command_timeout_sec` older than t (a controller that stopped publishing commands nothing).
Commands are matched by their stamps, not by the order the two ports deliver them: the two inputs
arrive through separate topics and inboxes, and either lane can run seconds ahead of the other (a
loaded machine takes a topic's backlog in bursts, one topic after the other).
- A command lane ahead of the odometry must not make a stuck robot look stopped (its later "stop"
  command is not yet in force): commands wait for their odometry in a bounded history per robot
  (`max_commands`, oldest dropped and counted as `commands_evicted_total`).
- An odometry lane ahead of the commands must not make a commanded robot look uncommanded (the
  command in force at t has not arrived yet): a reading stamped after the newest command waits
  until a command stamped at or after it arrives, at most `command_wait_sec` of wall-clock time (a
  controller that stopped publishing) and at most `max_waiting_poses` per robot (the oldest goes
  first); a reading let go either way is judged with the commands known, counted `poses_waited_out_total`.
  Live mode checks the wait on a tick; the deterministic engine never ticks, so there a waiting
  reading goes on only with a command or the bound. `command_wait_sec: 0` judges every reading at
  once, as it arrives.
The robot is *stalling* while the command
asks for at least `min_command_mps` and the measured speed is at most `max_measured_mps`; after
`stall_sec` of that, one ROBOT_STALLED event (the odometry reading as `sensor`, plus the command and
how long it has been stalling). Moving again, or no longer being commanded, re-arms it.

Measured speed: `measured_from: pose` (default) = distance between consecutive poses / time — a
robot whose wheels spin on the spot (slip, stuck against an obstacle) reports wheel speed in its
twist but does not move; `twist` = the odometry's own `speed_mps`.
All times are reading times (header stamps), in integer microseconds.
"""
from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import EventType, Severity
from schnitzel_stream_ros.nodes.fusion.sensor_history import ts_to_micros
from schnitzel_stream_ros.nodes.robot.detection import RobotStates, robot_detection, robot_id
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port


@dataclass
class _Robot:
    command_times_us: list[int] = field(default_factory=list)  # ascending
    commands: list[dict[str, Any]] = field(default_factory=list)  # the command stamped at each time
    pose_us: int | None = None
    pose: tuple[float, float] | None = None
    stalling_since_us: int | None = None
    alerted: bool = False
    newest_command_us: int | None = None  # how far the command lane has come (its newest stamp)
    #: odometry readings newer than every command: (t_us, reading, monotonic time it began to wait)
    waiting: deque[tuple[int, StreamPacket, float]] = field(default_factory=deque)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class StallPolicyNode(Plugin):
    """Commanded vs measured speed: ROBOT_STALLED after stall_sec of being told to move without moving."""

    INPUTS = (
        Port('odometry', frozenset({Kind.SENSOR}), description='odometry readings'),
        Port('command', frozenset({Kind.SENSOR}), description='velocity command readings (cmd_vel)'),
    )
    OUTPUTS = (Port('out', frozenset({Kind.DETECTION}), description='one detection per stall'),)
    PARAMS = (
        Param('min_command_mps', float, 0.05, 'commanded speed from which the robot should move', min=0.0),
        Param('max_measured_mps', float, 0.01, 'measured speed up to which it counts as not moving', min=0.0),
        Param('stall_sec', float, 2.0, 'how long it must be stalling before the event', min=0.0),
        Param('command_timeout_sec', float, 1.0, 'a command older than this no longer counts', min=0.0),
        Param('measured_from', str, 'pose', 'measured speed from pose differences or the odometry twist',
              choices=('pose', 'twist')),
        Param('severity', str, 'HIGH', 'severity of ROBOT_STALLED', choices=tuple(Severity)),
        Param('max_robots', int, 1024, 'robots remembered (least recently heard forgotten first)', min=1),
        Param('max_commands', int, 1024, 'commands per robot kept until odometry reaches their time', min=1),
        Param('command_wait_sec', float, 5.0,
              'how long an odometry reading newer than every command waits for the command lane '
              '(wall clock; 0 = judge each reading as it arrives)', min=0.0),
        Param('max_waiting_poses', int, 256, 'odometry readings per robot waiting for the command lane',
              min=1),
    )

    @classmethod
    def tick_period(cls, params: Mapping[str, Any]) -> float | None:
        wait = params.get('command_wait_sec', 5.0)
        return min(max(wait / 4, 0.05), 0.5) if wait and wait > 0 else None

    def setup(self) -> None:
        self.robots = RobotStates(self.params.get('max_robots', 1024))

    def _robot(self, packet: StreamPacket) -> _Robot:
        robot, evicted = self.robots.touch(robot_id(packet), None)
        if robot is None:
            robot = self.robots[robot_id(packet)] = _Robot()
        if evicted:
            self.count('robots_evicted_total', evicted)
        return robot

    @staticmethod
    def _time_us(packet: StreamPacket) -> int | None:
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        try:
            return ts_to_micros(str(payload.get('sensor_ts') or packet.ts))
        except ValueError:
            return None

    def process(self, packet: StreamPacket, port: str = 'odometry') -> Outputs:
        t_us = self._time_us(packet)
        if t_us is None:
            self.count('bad_ts_total')
            return None
        robot = self._robot(packet)
        if port == 'command':
            self.count('commands_total')
            payload = packet.payload if isinstance(packet.payload, Mapping) else {}
            self._remember_command(robot, t_us, dict(payload))
            if robot.newest_command_us is None or t_us > robot.newest_command_us:
                robot.newest_command_us = t_us
            return self._judge_waiting(robot, time.monotonic())
        self.count('poses_total')
        if self.params.get('command_wait_sec', 5.0) <= 0:
            return self._judge(robot, t_us, packet)
        robot.waiting.append((t_us, packet, time.monotonic()))
        excess = len(robot.waiting) - self.params.get('max_waiting_poses', 256)
        return self._judge_waiting(robot, time.monotonic(), force=max(excess, 0))

    def on_tick(self) -> Outputs:
        """Readings that waited command_wait_sec for the command lane are judged with what is known."""
        now = time.monotonic()
        out: list[StreamPacket] = []
        for robot in self.robots.values():
            if robot is not None and robot.waiting:
                out += self._judge_waiting(robot, now) or ()
        return out or None

    def _judge_waiting(self, robot: _Robot, now: float, force: int = 0) -> list[StreamPacket] | None:
        """Judge, in stamp order, the waiting readings the command lane has reached, the first
        `force` ones, and those that waited command_wait_sec."""
        deadline = now - self.params.get('command_wait_sec', 5.0)
        newest = robot.newest_command_us
        out: list[StreamPacket] = []
        while robot.waiting:
            t_us, packet, since = robot.waiting[0]
            reached = newest is not None and newest >= t_us
            if not (reached or force > 0 or since <= deadline):
                break
            if not reached:  # judged without the command lane having caught up
                self.count('poses_waited_out_total')
            force -= 1
            robot.waiting.popleft()
            if (det := self._judge(robot, t_us, packet)) is not None:
                out.append(det)
        return out or None

    def _judge(self, robot: _Robot, t_us: int, packet: StreamPacket) -> StreamPacket | None:
        """One odometry reading against the command in force at its time."""
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        measured = self._measured_speed(robot, payload, t_us)
        if measured is None:
            return None
        p = self.params
        command = self._command_at(robot, t_us)
        commanded = None if command is None else _number(command.get('speed_mps'))
        if commanded is None or commanded < p['min_command_mps'] or measured > p['max_measured_mps']:
            robot.stalling_since_us, robot.alerted = None, False
            return None
        if robot.stalling_since_us is None:
            robot.stalling_since_us = t_us
        stalled_us = t_us - robot.stalling_since_us
        if robot.alerted or stalled_us < p['stall_sec'] * 1e6:
            return None
        robot.alerted = True
        self.count('stalls_total')
        sensor = {**payload, 'command': command, 'measured_mps': measured,
                  'stalled_sec': stalled_us / 1e6}
        return robot_detection(packet, EventType.ROBOT_STALLED.value, p['severity'], sensor=sensor)

    def _remember_command(self, robot: _Robot, t_us: int, command: dict[str, Any]) -> None:
        at = bisect.bisect_right(robot.command_times_us, t_us)  # in stamp order, whatever the arrival order
        robot.command_times_us.insert(at, t_us)
        robot.commands.insert(at, command)
        excess = len(robot.commands) - self.params.get('max_commands', 1024)
        if excess > 0:
            del robot.command_times_us[:excess], robot.commands[:excess]
            self.count('commands_evicted_total', excess)

    def _command_at(self, robot: _Robot, t_us: int) -> dict[str, Any] | None:
        """The command in force at t (the latest stamped at or before it), if not older than the timeout.

        Commands older than the one in force are no longer needed by this or any later reading
        (odometry of one robot arrives in stamp order) and are forgotten."""
        at = bisect.bisect_right(robot.command_times_us, t_us) - 1
        if at < 0:
            return None
        del robot.command_times_us[:at], robot.commands[:at]
        if t_us - robot.command_times_us[0] > self.params['command_timeout_sec'] * 1e6:
            return None
        return robot.commands[0]

    def _measured_speed(self, robot: _Robot, payload: Mapping[str, Any], t_us: int) -> float | None:
        if self.params.get('measured_from', 'pose') == 'twist':
            speed = _number(payload.get('speed_mps'))
            if speed is None:
                self.count('no_speed_total')
            return speed
        x, y = _number(payload.get('x')), _number(payload.get('y'))
        if x is None or y is None:
            self.count('no_pose_total')
            return None
        before, before_us = robot.pose, robot.pose_us
        robot.pose, robot.pose_us = (x, y), t_us
        if before is None or before_us is None or t_us <= before_us:
            return None  # the first pose (or one out of order) gives no speed yet
        return math.hypot(x - before[0], y - before[1]) / ((t_us - before_us) / 1e6)
