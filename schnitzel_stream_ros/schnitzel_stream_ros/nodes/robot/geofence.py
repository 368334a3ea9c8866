"""GeofencePolicyNode: GEOFENCE_ENTER / GEOFENCE_EXIT when a robot's pose crosses a zone boundary.

The zones are the cameras' zones (same definitions, same file, same even-odd rule with the
boundary inside, first enabled zone wins: nodes/policy/zones.py), marked with the ROS frame their
polygon is in: `{zone_id, frame_id: map, polygon: [[x, y] metres, ...]}`. Zones without a frame_id
are image zones and never apply to poses (and frame zones never to camera boxes).

Input: odometry readings (`x`, `y`, `frame_id`: ros_robot_readings.py) or any reading with the
fields named by `x_field` / `y_field` (e.g. NavSatFix readings, `longitude`/`latitude`, against
zones in a `wgs84` frame). A reading in another frame than `frame_id` is not transformed (there is
no TF here): it is counted (`frame_mismatch_total`) and skipped.

Per robot the node remembers the zone it is in. A reading in another zone than before gives EXIT
of the old zone (zone {id, inside: false}) and ENTER of the new one (zone {id, inside: true}), at
the reading's time and with the reading as `sensor`. The first reading of a robot gives ENTER when
it starts inside a zone and nothing when outside.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import EventType, Severity
from schnitzel_stream_ros.nodes.policy.zone_sources import FileZones, StaticZones, ZoneProvider
from schnitzel_stream_ros.nodes.policy.zones import Zone, ZoneError, parse_zones
from schnitzel_stream_ros.nodes.robot.detection import RobotStates, robot_detection, robot_id
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

_SEVERITIES = tuple(Severity)
_UNKNOWN = object()


class GeofencePolicyNode(Plugin):
    """Robot pose in the site zones (a named frame): GEOFENCE_ENTER / GEOFENCE_EXIT on each crossing."""

    INPUTS = (
        Port('in', frozenset({Kind.SENSOR}), description='pose readings (odometry, or x_field/y_field)'),
    )
    OUTPUTS = (Port('out', frozenset({Kind.DETECTION}), description='one detection per crossing'),)
    PARAMS = (
        Param('zones', list, None, 'inline zones: [{zone_id, frame_id, polygon: [[x, y], ...], enabled}]'),
        Param('source', str, '', "zones from a file instead (the cameras' zone file)",
              choices=('', 'inline', 'file')),
        Param('file_path', str, '', 'YAML/JSON zone file (source: file); re-read when it changes'),
        Param('cache_ttl_sec', float, 30.0, 'how often the file is re-checked', min=0.05),
        Param('frame_id', str, 'map', 'ROS frame of the poses and of the zones used'),
        Param('x_field', str, 'x', 'reading field of the x coordinate'),
        Param('y_field', str, 'y', 'reading field of the y coordinate'),
        Param('enter_severity', str, 'MEDIUM', 'severity of GEOFENCE_ENTER', choices=_SEVERITIES),
        Param('exit_severity', str, 'INFO', 'severity of GEOFENCE_EXIT', choices=_SEVERITIES),
        Param('max_robots', int, 1024, 'robots remembered (least recently heard forgotten first)', min=1),
    )

    def setup(self) -> None:
        p = self.params
        where = f'{self.node_id}: parameter'
        inline, source = p.get('zones'), p.get('source') or ''
        if inline is not None and source == 'file':
            raise ZoneError(f'{where} zones: given together with source: file; choose one')
        if source == 'file':
            if not p.get('file_path'):
                raise ZoneError(f'{where} file_path: required with source: file')
            self.provider: ZoneProvider = FileZones(p['file_path'], p.get('cache_ttl_sec', 30.0))
        else:
            self.provider = StaticZones(parse_zones(inline or [], f'{where} zones'))
        self.frame_id = p.get('frame_id') or 'map'
        if not self._zones():
            self.log.warning(
                f'{self.node_id}: no enabled zone in frame {self.frame_id!r}; no robot is ever inside'
            )
        self.states = RobotStates(p.get('max_robots', 1024))

    def _zones(self) -> tuple[Zone, ...]:
        return tuple(z for z in self.provider.current() if z.applies_in_frame(self.frame_id))

    def _point(self, payload: Mapping[str, Any]) -> tuple[float, float] | None:
        x, y = payload.get(self.params.get('x_field', 'x')), payload.get(self.params.get('y_field', 'y'))
        for v in (x, y):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return None
        return float(x), float(y)

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        frame = payload.get('frame_id')
        if frame and frame != self.frame_id:
            self.count('frame_mismatch_total')
            return None
        point = self._point(payload)
        if point is None:
            self.count('no_pose_total')
            return None
        self.count('poses_total')
        inside = next((z for z in self._zones() if z.contains(point)), None)
        now_in = inside.zone_id if inside else ''
        robot = robot_id(packet)
        before, evicted = self.states.touch(robot, _UNKNOWN)
        if evicted:
            self.count('robots_evicted_total', evicted)
        self.states[robot] = now_in
        if before == now_in:
            return None
        out: list[StreamPacket] = []
        if before is not _UNKNOWN and before:
            out.append(robot_detection(packet, EventType.GEOFENCE_EXIT.value, self.params['exit_severity'],
                                       zone={'zone_id': before, 'inside': False}))
            self.count('exits_total')
        if now_in:
            out.append(robot_detection(packet, EventType.GEOFENCE_ENTER.value, self.params['enter_severity'],
                                       zone={'zone_id': now_in, 'inside': True}))
            self.count('enters_total')
        return out

    def close(self) -> None:
        provider = getattr(self, 'provider', None)  # close() also runs after a failed setup()
        if provider is not None:
            provider.close()
