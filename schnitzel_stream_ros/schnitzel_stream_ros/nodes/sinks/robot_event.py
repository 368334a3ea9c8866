"""RobotEventSink: events for robots and buses as typed `schnitzel_stream_msgs/Event` messages.

A robot's behaviour tree should react to "FIRE_DETECTED, CRITICAL, zone dock_2" without parsing
JSON, so each event (protocol v0.2) becomes an Event message on the output port `events` (a plain
ROS topic: `/<ns>/<node>/events`, or whatever the graph's `topics: {events: ...}` names). Earlier
ROS 2 integrations of upstream published the event dict as JSON `std_msgs/String` on `/ai/events`;
`legacy_json: true` adds that port (`legacy_json`; name the topic in the graph:
`topics: {legacy_json: /ai/events}`) for listeners written against it.

The conversion and its validation are codec/event_protocol.py's. An event that is not valid v0.2
(or whose event_id is not the one derived from its fields, with `check_identity`) is not published:
it is counted (`invalid_total`) and logged with the field that is wrong — a sink must not take the
graph down for one bad event.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from std_msgs.msg import String

from schnitzel_stream_ros.codec.event_protocol import packet_to_event, packet_to_event_msg
from schnitzel_stream_ros.codec.json_values import dumps_json
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role

EVENT_MSG_TYPE = 'schnitzel_stream_msgs/msg/Event'
STRING_MSG_TYPE = 'std_msgs/msg/String'
EVENTS_PORT = 'events'
LEGACY_PORT = 'legacy_json'
#: Topic of upstream's ROS 2 event emitter, for graphs that want the legacy port on it.
LEGACY_TOPIC = '/ai/events'

_EVENTS = Port(EVENTS_PORT, frozenset({Kind.EVENT}), PayloadProfile.INPROC_ANY, msg_type=EVENT_MSG_TYPE,
               description='schnitzel_stream_msgs/Event per event')
_LEGACY = Port(LEGACY_PORT, frozenset({Kind.EVENT}), PayloadProfile.INPROC_ANY, msg_type=STRING_MSG_TYPE,
               description=f'event JSON as std_msgs/String (legacy {LEGACY_TOPIC} listeners)')


class RobotEventSink(Plugin):
    """Publish events as schnitzel_stream_msgs/Event (and, when asked, JSON std_msgs/String)."""

    ROLE = Role.SINK
    INPUTS = (Port('in', frozenset({Kind.EVENT}), description='event protocol v0.2 packets'),)
    OUTPUTS = (_EVENTS, _LEGACY)
    PARAMS = (
        Param('typed', bool, True, 'publish schnitzel_stream_msgs/Event on port `events`'),
        Param('legacy_json', bool, False, f'also publish JSON std_msgs/String on port `{LEGACY_PORT}`'),
        Param('check_identity', bool, True, 'refuse events whose event_id is not derived from their fields'),
    )

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        outputs = []
        if params.get('typed', True):
            outputs.append(_EVENTS)
        if params.get('legacy_json', False):
            outputs.append(_LEGACY)
        return cls.INPUTS, tuple(outputs)

    def setup(self) -> None:
        self.typed = self.params.get('typed', True)
        self.legacy = self.params.get('legacy_json', False)
        if not (self.typed or self.legacy):
            raise ValueError(
                f'{self.node_id}: parameters typed and legacy_json are both false: nothing to publish'
            )
        self.check_identity = self.params.get('check_identity', True)
        self._invalid = 0

    def _refuse(self, packet: StreamPacket, exc: Exception) -> None:
        self._invalid += 1
        self.count('invalid_total')
        if self._invalid == 1 or self._invalid % 100 == 0:  # a broken producer must not flood the log
            self.log.warning(
                f'{self.node_id}: not publishing packet {packet.packet_id} (source_id {packet.source_id}): '
                f'{exc} [{self._invalid} refused so far]'
            )

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        try:
            msg = packet_to_event_msg(packet, check_identity=self.check_identity) if self.typed else None
            text = dumps_json(packet_to_event(packet, check_identity=self.check_identity), 'payload') \
                if self.legacy else None
        except (ValueError, TypeError) as exc:
            self._refuse(packet, exc)
            return None
        if msg is not None:
            self.emit(packet.derive(payload=msg), EVENTS_PORT)
            self.count('published_total')
        if text is not None:
            self.emit(packet.derive(payload=String(data=text)), LEGACY_PORT)
            self.count('legacy_published_total')
        return None
