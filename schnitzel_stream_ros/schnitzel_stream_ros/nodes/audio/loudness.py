"""AudioLoudnessNode: the level of each chunk in dBFS (RMS and peak, A-weighted optionally).

dBFS here is RMS relative to a full-scale square wave (a full-scale sine reads −3.01 dBFS), the
usual meter convention. A-weighting (IEC 61672) is applied in the frequency domain: the chunk's
power spectrum weighted by |A(f)|², summed (Parseval), so it is exact per chunk and needs no filter
state across chunks. Silence reads `floor_dbfs` (−120), never −inf (readings are strict JSON).
"""
from __future__ import annotations

import math

import numpy as np

from schnitzel_stream_ros.nodes.audio.pcm import chunk_view
from schnitzel_stream_ros.nodes.sensors.reading import sensor_packet
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port


def a_weighting(freqs: np.ndarray) -> np.ndarray:
    """|A(f)| (linear amplitude), normalised to 1 at 1 kHz (IEC 61672-1 analogue definition)."""
    f2 = np.asarray(freqs, dtype=np.float64) ** 2
    c1, c2, c3, c4 = 20.598997 ** 2, 107.65265 ** 2, 737.86223 ** 2, 12194.217 ** 2
    ra = (c4 * f2 ** 2) / ((f2 + c1) * np.sqrt((f2 + c2) * (f2 + c3)) * (f2 + c4))
    return ra * 10 ** (2.0 / 20.0)  # +2.00 dB puts 1 kHz at 0 dB


def dbfs(power: float, floor: float) -> float:
    return max(floor, 10.0 * math.log10(power)) if power > 0 else floor


def levels(mono: np.ndarray, sample_rate: int, weighting: str, floor: float) -> dict[str, float]:
    x = mono.astype(np.float64)
    if x.size == 0:
        return {'dbfs': floor, 'peak_dbfs': floor}
    out = {
        'dbfs': round(dbfs(float(np.mean(x * x)), floor), 3),
        'peak_dbfs': round(dbfs(float(np.max(np.abs(x))) ** 2, floor), 3),
    }
    if weighting == 'A':
        spectrum = np.fft.rfft(x)
        weights = a_weighting(np.fft.rfftfreq(x.size, 1.0 / sample_rate)) ** 2
        power = np.abs(spectrum) ** 2 * weights
        # Parseval for rfft: interior bins count twice, DC (and Nyquist for even n) once
        total = 2.0 * power.sum() - power[0] - (power[-1] if x.size % 2 == 0 else 0.0)
        out['dbfs_a'] = round(dbfs(float(total) / (x.size * x.size), floor), 3)
    return out


class AudioLoudnessNode(Plugin):
    """Level of each audio chunk: RMS and peak dBFS, optionally A-weighted (a kind=sensor reading)."""

    INPUTS = (Port('in', frozenset({Kind.AUDIO}), PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', frozenset({Kind.SENSOR}), description='audio_level readings, one per chunk'),)
    PARAMS = (
        Param('weighting', str, 'none', 'frequency weighting of dbfs_a', choices=('none', 'A')),
        Param('floor_dbfs', float, -120.0, 'level reported for silence', max=0.0),
    )

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        chunk = chunk_view(packet, self.node_id)
        fields = levels(chunk.mono(), chunk.sample_rate, self.params['weighting'], self.params['floor_dbfs'])
        fields.update(offset_ms=chunk.offset_ms, duration_ms=round(chunk.duration_ms, 3))
        self.count('chunks_total')
        return sensor_packet(packet.source_id, 'audio_level', packet.ts, fields, unit='dBFS',
                             meta={'source_packet_id': packet.packet_id})
