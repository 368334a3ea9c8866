"""VoiceActivityNode: how much of each chunk is speech — the WebRTC VAD with a spectral gate.

Detector: the WebRTC voice activity detector (`webrtcvad`, a GMM over sub-band energies, no model
files) on 10/20/30 ms frames at 8/16/32/48 kHz mono, **and** a spectral gate that rejects the two
things it is known to take for speech: broadband noise (spectral flatness in 250–4000 Hz above
`max_flatness`: white noise ≈ 0.55, pink ≈ 0.45, voiced speech ≈ 0.05) and pure tones (more than
`max_tonal_share` of the power in the 3 strongest bins). A frame is voiced when both agree.

Output per chunk: a `voice_activity` reading `{voice_ratio, voiced_frames, frames, voice,
offset_ms, duration_ms}` with `voice = voice_ratio >= min_ratio`. Frames that straddle a chunk
border are carried over per source. `emit: voiced` emits only chunks with voice — the form that
SensorFusionNode attaches to camera events ("a person and a voice in the same window").
"""
from __future__ import annotations

import numpy as np

from schnitzel_stream_ros.nodes.audio.pcm import chunk_view, to_pcm
from schnitzel_stream_ros.nodes.sensors.reading import sensor_packet
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

VAD_RATES = (8000, 16000, 32000, 48000)


def spectral_gate(frame: np.ndarray, rate: int, max_flatness: float, max_tonal_share: float) -> bool:
    """True when the frame's spectrum could be speech (neither flat noise nor a pure tone)."""
    windowed = frame.astype(np.float64) * np.hanning(frame.size)
    power = np.abs(np.fft.rfft(windowed)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(frame.size, 1.0 / rate)
    band = power[(freqs >= 250) & (freqs <= 4000)]
    flatness = float(np.exp(np.mean(np.log(band))) / np.mean(band))
    tonal = float(np.sort(power)[-3:].sum() / power.sum())
    return flatness <= max_flatness and tonal <= max_tonal_share


class VoiceActivityNode(Plugin):
    """Speech in each audio chunk: WebRTC VAD + spectral gate (noise and tones are not voices)."""

    INPUTS = (Port('in', frozenset({Kind.AUDIO}), PayloadProfile.INPROC_ANY,
                   description='mono chunks at 8/16/32/48 kHz (AudioResampleNode)'),)
    OUTPUTS = (Port('out', frozenset({Kind.SENSOR}), description='voice_activity readings'),)
    PARAMS = (
        Param('aggressiveness', int, 3, 'WebRTC VAD mode: 0 (keeps most) .. 3 (rejects most)', min=0, max=3),
        Param('frame_ms', int, 20, 'VAD frame', choices=(10, 20, 30)),
        Param('min_ratio', float, 0.5, 'voiced share of a chunk from which `voice` is true',
              min=0.0, max=1.0),
        Param('max_flatness', float, 0.3, 'spectral flatness above which a frame is noise', min=0.0, max=1.0),
        Param('max_tonal_share', float, 0.9, 'power share of the 3 strongest bins from which it is a tone',
              min=0.0, max=1.0),
        Param('emit', str, 'all', 'emit a reading for every chunk or only for voiced ones',
              choices=('all', 'voiced')),
        Param('max_sources', int, 64, 'streams tracked at once (least recently used dropped)', min=1),
    )

    def setup(self) -> None:
        import webrtcvad

        self.webrtcvad = webrtcvad
        self.streams: dict[str, tuple[object, np.ndarray]] = {}

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        chunk = chunk_view(packet, self.node_id)
        if chunk.sample_rate not in VAD_RATES:
            raise ValueError(
                f'{self.node_id}: packet {packet.packet_id} (source_id {packet.source_id}): '
                f'meta.sample_rate: {chunk.sample_rate} Hz; the VAD needs one of {list(VAD_RATES)} '
                '(put an AudioResampleNode before it)'
            )
        p = self.params
        vad, carry = self.streams.pop(packet.source_id, (None, np.zeros(0, np.float32)))
        if vad is None:
            if len(self.streams) >= p['max_sources']:
                self.streams.pop(next(iter(self.streams)))
                self.count('streams_evicted_total')
            vad = self.webrtcvad.Vad(p['aggressiveness'])
        samples = np.concatenate([carry, chunk.mono()])
        n = chunk.sample_rate * p['frame_ms'] // 1000
        whole = samples.size // n * n
        frames = voiced = 0
        for start in range(0, whole, n):
            frame = samples[start:start + n]
            frames += 1
            if vad.is_speech(to_pcm(frame), chunk.sample_rate) and spectral_gate(
                frame, chunk.sample_rate, p['max_flatness'], p['max_tonal_share']
            ):
                voiced += 1
        self.streams[packet.source_id] = (vad, samples[whole:])
        ratio = voiced / frames if frames else 0.0
        voice = frames > 0 and ratio >= p['min_ratio']
        self.count('chunks_total')
        if voice:
            self.count('voiced_chunks_total')
        elif p['emit'] == 'voiced':
            return None
        fields = {'voice': voice, 'voice_ratio': round(ratio, 4), 'voiced_frames': voiced, 'frames': frames,
                  'offset_ms': chunk.offset_ms, 'duration_ms': round(chunk.duration_ms, 3)}
        return sensor_packet(packet.source_id, 'voice_activity', packet.ts, fields,
                             meta={'source_packet_id': packet.packet_id})
