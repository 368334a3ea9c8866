"""The vision lane as a graph: file camera -> detector -> tracker -> event builder -> JSONL file.

Real graph file, real validator (ports, kinds, payload profiles, parameters), real deterministic
engine, real model on the pedestrian clip. A replay with the same start_ts must produce the same
event ids (tracks and boxes are deterministic), which is what lets the backend deduplicate.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason

FRAMES = 20


def graph_file(tmp_path, clip, out):
    path = tmp_path / 'vision.yaml'
    path.write_text(textwrap.dedent(f"""\
        version: 2
        nodes:
          - id: cam1
            kind: source
            plugin: schnitzel_stream_ros.nodes.vision.video_file:OpenCvVideoFileSource
            config: {{path: "{clip}", max_frames: {FRAMES}, start_ts: "2026-01-01T08:00:00Z"}}
          - id: det
            plugin: schnitzel_stream_ros.nodes.compute.onnx_detector:OnnxDetectorNode
            config:
              __runtime__: {{inbox_max: 1, inbox_overflow: drop_oldest}}
              class_map: {{1: PERSON}}
          - id: track
            plugin: schnitzel_stream_ros.nodes.compute.iou_tracker:IouTrackerNode
          - id: events
            plugin: schnitzel_stream_ros.nodes.policy.event_builder:ProtocolV02EventBuilderNode
            config: {{site_id: S1}}
          - id: out
            kind: sink
            plugin: schnitzel_stream_ros.nodes.core.jsonl_sink:JsonlSink
            config: {{path: "{out}"}}
        edges:
          - {{from: cam1, to: det}}
          - {{from: det, to: track}}
          - {{from: track, to: events}}
          - {{from: events, to: out}}
        """))
    return path


def run(tmp_path, name):
    clip = asset(PEDESTRIAN_CLIP)
    if clip is None:
        pytest.skip(missing_reason(PEDESTRIAN_CLIP))
    folder = tmp_path / name
    folder.mkdir()
    out = folder / 'events.jsonl'
    outcome = DeterministicEngine(compile_graph(graph_file(folder, clip, out))).run()
    assert outcome.errors == []
    return [json.loads(line) for line in out.read_text().splitlines()], outcome


def test_people_become_tracked_events_with_replayable_ids(tmp_path):
    first, outcome = run(tmp_path, 'a')
    second, _ = run(tmp_path, 'b')
    assert len(first) >= FRAMES  # several people per frame
    events = [r['payload'] for r in first]
    assert {e['object_type'] for e in events} == {'PERSON'}
    assert {e['event_type'] for e in events} == {'ZONE_INTRUSION'}
    assert all(isinstance(e['track_id'], int) and e['track_id'] >= 1 for e in events)
    # the same walkers keep their ids: far fewer tracks than detections
    assert len({e['track_id'] for e in events}) < len(events) / 3
    assert [e['event_id'] for e in events] == [r['payload']['event_id'] for r in second]
    det = outcome.snapshots[-1]['nodes']['det']
    assert det['consumed'] == FRAMES and det['counters']['frames_total'] == FRAMES
