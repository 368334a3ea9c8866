"""The latest annotated frame of each camera, small and rate-limited, for the operator page.

The annotated-image sinks of the graph (AnnotatedImageSink: boxes, tracks, zones drawn on) publish
sensor_msgs/Image; the control plane listens to exactly those topics. Per camera (the image's
frame_id, the packet's source_id) at most one frame every MIN_INTERVAL_SEC is kept: checked like
any message from outside (codec/image.py), scaled to at most MAX_WIDTH pixels wide and JPEG-encoded
once, so a page asking twice a second costs a dictionary look-up. At most MAX_CAMERAS are kept, and
the topics are subscribed only while a page or client looked at frames in the last WANTED_FOR_SEC.
"""

from __future__ import annotations

import threading
import time
from typing import Any

MAX_WIDTH = 320
MIN_INTERVAL_SEC = 1.0
MAX_CAMERAS = 16
JPEG_QUALITY = 70
#: Image topics are subscribed only while someone looked at frames this recently (a page open):
#: receiving raw frames costs the runner a few % of a core even when nobody watches.
WANTED_FOR_SEC = 10.0
MAX_NAME = 64


class CameraFrames:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[float, bytes, str]] = {}  # camera -> (monotonic, jpeg, topic)
        self.refused = 0
        self._wanted_at = float('-inf')

    def want(self) -> None:
        """Someone (a page's push stream, an API call) looks at frames now."""
        self._wanted_at = time.monotonic()

    def wanted(self) -> bool:
        return time.monotonic() - self._wanted_at < WANTED_FOR_SEC

    def due(self, camera: str) -> bool:
        """True when a frame of `camera` would be kept now (decode nothing otherwise)."""
        with self._lock:
            kept = self._frames.get(camera)
            if kept is None:
                return len(self._frames) < MAX_CAMERAS
            return time.monotonic() - kept[0] >= MIN_INTERVAL_SEC

    def offer(self, topic: str, msg: Any) -> None:
        """A sensor_msgs/Image from an annotated-image topic."""
        import cv2

        from schnitzel_stream_ros.codec.image import image_msg_to_frame

        camera = ''.join(c for c in (msg.header.frame_id or topic)[:MAX_NAME] if c.isalnum() or c in '_-.')
        camera = camera or 'camera'
        if not self.due(camera):
            return
        try:
            frame = image_msg_to_frame(msg, field=topic)
        except ValueError:
            self.refused += 1
            return
        if frame.ndim == 3 and frame.shape[2] == 3 and msg.encoding.startswith('rgb'):
            frame = frame[:, :, ::-1]
        height, width = frame.shape[:2]
        if width > MAX_WIDTH:
            frame = cv2.resize(frame, (MAX_WIDTH, max(1, round(height * MAX_WIDTH / width))),
                               interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            self.refused += 1
            return
        with self._lock:
            self._frames[camera] = (time.monotonic(), jpeg.tobytes(), topic)

    def cameras(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [{'camera': name, 'topic': topic, 'age_sec': round(now - at, 1), 'bytes': len(jpeg)}
                    for name, (at, jpeg, topic) in sorted(self._frames.items())]

    def jpeg(self, camera: str) -> bytes | None:
        with self._lock:
            kept = self._frames.get(camera)
            return None if kept is None else kept[1]
