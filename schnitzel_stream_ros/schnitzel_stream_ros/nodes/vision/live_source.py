"""The plugin half shared by live cameras (RTSP, webcam): parameters, packets, counters.

Subclasses say how to open their capture and how to name it in logs; everything about surviving
the camera lives in live_capture.py. Frames carry `epoch` and the key
`frame:<source_id>:<epoch>:<frame_idx>` (upstream contract); ts is the wall clock at read time.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from schnitzel_stream_ros.nodes.vision.frame_knobs import FRAME_KNOB_PARAMS, FrameThrottle
from schnitzel_stream_ros.nodes.vision.frames import frame_packet
from schnitzel_stream_ros.nodes.vision.live_capture import LiveCapture, Opener, ReconnectPolicy
from schnitzel_stream_ros.nodes.vision.video_file import FRAME_OUTPUT
from schnitzel_stream_ros.observability.plugin_log import Level
from schnitzel_stream_ros.packet import MetaKey, StreamPacket, format_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Role

_STOP_BETWEEN_ERRORS_SEC = 1.0


def live_params(backoff_sec: float, backoff_max_sec: float) -> tuple[Param, ...]:
    """Parameters every live source has (upstream names; defaults differ per camera kind)."""
    return (
        Param('source_id', str, None, description='packet source_id (default: the node id)'),
        Param('max_frames', int, 0, min=0, description='stop after this many frames (0: no limit)'),
        Param('reconnect', bool, True, description='reconnect after a failure or stall'),
        Param('reconnect_backoff_sec', float, backoff_sec, min=0.0, description='first reconnect delay'),
        Param('reconnect_backoff_max_sec', float, backoff_max_sec, min=0.0,
              description='reconnect delay cap (doubling from reconnect_backoff_sec)'),
        Param('reconnect_max_attempts', int, 0, min=0,
              description='give up after this many failed attempts in a row (0: never)'),
        Param('jitter', float, 0.2, min=0.0, max=1.0, description='reconnect delay jitter, a fraction'),
        Param('timeout_sec', float, 5.0, min=0.1,
              description='stall watchdog: reconnect when no frame arrived for this long'),
        Param('open_timeout_sec', float, 3.0, min=0.1, description='connection (open) timeout'),
        *FRAME_KNOB_PARAMS,
    )


class LiveCameraSource(Plugin):
    """Base of live camera sources: subclasses implement `opener()` and `camera_name()`."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (FRAME_OUTPUT,)

    def opener(self) -> Opener:
        raise NotImplementedError

    def camera_name(self) -> str:
        """How log lines name this camera (never with credentials)."""
        raise NotImplementedError

    def extra_meta(self) -> dict[str, Any]:
        return {}

    def setup(self) -> None:
        p = self.params
        self.source_id: str = p.get('source_id') or self.node_id
        low, high = p['reconnect_backoff_sec'], p['reconnect_backoff_max_sec']
        if high < low:
            raise ValueError(f"node {self.node_id!r}: parameter 'reconnect_backoff_max_sec' ({high}) "
                             f"is below 'reconnect_backoff_sec' ({low})")
        self.policy = ReconnectPolicy(p['reconnect_backoff_sec'], p['reconnect_backoff_max_sec'], p['jitter'],
                                      p['reconnect_max_attempts'])
        self._capture: LiveCapture | None = None
        self._lock = threading.Lock()

    def _log(self, level: Level, text: str) -> None:
        self.log.log(level, f'{self.node_id}: {text}')

    def _new_capture(self) -> LiveCapture:
        p = self.params
        return LiveCapture(
            self.opener(), name=self.camera_name(), policy=self.policy, reconnect=p['reconnect'],
            open_timeout_sec=p['open_timeout_sec'] + 2.0,  # the backend's own timeout fires first
            stall_timeout_sec=p['timeout_sec'], stop=self.ctx.stop_event, log=self._log,
            count=self.count, gauge=self.gauge,
        )

    def produce(self) -> Iterator[StreamPacket]:
        max_frames: int = self.params['max_frames']
        extra = self.extra_meta()
        frame_idx = 0
        throttle = FrameThrottle()
        while not self.stopping:
            capture = self._new_capture()
            with self._lock:
                self._capture = capture
            try:
                for got in capture.frames():
                    if not throttle.keep(got.wall_time, self.params['fps']):  # dynamic: read every time
                        self.count('frames_skipped_total')
                        frame_idx += 1
                        if max_frames and frame_idx >= max_frames:
                            return
                        continue
                    meta = {
                        MetaKey.FRAME_IDX: frame_idx,
                        MetaKey.EPOCH: got.epoch,
                        MetaKey.IDEMPOTENCY_KEY: f'frame:{self.source_id}:{got.epoch}:{frame_idx}',
                        **extra,
                    }
                    ts = format_ts_from_epoch(got.wall_time)
                    frame = throttle.scale(got.frame, self.params['resolution_scale'])
                    yield frame_packet(self.source_id, frame, ts, meta)
                    frame_idx += 1
                    if max_frames and frame_idx >= max_frames:
                        return
                return  # stopped, or gave up (already logged)
            except Exception as exc:  # a camera problem must never take the graph down
                self.count('errors_total')
                self._log('error', f'{self.camera_name()}: unexpected {type(exc).__name__}: {exc}; '
                                   'restarting capture')
                if self.ctx.stop_event.wait(_STOP_BETWEEN_ERRORS_SEC):
                    return
            finally:
                capture.close()

    def close(self) -> None:
        with self._lock:
            capture, self._capture = self._capture, None
        if capture is not None:
            capture.close()


def format_ts_from_epoch(wall_time: float) -> str:
    """Packet ts text of a time.time() value."""
    return format_ts(datetime.fromtimestamp(wall_time, UTC))
