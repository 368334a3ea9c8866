"""Record and replay over real DDS: `schnitzel-stream record` next to a running graph, then replays.

Regression test of the detector lane: 30 s of a camera lane (the pedestrian clip at its own 10 fps,
the video source with a fixed start_ts) runs live through the ONNX person detector, tracker and
event builder with lossless (blocking) edges, while a separate recorder process records the camera
topic. The run's start gate waits for the recorder (`--await-subscribers`), so the recording holds
every frame from the first. Then the recording is replayed twice at maximum speed through the same
lane: both replays must produce the live run's event ids, the same non-empty list three times. The
recorded frames must be the live frames (same source_id, frame_idx, ts, keys, pixels), checked
against the video source plugin decoding the same file, and rosbags (an independent reader) must
decode every recorded message as a StreamPacket.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from schnitzel_stream_ros.nodes.vision.video_file import OpenCvVideoFileSource
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.recording.mcap_reader import McapRecordingReader
from schnitzel_stream_ros.recording.replay_packets import PacketRebuilder
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason

pytestmark = pytest.mark.integration

CAMERA_TOPIC = '/lane/cam/out'
PACKET_TYPE = 'schnitzel_stream_msgs/msg/StreamPacket'
FRAMES = 300  # 30 s of the 10 fps clip
START_TS = '2026-03-01T08:00:00Z'


def _cli(*args: object) -> list[str]:
    return [sys.executable, '-m', 'schnitzel_stream_ros', *map(str, args)]


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _start_recorder(tmp_path: Path, env: dict, *args: object) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / 'record.log'
    proc = processes.start(_cli('record', *args), env, stdout=subprocess.DEVNULL, stderr=log.open('w'))
    deadline = time.monotonic() + 20
    while 'recording' not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f'recorder not ready: {log.read_text()}'
        time.sleep(0.05)
    return proc, log


def _stop_recorder(proc: subprocess.Popen, log: Path, sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0, log.read_text()


@pytest.mark.skipif(asset(PEDESTRIAN_CLIP) is None, reason=missing_reason(PEDESTRIAN_CLIP))
@pytest.mark.timeout(240)
def test_recorded_camera_lane_replays_to_identical_event_ids(tmp_path, ros_env):
    clip = asset(PEDESTRIAN_CLIP)
    lane = """
          - {id: det, plugin: OnnxDetectorNode, config: {intra_op_threads: 2}}
          - {id: trk, plugin: IouTrackerNode}
          - {id: events, plugin: ProtocolV02EventBuilderNode, config: {site_id: S001, camera_id: cam0}}
          - {id: archive, plugin: JsonlSink, config: {path: '${oc.env:EVENTS_OUT}', body: payload}}
        edges:
          - {from: cam, to: det, inbox: {max: 8, overflow: block}}
          - {from: det, to: trk, inbox: {max: 64, overflow: block}}
          - {from: trk, to: events, inbox: {max: 64, overflow: block}}
          - {from: events, to: archive, inbox: {max: 64, overflow: block}}
    """
    live = _write(tmp_path / 'live.yaml', f"""
        version: 2
        namespace: /lane
        nodes:
          - id: cam
            plugin: OpenCvVideoFileSource
            config: {{path: '{clip}', source_id: cam0, realtime: true, max_frames: {FRAMES},
                      start_ts: '{START_TS}'}}
    """ + lane)
    recording = tmp_path / 'lane.mcap'
    recorder, log = _start_recorder(tmp_path, ros_env, f'{CAMERA_TOPIC}:{PACKET_TYPE}', '-o', recording,
                                    '--stats-json', tmp_path / 'record.json')
    live_events = tmp_path / 'events_live.jsonl'
    try:
        # the start gate holds the camera until the recorder's subscription is matched: frame 0 recorded
        run = subprocess.run(_cli('run', live, '--quiet', '--report-json', tmp_path / 'live.json',
                                  '--await-subscribers', CAMERA_TOPIC),
                             env={**ros_env, 'EVENTS_OUT': str(live_events)}, capture_output=True, text=True,
                             timeout=150)
        assert run.returncode == 0, run.stderr[-3000:]
        live_report = json.loads((tmp_path / 'live.json').read_text())
        assert not live_report['warnings'], live_report['warnings']  # the gate saw the recorder in time
        time.sleep(1.0)  # the last frames are in flight to the recorder
        _stop_recorder(recorder, log)
    finally:
        processes.stop(recorder)
    stats = json.loads((tmp_path / 'record.json').read_text())
    assert stats['stop_reason'] == 'signal SIGTERM' and stats['error'] is None
    assert (stats['dropped_queue_full'], stats['lost_in_transport']) == (0, 0)

    # the file is complete (summary written on SIGTERM) and ros2-profile
    with open(recording, 'rb') as stream:
        reader = make_reader(stream)
        assert reader.get_header().profile == 'ros2'
        assert reader.get_summary().statistics.message_count == stats['written']

    # an independent reader decodes every message with the schema stored in the file
    frame_ids = []
    with AnyReader([recording], default_typestore=get_typestore(Stores.EMPTY)) as bag:
        for connection, _t, raw in bag.messages():
            msg = bag.deserialize(raw, connection.msgtype)
            assert (connection.topic, connection.msgtype, msg.kind, msg.payload_encoding) == (
                CAMERA_TOPIC, PACKET_TYPE, 'frame', 'image')
            frame_ids.append(json.loads(msg.meta_json)['frame_idx'])
    # the recorder was there before the first frame and lost nothing: every frame, in order
    assert len(frame_ids) == stats['written'] == FRAMES
    assert frame_ids == list(range(FRAMES))

    # the recorded packets are the live ones: the video source decoding the same file gives them
    expected_ctx = SimpleContext(node_id='cam', params=resolve_params(OpenCvVideoFileSource, {
        'path': str(clip), 'source_id': 'cam0', 'max_frames': FRAMES, 'start_ts': START_TS}))
    source = OpenCvVideoFileSource(expected_ctx)
    source.setup()
    try:
        expected = {p.meta['frame_idx']: p for p in source.produce()}
    finally:
        source.close()
    rebuilder = PacketRebuilder()
    for recorded in McapRecordingReader(recording).messages():
        packet = rebuilder.packet(recorded)
        want = expected[packet.meta['frame_idx']]
        assert (packet.ts, packet.kind, packet.source_id, dict(packet.meta)) == (
            want.ts, want.kind, want.source_id, dict(want.meta))
        assert np.array_equal(packet.payload, want.payload)

    # replay twice through detector + tracker + events, lossless edges, as fast as the lane goes
    replay = _write(tmp_path / 'replay.yaml', f"""
        version: 2
        namespace: /replay
        nodes:
          - id: cam
            plugin: McapReplaySource
            config:
              path: ${{oc.env:SCHNITZEL_STREAM_REPLAY_FILE}}
              rate: ${{oc.env:SCHNITZEL_STREAM_REPLAY_RATE,recorded}}
              topics: ['{CAMERA_TOPIC}']
    """ + lane)
    runs = []
    for attempt in (1, 2):
        events_out = tmp_path / f'events{attempt}.jsonl'
        report = tmp_path / f'replay{attempt}.json'
        done = subprocess.run(
            _cli('replay', recording, '--graph', replay, '--rate', 'max', '--quiet', '--report-json', report),
            env={**ros_env, 'EVENTS_OUT': str(events_out)}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = json.loads(report.read_text())['metrics']
        assert metrics['node.cam.messages_total'] == len(frame_ids)
        assert metrics['node.det.consumed'] == len(frame_ids) and metrics['packets.dropped_total'] == 0
        runs.append([json.loads(line) for line in events_out.read_text().splitlines()])
    first, second = runs
    live_run = [json.loads(line) for line in live_events.read_text().splitlines()]
    assert len(live_run) > 50  # people walk through the whole clip
    assert [e['event_id'] for e in first] == [e['event_id'] for e in second] == [
        e['event_id'] for e in live_run]
    recorded_ts = {p.ts for p in expected.values() if p.meta['frame_idx'] >= frame_ids[0]}
    assert {e['ts'] for e in first} <= recorded_ts  # every event belongs to a recorded frame


SYNTHETIC = """
    version: 2
    namespace: /rt
    nodes:
      - {id: src, plugin: SyntheticSource, config: {rate_hz: 200.0, count: 0, payload_bytes: 1000}}
