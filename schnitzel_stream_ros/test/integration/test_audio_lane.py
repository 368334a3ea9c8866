"""The audio lane on a clip the test makes itself (espeak-ng speech, sox noise and tones).

testing/audio_clips.py mixes two spoken sentences, pink noise, a white-noise burst and a 1 kHz tone
at known offsets (SCHEDULE). The graph — AudioFileSource -> AudioResampleNode (16 kHz mono) ->
AudioLoudnessNode (A-weighted) + VoiceActivityNode -> AudioEventPolicyNode ->
ProtocolV02EventBuilderNode -> JsonlSink — runs through `schnitzel-stream run`, deterministic (WAV
and FLAC) and live (paced in real time, every node a composable ROS node in the container).
Expected: VOICE at 2.0 and 13.0 s, LOUD_NOISE at 9.0 and 11.0 s, each within one chunk (100 ms),
and nothing else — no event in the silences, the noise-only stretch, or VOICE on noise and tone.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from schnitzel_stream_ros.packet import parse_ts
from schnitzel_stream_ros.testing.audio_clips import (
    QUIET_STRETCHES,
    SCHEDULE,
    audio_lane_graph,
    synthesize_site_clip,
)

pytestmark = pytest.mark.integration

START = '2026-02-14T12:00:00Z'
CHUNK_SEC = 0.1


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return synthesize_site_clip(tmp_path_factory.mktemp('audio'))


def audio_graph(path, audio, out, *, realtime=False):
    graph = audio_lane_graph(audio, out, start_ts=START, source_id='mic1', realtime=realtime)
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def cli(env, *args, timeout=180):
    return subprocess.run([sys.executable, '-m', 'schnitzel_stream_ros.cli', *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def offsets(out):
    start = parse_ts(START)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    return sorted((e['event_type'], (parse_ts(e['ts']) - start).total_seconds()) for e in events), events


def check_schedule(found):
    expected = sorted((kind, at) for kind, ats in SCHEDULE.items() for at in ats)
    assert [kind for kind, _ in found] == [kind for kind, _ in expected], found
    for (kind, at), (_, want) in zip(found, expected, strict=True):
        assert abs(at - want) <= CHUNK_SEC + 1e-9, f'{kind} at {at} s, expected {want} s ± one chunk'
    for kind, at in found:
        assert not any(lo <= at < hi for lo, hi in QUIET_STRETCHES), f'{kind} at {at} s in a quiet stretch'


@pytest.mark.parametrize('fmt', ['wav', 'flac'])
def test_events_at_the_known_offsets_deterministic(clip, fmt, tmp_path, ros_env):
    out = tmp_path / 'events.jsonl'
    graph = audio_graph(tmp_path / 'audio.yaml', getattr(clip, fmt), out)
    checked = cli(ros_env, 'validate', str(graph))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = tmp_path / 'report.json'
    ran = cli(ros_env, 'run', str(graph), '--mode', 'deterministic', '--quiet', '--report-json', str(report))
    assert ran.returncode == 0, ran.stderr
    found, events = offsets(out)
    check_schedule(found)
    assert {(e['site_id'], e['camera_id'], e['object_type']) for e in events} == {('S001', 'mic1', 'AUDIO')}
    metrics = json.loads(report.read_text())['metrics']
    assert metrics['node.mic.chunks_total'] == 200  # 20 s in 100 ms chunks
    assert metrics['node.vad.voiced_chunks_total'] > 0


def test_events_at_the_known_offsets_live_paced(clip, tmp_path, ros_env):
    """The same lane in the live runtime, the file paced at the speed of sound (20 s)."""
    out = tmp_path / 'events.jsonl'
    graph = audio_graph(tmp_path / 'audio.yaml', clip.wav, out, realtime=True)
    ran = cli(ros_env, 'run', str(graph), '--quiet', '--duration', '60', timeout=120)
    assert ran.returncode == 0, ran.stderr
    check_schedule(offsets(out)[0])


def test_bad_audio_graph_is_refused_at_its_line(clip, tmp_path, ros_env):
    graph = audio_graph(tmp_path / 'audio.yaml', clip.wav, tmp_path / 'o.jsonl')
    doc = yaml.safe_load(graph.read_text())
    doc['nodes'][4]['config'] = {'rules': [{'event_type': 'VOICE', 'field': 'voice'}]}
    doc['edges'].append({'from': 'resample', 'to': 'out'})  # raw audio into a JSON file sink
    graph.write_text(yaml.safe_dump(doc, sort_keys=False))
    refused = cli(ros_env, 'validate', str(graph))
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "parameter 'rules'[0]: give above, below or equals" in text
    assert "non-portable kind 'audio'" in text
