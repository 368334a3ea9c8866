"""RosImageTopicSource: a ROS camera topic (sensor_msgs/Image or CompressedImage) as frame packets.

Lets any ROS camera driver feed the detector lane: the runtime subscribes to `topic` with the
port's message type and hands each message to `process()`; this plugin turns it into the suite's
frame packet (kind=frame, numpy array, nodes/vision/frames.py) with the codec's converters — the
same code that carries frames between containers, so a frame looks the same whichever way it came.
Earlier ROS 2 plugins of upstream read `/camera/image_raw/compressed`; set `message_type:
sensor_msgs/msg/CompressedImage` and that topic to keep such a setup.

Detectors expect 3-channel BGR uint8, so `to_bgr8` (default on) converts rgb8 / rgba8 / bgra8 /
mono8 frames; other encodings (16-bit, float depth images) pass as decoded. Frame time is
header.stamp when set, else the receive time; `frame_idx` counts frames per node.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from schnitzel_stream_ros.codec.compressed_image import compressed_msg_to_frame
from schnitzel_stream_ros.codec.image import image_msg_to_frame
from schnitzel_stream_ros.nodes.sensors.reading import message_ts
from schnitzel_stream_ros.nodes.vision.frames import frame_packet
from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
_MESSAGE_CLASSES = {IMAGE_TYPE: Image, COMPRESSED_TYPE: CompressedImage}
_TO_BGR = {
    'rgb8': cv2.COLOR_RGB2BGR,
    'rgba8': cv2.COLOR_RGBA2BGR,
    'bgra8': cv2.COLOR_BGRA2BGR,
    'mono8': cv2.COLOR_GRAY2BGR,
    '8UC1': cv2.COLOR_GRAY2BGR,
}


def _input_port(message_type: str) -> Port:
    return Port('in', frozenset({Kind.RAW}), PayloadProfile.INPROC_ANY, msg_type=message_type, required=False,
                description='camera images from `topic`')


class RosImageTopicSource(Plugin):
    """Frames from a ROS image topic (sensor_msgs/Image or CompressedImage), as numpy BGR frames."""

    ROLE = Role.SOURCE
    INPUTS = (_input_port(IMAGE_TYPE),)
    OUTPUTS = (Port('out', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY, description='frame packets'),)
    PARAMS = (
        Param('topic', str, description='ROS image topic, e.g. /camera/image_raw'),
        Param('message_type', str, IMAGE_TYPE, 'message type of the topic', choices=tuple(_MESSAGE_CLASSES)),
        Param('camera_id', str, '', 'source_id of the frames (default: header.frame_id, else the topic)'),
        Param('to_bgr8', bool, True, 'convert rgb8/rgba8/bgra8/mono8 frames to 3-channel bgr8'),
        Param('use_header_stamp', bool, True, 'frame time = header.stamp when set (else receive time)'),
    )

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return (_input_port(params.get('message_type') or IMAGE_TYPE),), cls.OUTPUTS

    def setup(self) -> None:
        self.message_cls = _MESSAGE_CLASSES[self.params.get('message_type') or IMAGE_TYPE]
        self.frame_idx = 0

    def produce(self) -> Iterator[StreamPacket | None]:
        """Frames come through process(); the pull loop only waits (bounded) for the stop."""
        while not self.ctx.stop_event.wait(0.1):
            yield None

    def _decode(self, msg: Image | CompressedImage) -> np.ndarray:
        if isinstance(msg, CompressedImage):
            return compressed_msg_to_frame(msg, field='message')
        frame = image_msg_to_frame(msg, field='message')
        code = _TO_BGR.get(msg.encoding) if self.params.get('to_bgr8', True) else None
        return cv2.cvtColor(frame, code) if code is not None else frame

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        msg = packet.payload
        if not isinstance(msg, self.message_cls):
            raise ValueError(
                f'{self.node_id}: port {port}: expected {self.params.get("message_type") or IMAGE_TYPE}, '
                f'got {type(msg).__module__}.{type(msg).__name__}'
            )
        try:
            frame = self._decode(msg)
        except (ValueError, TypeError, RuntimeError) as exc:  # one corrupt image must not stop the camera
            self.count('invalid_images_total')
            self.log.warning(f'{self.node_id}: image from {packet.source_id} not decodable: {exc}')
            return None
        if self.params.get('to_bgr8', True) and frame.ndim == 2 and frame.dtype == np.uint8:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)  # compressed mono
        camera_id = self.params.get('camera_id') or msg.header.frame_id or packet.source_id
        meta = {MetaKey.FRAME_IDX: self.frame_idx, 'ros_topic': packet.source_id}
        self.frame_idx += 1
        self.count('frames_total')
        return frame_packet(camera_id, frame, message_ts(self, msg), meta)
