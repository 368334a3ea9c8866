"""OpenCvWebcamSource: a local camera by index (V4L2 on Linux), with the live-source hardening.

An unplugged USB camera makes reads fail (reconnect with backoff 0.5 -> 5 s); a wedged driver
makes them block (the stall watchdog abandons the reader and reconnects).
"""
from __future__ import annotations

from typing import Any

import cv2

from schnitzel_stream_ros.nodes.vision.live_capture import Opener
from schnitzel_stream_ros.nodes.vision.live_source import LiveCameraSource, live_params
from schnitzel_stream_ros.plugin import Param


class OpenCvWebcamSource(LiveCameraSource):
    """Local camera by index: reconnect with backoff + jitter, stall watchdog, epoch per connection."""

    PARAMS = (
        Param('camera_index', int, 0, min=0, description='OpenCV camera index (/dev/videoN)'),
        *live_params(backoff_sec=0.5, backoff_max_sec=5.0),
    )

    def camera_name(self) -> str:
        return f"webcam index {self.params['camera_index']}"

    def extra_meta(self) -> dict[str, Any]:
        return {'camera_index': self.params['camera_index']}

    def opener(self) -> Opener:
        index = self.params['camera_index']
        return lambda: cv2.VideoCapture(index)