"""


def test_record_rotates_keeps_max_files_and_resolves_types_from_the_graph(tmp_path, ros_env):
    graph = _write(tmp_path / 'synthetic.yaml', SYNTHETIC)
    # untyped topic: the recorder waits for its publisher and takes the type from the ROS graph
    options = ('--split', '--max-bytes', 50_000, '--max-files', 3, '--stats-json', tmp_path / 's.json')
    recorder, log = _start_recorder(tmp_path, ros_env, '/rt/src/out', '-o', tmp_path / 'part.mcap', *options)
    try:
        run = subprocess.run(_cli('run', graph, '--quiet', '--duration', 8), env=ros_env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-3000:]
        _stop_recorder(recorder, log, signal.SIGINT)
    finally:
        processes.stop(recorder)
    stats = json.loads((tmp_path / 's.json').read_text())
    files = [Path(f) for f in stats['files']]
    assert len(files) == 3 and stats['deleted_files'] >= 1
    assert sorted(tmp_path.glob('part_*.mcap')) == files  # the oldest were deleted, the newest kept
    seqs = []
    for path in files:
        with open(path, 'rb') as stream:
            reader = make_reader(stream)
            assert reader.get_summary() is not None  # every rotated file was finished
        rebuilder = PacketRebuilder()
        for recorded in McapRecordingReader(path).messages():
            assert recorded.type_name == PACKET_TYPE
            seqs.append(rebuilder.packet(recorded).payload['seq'])
        assert path.stat().st_size < 50_000 + 20_000  # message bytes bounded; summary on top
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing lost across rotations


def test_a_killed_recorder_leaves_a_readable_file(tmp_path, ros_env):
    graph = _write(tmp_path / 'synthetic.yaml', SYNTHETIC)
    path = tmp_path / 'killed.mcap'
    recorder, _log = _start_recorder(tmp_path, ros_env, f'/rt/src/out:{PACKET_TYPE}', '-o', path)
    try:
        with processes.running(_cli('run', graph, '--quiet', '--duration', 40), ros_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            # wait until flushed chunks hold messages (DDS discovery takes 1-3 s here), then one
            # more flush period, so the kill finds complete chunks on disk and one in progress
            deadline = time.monotonic() + 30
            while not path.exists() or path.stat().st_size < 100_000:
                assert time.monotonic() < deadline, 'the recorder wrote nothing to disk'
                time.sleep(0.1)
            time.sleep(1.5)
            recorder.kill()  # SIGKILL: no summary, a chunk in progress is lost
            recorder.wait(timeout=10)
    finally:
        processes.stop(recorder)
    reader = McapRecordingReader(path)
    rebuilder = PacketRebuilder()
    seqs = [rebuilder.packet(m).payload['seq'] for m in reader.messages()]
    assert reader.stats.truncated
    assert len(seqs) >= 90 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_record_stops_itself_at_max_bytes_with_a_complete_file(tmp_path, ros_env):
    graph = _write(tmp_path / 'synthetic.yaml', SYNTHETIC)
    path = tmp_path / 'bounded.mcap'
    recorder, log = _start_recorder(tmp_path, ros_env, f'/rt/src/out:{PACKET_TYPE}', '-o', path,
                                    '--max-bytes', 30_000, '--stats-json', tmp_path / 's.json')
    try:
        with processes.running(_cli('run', graph, '--quiet', '--duration', 40), ros_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            assert recorder.wait(timeout=30) == 0, log.read_text()  # no signal: the file was full
    finally:
        processes.stop(recorder)
    stats = json.loads((tmp_path / 's.json').read_text())
    assert stats['stop_reason'] == 'max_bytes' and stats['dropped_file_full'] >= 1
    with open(path, 'rb') as stream:
        summary = make_reader(stream).get_summary()
    assert summary.statistics.message_count == stats['written'] > 0
    assert stats['written'] * 1000 < 30_000  # message bytes bounded (1 KB payloads + envelope)


@pytest.mark.parametrize(('topic', 'expected'), [
    ('/nobody/publishes', 'topic /nobody/publishes: no publisher after 0.5 s'),
    ('/x:foo_msgs/msg/Bar', "topic /x: message package 'foo_msgs' is not installed"),
    ('relative/name', "topic 'relative/name': expected an absolute name"),
])
def test_record_refuses_bad_topics_in_one_line(tmp_path, ros_env, topic, expected):
    done = subprocess.run(_cli('record', topic, '-o', tmp_path / 'x.mcap', '--discovery-timeout', 0.5),
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f'schnitzel-stream record: {expected}'), done.stderr
