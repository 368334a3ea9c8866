"""AudioFileSource: WAV/FLAC/OGG files (libsndfile via soundfile) as fixed-duration PCM chunks.

Chunks of `chunk_ms` (the last one may be shorter), as fast as the graph takes them or paced in
real time (`realtime`), optionally looping. Times are deterministic like the video file source's:
chunk ts = `start_ts` (default: the time the source started) + offset, so a test knows the exact
time of every sample. The file is read block by block (never whole into memory), so a 10-hour
recording costs one chunk of memory.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

from schnitzel_stream_ros.nodes.audio.pcm import audio_packet
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket, format_ts, now_ts, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class AudioFileSource(Plugin):
    """Audio file (WAV, FLAC, OGG: libsndfile) as fixed-duration s16le PCM chunks (kind=audio)."""

    ROLE = Role.SOURCE
    OUTPUTS = (Port('out', frozenset({Kind.AUDIO}), PayloadProfile.INPROC_ANY,
                    description='PCM chunks; rate/channels/format in meta'),)
    PARAMS = (
        Param('path', str, description='audio file (WAV, FLAC, OGG/Vorbis, ...)'),
        Param('chunk_ms', int, 100, 'duration of each chunk', min=5, max=10_000),
        Param('source_id', str, '', 'source id of the chunks (default: the node id)'),
        Param('realtime', bool, False, 'pace chunks at the speed of the audio (else as fast as consumed)'),
        Param('loop', bool, False, 'start again at the end of the file'),
        Param('max_chunks', int, 0, 'stop after N chunks (0 = the whole file / forever when looping)', min=0),
        Param('start_ts', str, '', 'time of the first sample (ISO-8601; default: when the source starts)'),
    )

    def setup(self) -> None:
        import soundfile

        try:
            self.info = soundfile.info(self.params['path'])
        except (RuntimeError, OSError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
            path = self.params['path']
            raise ValueError(f'{self.node_id}: parameter path: cannot read {path!r}: {exc}') from None
        if self.params.get('start_ts'):
            parse_ts(self.params['start_ts'])  # refuse a bad time before start
        self.source_id = self.params.get('source_id') or self.node_id

    def produce(self) -> Iterator[StreamPacket]:
        import soundfile

        rate = int(self.info.samplerate)
        block = max(1, rate * self.params['chunk_ms'] // 1000)
        start = parse_ts(self.params.get('start_ts') or now_ts())
        started = time.monotonic()
        index, frames_done = 0, 0
        max_chunks = self.params.get('max_chunks', 0)
        while not self.stopping:
            with soundfile.SoundFile(self.params['path']) as audio:
                for samples in audio.blocks(blocksize=block, dtype='float32', always_2d=True):
                    if self.stopping or (max_chunks and index >= max_chunks):
                        return
                    offset_s = frames_done / rate
                    if self.params.get('realtime'):
                        delay = started + offset_s - time.monotonic()
                        if delay > 0 and self.ctx.stop_event.wait(delay):
                            return
                    ts = format_ts(start + timedelta(microseconds=round(offset_s * 1e6)))
                    yield audio_packet(self.source_id, ts, samples, rate, index, offset_s * 1000.0)
                    self.count('chunks_total')
                    index += 1
                    frames_done += samples.shape[0]
            if not self.params.get('loop'):
                return
