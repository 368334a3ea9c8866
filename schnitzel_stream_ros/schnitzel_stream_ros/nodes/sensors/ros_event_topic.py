"""RosEventTopicSource: typed `schnitzel_stream_msgs/Event` messages from a ROS topic as event packets.

Events are the one thing every lane and every graph shares, so a graph can take another graph's
(or a robot's) events as input: e.g. camera PERSON events from `/site/events` fused with the voices
of an audio lane running in another process. Each message is decoded and validated by the codec
(`msg_to_event`: fields, and event_id = uuid5 of its idempotency key); a message that fails is
counted (`invalid_total`) and dropped, never passed on. `event_types` / `object_types` filter what
is taken — a graph that also publishes on the same topic must filter its own events out, or it
reads them back.
"""
from __future__ import annotations

from collections.abc import Iterator

from schnitzel_stream_ros.codec.event_protocol import event_msg_to_packet
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role

EVENT_MSG_TYPE = 'schnitzel_stream_msgs/msg/Event'


class RosEventTopicSource(Plugin):
    """Typed Event messages from a ROS topic (another graph's or a robot's) as event packets."""

    ROLE = Role.SOURCE
    INPUTS = (Port('in', frozenset({Kind.RAW}), PayloadProfile.INPROC_ANY, msg_type=EVENT_MSG_TYPE,
                   required=False, description='Event messages from `topic`'),)
    OUTPUTS = (Port('out', frozenset({Kind.EVENT}), description='one event packet per accepted message'),)
    PARAMS = (
        Param('topic', str, '/site/events', 'ROS topic of schnitzel_stream_msgs/Event'),
        Param('event_types', list, [], 'event types taken (empty: all)'),
        Param('object_types', list, [], 'object types taken (empty: all)'),
    )

    def setup(self) -> None:
        self.event_types = frozenset(self.params.get('event_types') or ())
        self.object_types = frozenset(self.params.get('object_types') or ())

    def produce(self) -> Iterator[StreamPacket | None]:
        """Events come through process(); the pull loop only waits (bounded) for the stop."""
        while not self.ctx.stop_event.wait(0.1):
            yield None

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        msg = packet.payload
        if self.event_types and getattr(msg, 'event_type', None) not in self.event_types:
            self.count('filtered_total')
            return None
        if self.object_types and getattr(msg, 'object_type', None) not in self.object_types:
            self.count('filtered_total')
            return None
        try:
            event = event_msg_to_packet(msg)
        except (TypeError, ValueError) as exc:
            self.count('invalid_total')
            self.log.warning(f'{self.node_id}: dropped an invalid Event from {packet.source_id}: {exc}')
            return None
        self.count('events_total')
        return event.with_meta(ros_topic=packet.source_id)
