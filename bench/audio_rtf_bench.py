"""Audio lane real-time factor: processing time / audio time on a 10-minute clip.

    python bench/audio_rtf_bench.py [--repeat 30]           # prints one JSON object

The clip is the tests' synthesized site clip (testing/audio_clips.py: espeak-ng speech, sox noise
and tones; 20 s) repeated `--repeat` times (30 = 10 minutes), as FLAC. The lane is the tests'
graph — AudioFileSource (100 ms chunks, as fast as consumed) -> AudioResampleNode 22.05 -> 16 kHz
-> AudioLoudnessNode (A-weighted) + VoiceActivityNode -> AudioEventPolicyNode -> event builder ->
JSONL — run by the deterministic engine in this process (no DDS: the figure is the lane's own
cost). RTF < 1 means faster than real time; 0.05 means 10 minutes of audio in 30 s.

Baseline in the same run: decoding the same file in the same 100 ms blocks with soundfile and one
numpy RMS per block — the least any audio lane does.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.graph.load import load_graph_text  # noqa: E402
from schnitzel_stream_ros.graph.validate import validate  # noqa: E402
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine  # noqa: E402
from schnitzel_stream_ros.testing.audio_clips import audio_lane_graph, synthesize_site_clip  # noqa: E402


def lane_graph(audio: Path, out: Path) -> str:
    return yaml.safe_dump(audio_lane_graph(audio, out), sort_keys=False)


def baseline(audio: Path) -> tuple[float, int]:
    import numpy as np
    import soundfile

    started = time.perf_counter()
    blocks = 0
    with soundfile.SoundFile(audio) as f:
        for block in f.blocks(blocksize=f.samplerate // 10, dtype='float32'):
            float(np.sqrt(np.mean(block * block)))
            blocks += 1
    return time.perf_counter() - started, blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=30, help='20 s clips back to back (30 = 10 min)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        clip = synthesize_site_clip(tmp, repeat=args.repeat)
        base_sec, blocks = baseline(clip.flac)
        out = tmp / 'events.jsonl'
        result = validate(load_graph_text(lane_graph(clip.flac, out), 'audio_rtf.yaml').graph)
        if result.errors:
            raise SystemExit(f'graph invalid: {result.errors[0]}')
        started = time.perf_counter()
        outcome = DeterministicEngine(result.graph).run()
        lane_sec = time.perf_counter() - started
        if outcome.errors:
            raise SystemExit(f'run failed: {outcome.errors[0]}')
        events: dict[str, int] = {}
        for line in out.read_text().splitlines():
            kind = json.loads(line)['event_type']
            events[kind] = events.get(kind, 0) + 1
    print(json.dumps({
        'bench': 'audio_rtf',
        'audio_sec': clip.duration_sec,
        'chunks': blocks,
        'lane': {'seconds': round(lane_sec, 3), 'rtf': round(lane_sec / clip.duration_sec, 5),
                 'events': events},
        'baseline_decode_rms': {'seconds': round(base_sec, 3),
                                'rtf': round(base_sec / clip.duration_sec, 5)},
        'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
