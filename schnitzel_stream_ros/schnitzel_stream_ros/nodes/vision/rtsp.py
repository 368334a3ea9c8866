"""OpenCvRtspSource: an RTSP camera through OpenCV's FFmpeg backend, hardened for real networks.

FFmpeg options are process-wide (the OPENCV_FFMPEG_CAPTURE_OPTIONS environment variable, read when
a capture opens), so opens are serialised under one lock while the variable holds this camera's
options; the open and read timeouts are per capture. The read timeout only bounds how long an
abandoned reader thread lingers: a hung server is caught by the stall watchdog (timeout_sec),
which must therefore fire first. The small analyzeduration/probesize cut connection time from
~2 s to well under one (test-assets.md), which matters on every reconnect.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import cv2

from schnitzel_stream_ros.delivery.redact import mask_url
from schnitzel_stream_ros.nodes.vision.live_capture import Opener
from schnitzel_stream_ros.nodes.vision.live_source import LiveCameraSource, live_params
from schnitzel_stream_ros.plugin import Param

FFMPEG_OPTIONS_ENV = 'OPENCV_FFMPEG_CAPTURE_OPTIONS'
_ffmpeg_env_lock = threading.Lock()


def open_ffmpeg_capture(url: str, options: str, open_timeout_ms: int, read_timeout_ms: int) -> Any:
    """cv2.VideoCapture(url) with these FFmpeg options and timeouts (the env var is restored)."""
    with _ffmpeg_env_lock:
        previous = os.environ.get(FFMPEG_OPTIONS_ENV)
        os.environ[FFMPEG_OPTIONS_ENV] = options
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms,
            ])
        finally:
            if previous is None:
                os.environ.pop(FFMPEG_OPTIONS_ENV, None)
            else:
                os.environ[FFMPEG_OPTIONS_ENV] = previous


class OpenCvRtspSource(LiveCameraSource):
    """RTSP camera: reconnect with backoff + jitter, stall watchdog, epoch per connection."""

    PARAMS = (
        Param('url', str, description='rtsp://[user:password@]host[:port]/path (credentials never logged)'),
        Param('transport', str, 'tcp', choices=('tcp', 'udp'), description='RTP transport'),
        Param('read_timeout_sec', float, None, min=0.1,
              description='FFmpeg read timeout; keep it above timeout_sec (default: 2 x timeout_sec)'),
        Param('capture_options', str, 'analyzeduration;100000|probesize;100000',
              description="extra FFmpeg options, 'key;value|key;value'"),
        *live_params(backoff_sec=1.0, backoff_max_sec=30.0),
    )

    def setup(self) -> None:
        url = self.params['url'].strip()
        if '://' not in url:
            raise ValueError(f"node {self.node_id!r}: parameter 'url': not a URL: {mask_url(url)!r}")
        self.url = url
        super().setup()
        # An interrupted FFmpeg read still hands out a buffered frame at every read timeout, so a read
        # timeout below timeout_sec would keep feeding the watchdog and hide a hung server.
        timeout = self.params['timeout_sec']
        self.read_timeout_sec: float = self.params['read_timeout_sec'] or 2.0 * timeout
        if self.read_timeout_sec <= timeout:
            raise ValueError(f"node {self.node_id!r}: parameter 'read_timeout_sec' ({self.read_timeout_sec}) "
                             f"must be above 'timeout_sec' ({timeout}): the stall watchdog would never fire")

    def camera_name(self) -> str:
        return f'rtsp {mask_url(self.url)}'

    def opener(self) -> Opener:
        p = self.params
        options = f"rtsp_transport;{p['transport']}"
        if p['capture_options']:
            options += '|' + p['capture_options'].strip('|')
        open_ms = int(p['open_timeout_sec'] * 1000)
        read_ms = int(self.read_timeout_sec * 1000)
        return lambda: open_ffmpeg_capture(self.url, options, open_ms, read_ms)
