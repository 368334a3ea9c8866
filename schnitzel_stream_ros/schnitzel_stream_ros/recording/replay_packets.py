"""Recorded ROS messages -> StreamPackets, the same packets the live graph carried.

- `schnitzel_stream_msgs/msg/StreamPacket`: the contract codec (`decode_packet`) gives back the
  packet exactly — packet_id, ts, kind, source_id, payload, meta (frame_idx, idempotency_key...).
- `sensor_msgs/msg/Image` / `CompressedImage`: a frame packet as a camera topic source makes it
  (nodes/vision/frames.py): source_id = header.frame_id (else the topic), ts = header.stamp (else
  the recorded receive time), meta.frame_idx = position on its topic.
- `schnitzel_stream_msgs/msg/Event`: the event packet of the event protocol (same event_id).
- anything else: kind=raw, its fields as JSON (nodes/sensors/ros_message_json.py).

Packet ids of converted (non-StreamPacket) messages are derived from topic and position, never
random, so two replays of one file produce the same packets.
"""
from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rclpy.serialization import deserialize_message

from schnitzel_stream_ros.codec.compressed_image import compressed_msg_to_frame
from schnitzel_stream_ros.codec.event_protocol import event_msg_to_packet
from schnitzel_stream_ros.codec.image import image_msg_to_frame
from schnitzel_stream_ros.codec.interfaces import message_class
from schnitzel_stream_ros.codec.packet_codec import decode_packet
from schnitzel_stream_ros.codec.timestamps import header_ts
from schnitzel_stream_ros.nodes.sensors.ros_message_json import message_to_dict
from schnitzel_stream_ros.packet import Kind, MetaKey, StreamPacket, format_ts
from schnitzel_stream_ros.recording.mcap_reader import RecordedMessage

STREAM_PACKET_TYPE = 'schnitzel_stream_msgs/msg/StreamPacket'
EVENT_TYPE = 'schnitzel_stream_msgs/msg/Event'
IMAGE_TYPES = frozenset({'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage'})
#: uuid5 namespace of replayed packet ids
REPLAY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, 'schnitzel_stream:mcap_replay')


def log_time_ts(log_time_ns: int) -> str:
    return format_ts(datetime.fromtimestamp(log_time_ns // 1000 / 1_000_000, UTC))


@dataclass
class PacketRebuilder:
    """Turns recorded messages into packets; keeps the per-topic positions a replay needs."""

    _positions: dict[str, int] = field(default_factory=dict)
    _classes: dict[str, type] = field(default_factory=dict)

    def message_class(self, type_name: str) -> type:
        cls = self._classes.get(type_name)
        if cls is None:
            cls = message_class(type_name, 'recorded schema')
            self._classes[type_name] = cls
        return cls

    def packet(self, recorded: RecordedMessage) -> StreamPacket:
        """The packet of one recorded message; ValueError/TypeError for undecodable content."""
        position = self._positions.get(recorded.topic, 0)
        self._positions[recorded.topic] = position + 1
        msg = deserialize_message(recorded.data, self.message_class(recorded.type_name))
        if recorded.type_name == STREAM_PACKET_TYPE:
            return decode_packet(msg)
        if recorded.type_name == EVENT_TYPE:
            packet_id = self._packet_id(recorded, position)
            return dataclasses.replace(event_msg_to_packet(msg), packet_id=packet_id)
        ts = header_ts(msg) or log_time_ts(recorded.log_time_ns)
        packet_id = self._packet_id(recorded, position)
        meta: dict[str, Any] = {'ros_topic': recorded.topic}
        if recorded.type_name in IMAGE_TYPES:
            frame = (image_msg_to_frame(msg, field='message', copy=True) if hasattr(msg, 'encoding')
                     else compressed_msg_to_frame(msg, field='message'))
            meta[MetaKey.FRAME_IDX] = position
            source_id = msg.header.frame_id or recorded.topic
            return StreamPacket(packet_id, ts, Kind.FRAME, source_id, frame, meta)
        meta['ros_type'] = recorded.type_name
        return StreamPacket(packet_id, ts, Kind.RAW, recorded.topic, message_to_dict(msg), meta)

    @staticmethod
    def _packet_id(recorded: RecordedMessage, position: int) -> str:
        return str(uuid.uuid5(REPLAY_NAMESPACE, f'{recorded.topic}:{position}:{recorded.log_time_ns}'))
