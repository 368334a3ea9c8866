"""A camera's two tuning knobs, applied where frames are read: rate (frame skipping) and resolution.

Both are dynamic parameters of the live sources (`fps`, `resolution_scale`): an operator or the
AutonomicController lowers them under load and raises them again, without reopening the camera.
Skipping is by the camera's own read time, so a stream at 25 frames/s and `fps: 10` keeps one frame
whenever 1/10 s has passed since the last kept one (never a burst after a change); scaling shrinks
with INTER_AREA (the right filter for downscaling) and never enlarges.
"""
from __future__ import annotations

import cv2
import numpy as np

from schnitzel_stream_ros.plugin import Param

#: A frame read this close before its due time still counts as due (camera clocks jitter).
DUE_SLACK_SEC = 0.002

FRAME_KNOB_PARAMS = (
    Param('fps', float, 0.0, 'frames kept per second (frame skipping); 0 = every frame the camera gives',
          min=0.0, max=240.0, dynamic=True),
    Param('resolution_scale', float, 1.0, 'frames are shrunk by this factor (1 = as the camera gives them)',
          min=0.05, max=1.0, dynamic=True),
)


class FrameThrottle:
    """Decides per read frame whether it is kept (rate) and shrinks it (resolution)."""

    def __init__(self) -> None:
        self._last_kept: float | None = None

    def keep(self, read_time: float, fps: float) -> bool:
        if fps <= 0 or self._last_kept is None or read_time < self._last_kept:
            self._last_kept = read_time
            return True
        if read_time >= self._last_kept + 1.0 / fps - DUE_SLACK_SEC:
            self._last_kept = read_time
            return True
        return False

    @staticmethod
    def scale(frame: np.ndarray, factor: float) -> np.ndarray:
        if factor >= 1.0:
            return frame
        height, width = frame.shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
