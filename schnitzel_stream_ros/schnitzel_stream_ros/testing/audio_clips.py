"""Test audio made on the spot: speech (espeak-ng), noise and tones (sox), mixed at known offsets.

No audio file is shipped: `synthesize_site_clip()` speaks two sentences with espeak-ng, makes pink
noise, a white-noise burst and a 1 kHz tone with sox (`-R`: repeatable noise), trims the speech's
leading silence and mixes everything into one 20 s, 22.05 kHz mono clip, written as WAV and FLAC.
The schedule (`SCHEDULE`) is what the tests expect:

    0.0 –  2.0  digital silence                      nothing
    2.0 –  ~5.5 speech 1 at −10 dB (≈ −28 dBFS RMS)   VOICE at 2.0
    6.0 –  9.0  pink noise ≈ −48 dBFS                 nothing (noise only)
    9.0 – 10.0  white noise ≈ −16 dBFS                LOUD_NOISE at 9.0, no VOICE
   11.0 – 12.0  1 kHz tone ≈ −9 dBFS                  LOUD_NOISE at 11.0, no VOICE
   12.5 – 18.0  pink noise ≈ −48 dBFS, and
   13.0 – ~16   speech 2 at −10 dB over it            VOICE at 13.0
   18.0 – 20.0  digital silence                      nothing

Debian packages: espeak-ng and sox (scripts/install-system-deps installs them).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 22050
DURATION_SEC = 20.0
SPEECH = ((2.0, 'Hello, this is a voice test. Please leave the loading area.'),
          (13.0, 'Attention. A forklift is approaching the gate.'))
SCHEDULE = {'VOICE': (2.0, 13.0), 'LOUD_NOISE': (9.0, 11.0)}
QUIET_STRETCHES = ((0.0, 2.0), (6.0, 9.0), (18.0, 20.0))  # no event may start in these


@dataclass(frozen=True)
class Clip:
    wav: Path
    flac: Path
    sample_rate: int
    duration_sec: float


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f'{tool} is not installed: run scripts/install-system-deps (Debian: {tool})')
    return path


def _read(path: Path) -> np.ndarray:
    import soundfile

    samples, rate = soundfile.read(path, dtype='float32')
    if rate != RATE:
        raise RuntimeError(f'{path}: expected {RATE} Hz, got {rate}')
    return samples


def _sox(out: Path, *effect: str) -> np.ndarray:
    subprocess.run([_need('sox'), '-R', '-n', '-r', str(RATE), '-c', '1', '-b', '16', str(out), *effect],
                   check=True, capture_output=True, timeout=60)
    return _read(out)


def _speech(out: Path, text: str) -> np.ndarray:
    subprocess.run([_need('espeak-ng'), '-w', str(out), text], check=True, capture_output=True, timeout=60)
    samples = _read(out)
    start = int(np.argmax(np.abs(samples) > 0.01))  # leading silence trimmed: the onset is exact
    return samples[start:]


def synthesize_site_clip(directory: Path, repeat: int = 1) -> Clip:
    """The 20 s clip of SCHEDULE (`repeat` times back to back, for long-clip benchmarks)."""
    directory.mkdir(parents=True, exist_ok=True)
    clip = np.zeros(int(DURATION_SEC * RATE), np.float32)

    def put(samples: np.ndarray, at_sec: float, gain: float = 1.0) -> None:
        start = round(at_sec * RATE)
        end = min(clip.size, start + samples.size)
        clip[start:end] += gain * samples[:end - start]

    pink = _sox(directory / 'pink.wav', 'synth', '6', 'pinknoise', 'vol', '0.02')
    put(pink[:3 * RATE], 6.0)
    put(pink[:int(5.5 * RATE)], 12.5)
    put(_sox(directory / 'white.wav', 'synth', '1', 'whitenoise', 'vol', '0.5'), 9.0)
    put(_sox(directory / 'tone.wav', 'synth', '1', 'sine', '1000', 'vol', '0.5'), 11.0)
    for index, (at_sec, text) in enumerate(SPEECH):
        put(_speech(directory / f'speech{index}.wav', text), at_sec, 10 ** (-10 / 20))
    clip = np.tile(np.clip(clip, -1.0, 1.0), repeat)
    import soundfile

    wav, flac = directory / 'site_clip.wav', directory / 'site_clip.flac'
    soundfile.write(wav, clip, RATE, subtype='PCM_16')
    soundfile.write(flac, clip, RATE, subtype='PCM_16')
    return Clip(wav, flac, RATE, DURATION_SEC * repeat)


def audio_lane_graph(audio: Path, out: Path, **source: object) -> dict:
    """The audio lane the tests and the real-time-factor bench run on a clip: file source (100 ms
    chunks; `source` adds or overrides its config) -> 16 kHz -> A-weighted loudness and VAD ->
    LOUD_NOISE/VOICE policy -> event builder -> JSONL of the events."""
    mic = {'path': str(audio), 'chunk_ms': 100, 'start_ts': '2026-02-14T12:00:00Z', **source}
    return {
        'version': 2,
        'nodes': [
            {'id': 'mic', 'kind': 'source', 'plugin': 'AudioFileSource', 'config': mic},
            {'id': 'resample', 'plugin': 'AudioResampleNode', 'config': {'sample_rate': 16000}},
            {'id': 'level', 'plugin': 'AudioLoudnessNode', 'config': {'weighting': 'A'}},
            {'id': 'vad', 'plugin': 'VoiceActivityNode', 'config': {}},
            {'id': 'policy', 'plugin': 'AudioEventPolicyNode', 'config': {}},
            {'id': 'events', 'plugin': 'ProtocolV02EventBuilderNode', 'config': {'site_id': 'S001'}},
            {'id': 'out', 'kind': 'sink', 'plugin': 'JsonlSink',
             'config': {'path': str(out), 'body': 'payload'}},
        ],
        'edges': [
            {'from': 'mic', 'to': 'resample'}, {'from': 'resample', 'to': 'level'},
            {'from': 'resample', 'to': 'vad'}, {'from': 'level', 'to': 'policy'},
            {'from': 'vad', 'to': 'policy'}, {'from': 'policy', 'to': 'events'},
            {'from': 'events', 'to': 'out'},
        ],
    }
