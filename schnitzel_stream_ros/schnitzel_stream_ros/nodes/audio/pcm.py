"""The audio chunk packet (kind=audio), in one shape, and its checks.

A chunk is `duration_ms` of interleaved signed 16-bit little-endian PCM (`bytes` payload), so it
travels on ROS topics as the StreamPacket `bytes` encoding with `content_type` and crosses JSON
lanes not at all (kind audio is non-portable, like frames). Its meta says how to read it:
`sample_rate`, `channels`, `sample_format` (`s16le`), `chunk_index`, `offset_ms` (position in the
stream, like video's `pos_msec`), `duration_ms`, `content_type`. Packet ts = time of the chunk's
first sample.

Every audio node checks a chunk before touching it (`chunk_view`): it may come from another
process, so rate, channels, format and length are validated and bounded.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schnitzel_stream_ros.packet import Kind, StreamPacket

SAMPLE_FORMAT = 's16le'
MIN_RATE, MAX_RATE = 1000, 384_000
MAX_CHANNELS = 32
#: Largest chunk accepted: 10 s of 48 kHz stereo.
MAX_CHUNK_BYTES = 10 * 48_000 * 2 * 2


def content_type(sample_rate: int, channels: int) -> str:
    return f'audio/pcm;format={SAMPLE_FORMAT};rate={sample_rate};channels={channels}'


@dataclass(frozen=True)
class Chunk:
    """A checked audio chunk: samples as float32 in [-1, 1), shape (frames, channels)."""

    samples: np.ndarray
    sample_rate: int
    channels: int
    offset_ms: float

    @property
    def duration_ms(self) -> float:
        return self.samples.shape[0] * 1000.0 / self.sample_rate

    def mono(self) -> np.ndarray:
        return self.samples[:, 0] if self.channels == 1 else self.samples.mean(axis=1)


def to_pcm(samples: np.ndarray) -> bytes:
    """float samples (frames[, channels]) in [-1, 1] -> s16le bytes (clipped, rounded)."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype('<i2').tobytes()


def audio_packet(
    source_id: str, ts: str, samples: np.ndarray, sample_rate: int, chunk_index: int, offset_ms: float,
    meta: Mapping[str, Any] | None = None,
) -> StreamPacket:
    samples = samples.reshape(samples.shape[0], -1)
    channels = samples.shape[1]
    full = {
        **(meta or {}),
        'sample_rate': int(sample_rate),
        'channels': int(channels),
        'sample_format': SAMPLE_FORMAT,
        'chunk_index': int(chunk_index),
        'offset_ms': round(float(offset_ms), 3),
        'duration_ms': round(samples.shape[0] * 1000.0 / sample_rate, 3),
        'content_type': content_type(sample_rate, channels),
    }
    return StreamPacket.new(Kind.AUDIO, source_id, to_pcm(samples), full, ts=ts)


def chunk_view(packet: StreamPacket, where: str) -> Chunk:
    """The chunk of an audio packet, or ValueError naming the node, packet and field."""
    meta = packet.meta
    place = f'{where}: packet {packet.packet_id} (source_id {packet.source_id})'
    rate, channels, fmt = meta.get('sample_rate'), meta.get('channels'), meta.get('sample_format')
    if type(rate) is not int or not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(
            f'{place}: meta.sample_rate: expected an int in [{MIN_RATE}, {MAX_RATE}], got {rate!r}'
        )
    if type(channels) is not int or not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f'{place}: meta.channels: expected an int in [1, {MAX_CHANNELS}], got {channels!r}')
    if fmt != SAMPLE_FORMAT:
        raise ValueError(f'{place}: meta.sample_format: only {SAMPLE_FORMAT!r} is supported, got {fmt!r}')
    data = packet.payload
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f'{place}: payload: expected PCM bytes, got {type(data).__name__}')
    if len(data) > MAX_CHUNK_BYTES or len(data) % (2 * channels):
        raise ValueError(
            f'{place}: payload: {len(data)} bytes is not a whole number of {channels}-channel s16 frames '
            f'(or above {MAX_CHUNK_BYTES})'
        )
    pcm = np.frombuffer(data, dtype='<i2').reshape(-1, channels)
    offset = meta.get('offset_ms', 0.0)
    offset = float(offset) if isinstance(offset, int | float) and not isinstance(offset, bool) else 0.0
    return Chunk(pcm.astype(np.float32) / 32768.0, rate, channels, offset)
