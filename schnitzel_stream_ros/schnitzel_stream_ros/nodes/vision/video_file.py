"""OpenCvVideoFileSource: frames of a video file, with timestamps and keys that repeat exactly.

Replays must produce the same packets: with `start_ts` a frame's ts is start_ts + its position in
the file (plus the length of the passes before it when looping), and its idempotency key is
`frame:<source_id>:<frame_idx>` — both independent of wall clock and machine speed. Without
`start_ts` the ts is the wall clock at read time (upstream behaviour).

`realtime: true` paces frames at the file's own rate, so a file can stand in for a camera in a
site graph (decoding as fast as possible would burn a core for frames nobody can use); `phase_ms`
shifts that pacing, so several such cameras do not all deliver at the same instant.

Frames are decoded straight into `Plugin.frame_buffer` (`VideoCapture.read(image)` fills a given
array of the right size): when the output goes to another container over a shared-memory frame lane,
that is the shared memory the frame is sent from, so a decoded frame is never copied.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2

from schnitzel_stream_ros.nodes.vision.frame_knobs import FRAME_KNOB_PARAMS, FrameThrottle
from schnitzel_stream_ros.nodes.vision.frames import frame_packet
from schnitzel_stream_ros.packet import (
    Kind,
    MetaKey,
    PayloadProfile,
    StreamPacket,
    format_ts,
    now_ts,
    parse_ts,
)
from schnitzel_stream_ros.plugin import DEFAULT_OUTPUT, Param, Plugin, Port, Role

FRAME_OUTPUT = Port(DEFAULT_OUTPUT, kinds=frozenset({Kind.FRAME}), profile=PayloadProfile.INPROC_ANY,
                    description='numpy BGR uint8 frames; meta frame_idx, pos_msec, idempotency_key')


class OpenCvVideoFileSource(Plugin):
    """Frames of a video file (OpenCV/FFmpeg), optionally looped and paced at the file's rate."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (FRAME_OUTPUT,)
    PARAMS = (
        Param('path', str, description='video file (absolute, or relative to the working directory)'),
        Param('source_id', str, None, description='packet source_id (default: the node id)'),
        Param('loop', bool, False, description='start again at the end of the file'),
        Param('max_frames', int, 0, min=0, description='stop after this many frames (0: no limit)'),
        Param('start_ts', str, None, description='ISO-8601 time of the first frame: deterministic ts'),
        Param('realtime', bool, False, description="pace frames at the file's frame rate"),
        Param('phase_ms', float, 0.0, min=0.0, max=10000.0,
              description='with realtime: start pacing this much later, so clips standing in for several '
                          'cameras do not deliver in lock-step (real cameras have their own clocks)'),
        *FRAME_KNOB_PARAMS,  # fps (skipping by the file's own time: a replay skips the same frames), scale
    )

    def setup(self) -> None:
        path = Path(self.params['path']).expanduser()
        if not path.is_file():
            raise ValueError(f"node {self.node_id!r}: parameter 'path': no such video file: {path}")
        self.path = path
        self.source_id: str = self.params.get('source_id') or self.node_id
        start_ts = self.params.get('start_ts')
        try:
            self.start = parse_ts(start_ts) if start_ts else None
        except ValueError as exc:
            raise ValueError(f"node {self.node_id!r}: parameter 'start_ts': {exc}") from None
        self._cap: Any = None
        self._open()
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_interval_ms = 1000.0 / fps if 0.0 < fps < 1000.0 else 0.0

    def _open(self) -> None:
        self._release()
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"node {self.node_id!r}: parameter 'path': OpenCV cannot open {self.path}")
        self._cap = cap
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self._shape = (height, width, 3) if height > 0 and width > 0 else None

    def _read(self) -> tuple[bool, Any]:
        """The next frame, decoded into a frame buffer when it keeps its size (a frame of another
        size than the file announced: OpenCV allocates its own array, which works as well)."""
        if self._shape is None or self.params['resolution_scale'] < 1.0:
            return self._cap.read()
        return self._cap.read(self.frame_buffer(self._shape))

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def produce(self) -> Iterator[StreamPacket]:
        max_frames: int = self.params['max_frames']
        frame_idx = 0
        frames_this_pass = 0
        pass_offset_ms = 0.0  # length of the passes already played (loop)
        last_pos_ms = 0.0
        t0 = time.monotonic() + (self.params['phase_ms'] / 1000.0 if self.params['realtime'] else 0.0)
        throttle = FrameThrottle()
        while not self.stopping:
            ok, frame = self._read()
            if not ok or frame is None:
                if not self.params['loop'] or frames_this_pass == 0:
                    return
                pass_offset_ms += last_pos_ms + self.frame_interval_ms
                frames_this_pass = 0
                self._open()
                self.count('loops_total')
                continue
            pos_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
            last_pos_ms = pos_ms
            frames_this_pass += 1
            stream_ms = pass_offset_ms + pos_ms
            if self.params['realtime']:
                delay = t0 + stream_ms / 1000.0 - time.monotonic()
                if delay > 0 and self.ctx.stop_event.wait(delay):
                    return
            if not throttle.keep(stream_ms / 1000.0, self.params['fps']):  # dynamic: read every frame
                self.count('frames_skipped_total')
                frame_idx += 1
                if max_frames and frame_idx >= max_frames:
                    return
                continue
            frame = throttle.scale(frame, self.params['resolution_scale'])
            ts = format_ts(self.start + timedelta(milliseconds=stream_ms)) if self.start else now_ts()
            meta = {
                MetaKey.FRAME_IDX: frame_idx,
                MetaKey.POS_MSEC: int(pos_ms),
                MetaKey.IDEMPOTENCY_KEY: f'frame:{self.source_id}:{frame_idx}',
            }
            yield frame_packet(self.source_id, frame, ts, meta)
            frame_idx += 1
            if max_frames and frame_idx >= max_frames:
                return

    def close(self) -> None:
        self._release()
