"""DiagnosticsPolicyNode: ROBOT_DIAGNOSTIC_ERROR when a robot's diagnostic status enters ERROR.

Input: diagnostics readings (diagnostic_msgs/DiagnosticArray on /diagnostics: `statuses [{name,
level, message, hardware_id, values}]`). Per robot and status name the node remembers whether the
status is in one of `levels` (ERROR by default; STALE may be added). One event per message in which
at least one status *entered* such a level, carrying those statuses (`sensor.statuses`); a status
that stays in ERROR raises nothing more, one that leaves it is re-armed. One event per message —
not per status — because two events of the same robot, type and time would share one event_id.
"""
from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from schnitzel_stream_ros.codec.event_protocol import EventType, Severity
from schnitzel_stream_ros.nodes.robot.detection import RobotStates, robot_detection, robot_id
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

LEVELS = ('OK', 'WARN', 'ERROR', 'STALE')


class DiagnosticsPolicyNode(Plugin):
    """Robot diagnostics: ROBOT_DIAGNOSTIC_ERROR when a status enters ERROR (once until it recovers)."""

    INPUTS = (Port('in', frozenset({Kind.SENSOR}), description='diagnostics readings (DiagnosticArray)'),)
    OUTPUTS = (
        Port('out', frozenset({Kind.DETECTION}), description='one detection per message with new errors'),
    )
    PARAMS = (
        Param('levels', list, ['ERROR'], 'levels that raise the event (of OK, WARN, ERROR, STALE)'),
        Param('names', list, [], 'status names watched, shell-style patterns such as "robot1/*" (empty: '
              'all — /diagnostics also carries other nodes\' statuses, ours included, so name the robots\')'),
        Param('severity', str, 'HIGH', 'severity of ROBOT_DIAGNOSTIC_ERROR', choices=tuple(Severity)),
        Param('max_tracked', int, 4096, 'robot/status pairs remembered (least recently seen forgotten first)',
              min=1),
    )

    @classmethod
    def check_params(cls, params):
        bad = [level for level in params.get('levels', ['ERROR']) if level not in LEVELS]
        return [f"parameter 'levels': {bad[0]!r} is not one of {list(LEVELS)}"] if bad else []

    def setup(self) -> None:
        problems = self.check_params(self.params)
        if problems:
            raise ValueError(f'{self.node_id}: {problems[0]}')
        self.levels = frozenset(self.params.get('levels') or ['ERROR'])
        self.names = frozenset(self.params.get('names') or ())
        self.active = RobotStates(self.params.get('max_tracked', 4096))

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        statuses = payload.get('statuses')
        if not isinstance(statuses, list):
            self.count('no_statuses_total')
            return None
        self.count('readings_total')
        robot = robot_id(packet)
        entered = []
        for status in statuses:
            if not isinstance(status, Mapping) or not isinstance(status.get('name'), str):
                continue
            if self.names and not any(fnmatchcase(status['name'], pattern) for pattern in self.names):
                continue
            key = f'{robot}\x00{status["name"]}'
            was, evicted = self.active.touch(key, False)
            if evicted:
                self.count('evicted_total', evicted)
            now = status.get('level') in self.levels
            self.active[key] = now
            if now and not was:
                entered.append(dict(status))
        if not entered:
            return None
        self.count('diagnostic_errors_total', len(entered))  # not errors_total: that is the runtime's
        sensor = {k: v for k, v in payload.items() if k != 'statuses'}
        sensor['statuses'] = entered
        event_type = EventType.ROBOT_DIAGNOSTIC_ERROR.value
        return robot_detection(packet, event_type, self.params['severity'], sensor=sensor)
