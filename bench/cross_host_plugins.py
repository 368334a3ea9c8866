"""The frame source of bench/cross_host_bench.py (a plugin module of its own: the bench allowlists it).

640x480 BGR frames of the pedestrian clip (a synthetic pattern when the clip is absent), shifted by
one pixel per frame so no two JPEGs are equal, as fast as the graph takes them (`rate_hz` 0) or paced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

WIDTH, HEIGHT = 640, 480


def bench_frame(clip: str) -> np.ndarray:
    """One 640x480 BGR frame: the clip's first frame, resized (or a textured pattern)."""
    import cv2

    capture = cv2.VideoCapture(clip) if clip else None
    ok, frame = capture.read() if capture is not None else (False, None)
    if capture is not None:
        capture.release()
    if ok:
        return np.ascontiguousarray(cv2.resize(frame, (WIDTH, HEIGHT)))
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rng = np.random.default_rng(7)
    pattern = ((x // 16 + y // 16) % 2 * 120 + rng.integers(0, 40, (HEIGHT, WIDTH))).astype(np.uint8)
    return np.dstack([pattern, np.roll(pattern, 5, 1), np.roll(pattern, 9, 0)])


class BenchFrameSource(Plugin):
    """640x480 frames for the cross-host bench."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('clip', str, '', 'video whose first frame is used ("" = a pattern)'),
        Param('rate_hz', float, 0.0, 'frames per second (0 = as fast as the graph takes them)', min=0.0),
        Param('count', int, 0, 'frames (0 = until stopped)', min=0),
    )

    def produce(self) -> Iterator[StreamPacket]:
        frame = bench_frame(self.params['clip'])
        period = 1.0 / self.params['rate_hz'] if self.params['rate_hz'] else 0.0
        start, i = time.monotonic(), 0
        while not self.ctx.stop_event.is_set() and (not self.params['count'] or i < self.params['count']):
            if period and self.ctx.stop_event.wait(max(0.0, start + i * period - time.monotonic())):
                return
            yield StreamPacket.new(Kind.FRAME, self.node_id, np.roll(frame, i % WIDTH, axis=1))
            i += 1
