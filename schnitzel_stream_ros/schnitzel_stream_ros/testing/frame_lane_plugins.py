"""Two small plugins for the frame-lane tests and benchmark: frames that carry their own checksum,
and a sink that checks every frame it gets and writes one JSON line per frame.

A frame is a fixed random base plus `seq` (mod 256) added to every byte, so two frames of
different seq differ everywhere: a frame overwritten while a consumer reads it (a torn frame) does
not match the CRC32 its producer wrote into `meta.crc` (zlib's CRC, ~1 GB/s, so checking a 4K frame
costs ~25 ms, not the consumer's whole budget).

The source writes each frame into `Plugin.frame_buffer` (on a frame lane: a shared-memory sample it
was lent, sent without a copy) unless `frame_buffer: false` (its own array: the lane copies it);
`drop_every: n` fills every n-th buffer and drops it unsent (a loan that must go back to the pool).
"""
from __future__ import annotations

import json
import time
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


def frame_for(base: np.ndarray, seq: int) -> np.ndarray:
    return np.add(base, np.uint8(seq % 256), dtype=np.uint8)


def frame_crc(frame: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(frame)).cast('B'))


class ChecksummedFrameSource(Plugin):
    """Emit `count` frames (0 = until stopped) of height×width×channels uint8 at `rate_hz`."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('width', int, 640, 'frame width', min=1, max=8192),
        Param('height', int, 480, 'frame height', min=1, max=8192),
        Param('channels', int, 3, 'channels', min=1, max=4),
        Param('rate_hz', float, 30.0, 'frames per second; 0 = as fast as possible', min=0.0),
        Param('count', int, 100, 'frames to emit; 0 = until stopped', min=0),
        Param('checksum', bool, True, 'write meta.crc (CRC32 of the pixels)'),
        Param('seed', int, 7, 'seed of the random base frame', min=0),
        Param('frame_buffer', bool, True, 'write frames into Plugin.frame_buffer (off: own arrays)'),
        Param('fill', str, 'full', "'row': write only the first row into the buffer (transport benchmarks, "
              "checksum off)", choices=('full', 'row')),
        Param('drop_every', int, 0, 'fill every n-th buffer and drop it unsent (0: never)', min=0),
    )

    def setup(self) -> None:
        p = self.params
        rng = np.random.default_rng(p['seed'])
        self._base = rng.integers(0, 256, (p['height'], p['width'], p['channels']), dtype=np.uint8)
        # without checksums (benchmarks): 8 ready frames in turn, as the baselines publish them
        self._ready = [frame_for(self._base, i) for i in range(8)] if not p['checksum'] else []

    def _frame(self, seq: int) -> np.ndarray:
        if not self.params['frame_buffer']:
            return self._ready[seq % 8] if self._ready else frame_for(self._base, seq)
        frame = self.frame_buffer(self._base.shape, np.uint8)
        if self._ready and self.params['fill'] == 'row':
            frame[0] = self._ready[seq % 8][0]  # the rest of the buffer: whatever the sample held
        elif self._ready:
            np.copyto(frame, self._ready[seq % 8])
        else:
            np.add(self._base, np.uint8(seq % 256), out=frame, dtype=np.uint8)
        return frame

    def produce(self) -> Iterator[StreamPacket]:
        p = self.params
        period = 1.0 / p['rate_hz'] if p['rate_hz'] > 0 else 0.0
        due = time.monotonic()
        seq = taken = 0
        while p['count'] == 0 or seq < p['count']:
            if period:
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                due += period
            taken += 1
            if p['drop_every'] and taken % p['drop_every'] == 0:
                self._frame(seq)  # filled, never emitted: its buffer must go back by itself
                self.count('buffers_dropped_total')
                continue
            frame = self._frame(seq)
            # emit_ns: CLOCK_MONOTONIC, the same clock in every process of the host (latency per frame)
            meta = {'frame_idx': seq, 'seq': seq, 'emit_ns': time.perf_counter_ns()}
            if p['checksum']:
                meta['crc'] = frame_crc(frame)
            yield StreamPacket.new(Kind.FRAME, self.node_id, frame, meta)
            seq += 1


class FrameCheckSink(Plugin):
    """Check each frame's CRC against meta.crc; one JSON line per frame (seq, ok, shared, ...), or a line
    of running counts every `summary_every_sec`."""

    ROLE = Role.SINK
    INPUTS = (Port('in', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    OUTPUTS = ()
    PARAMS = (
        Param('path', str, description='JSONL file of the checks'),
        Param('delay_sec', float, 0.0, 'sleep after each frame (a slow consumer)', min=0.0),
        Param('hold', int, 0, 'frames kept referenced after processing (a plugin that keeps frames)',
              min=0, max=64),
        Param('check', bool, True, 'compute the CRC (off: only count)'),
        Param('line_buffered', bool, True, 'flush every line (off: at most every 0.2 s, for benchmarks)'),
        Param('summary_every_sec', float, 0.0, 'instead of a line per frame, one line of running counts '
              '(frames, shared, last seq, recv_ns) this often: a flood benchmark measures the lane, not JSON '
              'lines (0: a line per frame)', min=0.0),
    )

    def setup(self) -> None:
        Path(self.params['path']).parent.mkdir(parents=True, exist_ok=True)
        buffering = 1 if self.params['line_buffered'] else 1 << 16
        self._file = open(self.params['path'], 'a', buffering=buffering)  # noqa: SIM115 - closed in close()
        self._held: deque = deque(maxlen=max(self.params['hold'], 1))
        self._next_flush = 0.0
        self._frames = self._shared = 0
        self._next_summary = time.monotonic() + self.params['summary_every_sec']

    def process(self, packet: StreamPacket, port: str = 'in') -> None:
        frame = packet.payload
        shared = isinstance(frame, np.ndarray) and not frame.flags.owndata
        if self.params['summary_every_sec']:
            self._frames += 1
            self._shared += shared
            if time.monotonic() >= self._next_summary:
                self._next_summary = time.monotonic() + self.params['summary_every_sec']
                counts = {'frames': self._frames, 'shared': self._shared, 'seq': packet.meta.get('seq'),
                          'recv_ns': time.perf_counter_ns()}
                self._file.write(json.dumps(counts) + '\n')
                self._file.flush()
            return
        record = {'seq': packet.meta.get('seq'), 'shape': list(getattr(frame, 'shape', ())),
                  'shared': shared, 'recv_ns': time.perf_counter_ns(), 'emit_ns': packet.meta.get('emit_ns')}
        if self.params['check'] and 'crc' in packet.meta:
            record['ok'] = frame_crc(frame) == packet.meta['crc']
        if self.params['hold']:
            self._held.append(frame)
        self._file.write(json.dumps(record) + '\n')
        if not self.params['line_buffered'] and time.monotonic() >= self._next_flush:
            self._file.flush()
            self._next_flush = time.monotonic() + 0.2
        if self.params['delay_sec']:
            time.sleep(self.params['delay_sec'])

    def close(self) -> None:
        self._held.clear()
        self._file.close()
