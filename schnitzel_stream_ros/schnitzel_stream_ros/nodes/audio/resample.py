"""AudioResampleNode: chunks to another sample rate (libsoxr) and optionally to mono.

Detectors want fixed rates (the WebRTC VAD: 8/16/32/48 kHz); files and devices come at 22.05 or
44.1 kHz. soxr keeps a streaming resampler per source, so chunk borders leave no clicks and the
output length over a stream is exact (rate ratio × input), not rounded per chunk.
"""
from __future__ import annotations

from schnitzel_stream_ros.nodes.audio.pcm import audio_packet, chunk_view
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

_AUDIO = frozenset({Kind.AUDIO})


class AudioResampleNode(Plugin):
    """Resample audio chunks (libsoxr, streaming per source) and optionally mix down to mono."""

    INPUTS = (Port('in', _AUDIO, PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', _AUDIO, PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('sample_rate', int, 16000, 'output rate', min=1000, max=384_000),
        Param('mono', bool, True, 'mix all channels down to one'),
        Param('quality', str, 'HQ', 'soxr quality', choices=('QQ', 'LQ', 'MQ', 'HQ', 'VHQ')),
        Param('max_sources', int, 64, 'streams resampled at once (least recently used dropped)', min=1),
    )

    def setup(self) -> None:
        import soxr

        self.soxr = soxr
        self.streams: dict[tuple[str, int, int], object] = {}

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        chunk = chunk_view(packet, self.node_id)
        samples = chunk.mono()[:, None] if self.params['mono'] else chunk.samples
        out_rate = self.params['sample_rate']
        key = (packet.source_id, chunk.sample_rate, samples.shape[1])
        stream = self.streams.pop(key, None)
        if stream is None:
            if len(self.streams) >= self.params['max_sources']:
                self.streams.pop(next(iter(self.streams)))
                self.count('streams_evicted_total')
            stream = self.soxr.ResampleStream(chunk.sample_rate, out_rate, samples.shape[1], dtype='float32',
                                              quality=self.params['quality'])
        self.streams[key] = stream  # most recently used last
        resampled = samples if chunk.sample_rate == out_rate else stream.resample_chunk(samples)
        self.count('chunks_total')
        meta = {k: v for k, v in packet.meta.items()
                if k not in ('sample_rate', 'channels', 'duration_ms', 'content_type')}
        out = audio_packet(packet.source_id, packet.ts, resampled, out_rate, meta.pop('chunk_index', 0),
                           chunk.offset_ms, meta)
        return StreamPacket(packet.packet_id, out.ts, out.kind, out.source_id, out.payload, out.meta)
