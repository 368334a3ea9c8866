"""RosSensorTopicSource: a ROS sensor topic as a stream of kind=sensor readings.

The runtime subscribes to `topic` with the port's message type (docs/wiring.md, "Ports of other
ROS types") and hands each message to `process()`; this plugin never touches rclpy. The message
type is a parameter (`message_type`), so the input port is declared per node through the
`ports_for(params)` hook the graph validator reads. Range, Imu, NavSatFix and Temperature get typed
fields (ros_readings.py); any other type — or any type with `as_json: true` — arrives as its fields
in JSON form.

Reading time: the message's header.stamp when it has one that is set (sensor time, what fusion
needs), else the time the message was received. Sensor id: `sensor_id`, else header.frame_id,
else the topic.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from schnitzel_stream_ros.codec.interfaces import message_class
from schnitzel_stream_ros.nodes.sensors.reading import message_ts, sensor_packet
from schnitzel_stream_ros.nodes.sensors.ros_message_json import interface_name
from schnitzel_stream_ros.nodes.sensors.ros_readings import convert_message
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role

DEFAULT_MESSAGE_TYPE = 'sensor_msgs/msg/Range'


def _input_port(message_type: str) -> Port:
    return Port(
        'in', frozenset({Kind.RAW}), PayloadProfile.INPROC_ANY, msg_type=message_type, required=False,
        description='messages of `message_type` from `topic`',
    )


class RosSensorTopicSource(Plugin):
    """Readings from a ROS sensor topic (Range, Imu, NavSatFix, Temperature, or any message as JSON)."""

    ROLE = Role.SOURCE
    INPUTS = (_input_port(DEFAULT_MESSAGE_TYPE),)
    OUTPUTS = (Port('out', frozenset({Kind.SENSOR}), description='one kind=sensor packet per message'),)
    PARAMS = (
        Param('topic', str, description='ROS topic to subscribe to, e.g. /ultrasonic/front'),
        Param('message_type', str, DEFAULT_MESSAGE_TYPE, 'ROS message type of the topic'),
        Param('sensor_id', str, '', 'reading source id (default: header.frame_id, else the topic)'),
        Param('as_json', bool, False, 'convert even typed sensor messages as plain JSON fields'),
        Param('use_header_stamp', bool, True, 'reading time = header.stamp when set (else receive time)'),
        Param('max_array_items', int, 4096, 'longer arrays are replaced by {length, truncated} (0 = keep)',
              min=0),
    )

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return (_input_port(params.get('message_type') or DEFAULT_MESSAGE_TYPE),), cls.OUTPUTS

    def setup(self) -> None:
        self.message_cls = message_class(
            self.params.get('message_type') or DEFAULT_MESSAGE_TYPE, f'{self.node_id}: parameter message_type'
        )

    def produce(self) -> Iterator[StreamPacket | None]:
        """Readings come through process(); the pull loop only waits (bounded) for the stop."""
        while not self.ctx.stop_event.wait(0.1):
            yield None

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        msg = packet.payload
        if not isinstance(msg, self.message_cls):
            raise ValueError(
                f'{self.node_id}: port {port}: expected {interface_name(self.message_cls())}, '
                f'got {type(msg).__module__}.{type(msg).__name__}'
            )
        sensor_type, fields, quality, unit = convert_message(
            msg, as_json=self.params.get('as_json', False),
            max_array_items=self.params.get('max_array_items', 4096),
        )
        header = getattr(msg, 'header', None)
        sensor_id = self.params.get('sensor_id') or getattr(header, 'frame_id', '') or packet.source_id
        self.count('readings_total')
        return sensor_packet(
            sensor_id, sensor_type, message_ts(self, msg), fields, unit=unit, quality=quality,
            meta={'ros_topic': packet.source_id},
        )
