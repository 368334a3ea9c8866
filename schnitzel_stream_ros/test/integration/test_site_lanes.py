"""The demo's audio and robot lanes (config/site_lanes.yaml, as shipped) with a camera stand-in.

Processes on one leased localhost domain: `sim_robot` driving through the zone `entrance`, the lanes
graph run by `schnitzel-stream run` with the synthesized speaker track (testing/audio_clips.py,
paced in real time), a "camera" process publishing typed PERSON ZONE_INTRUSION Events on
/site/events every 0.5 s (what config/site.yaml's RobotEventSink publishes — the detector itself
is tested elsewhere), and a listener that decodes every Event on /site/events.
Expected within the first 20 s of audio: VOICE and LOUD_NOISE from the speaker, GEOFENCE_ENTER /
EXIT from the robot, and FUSED_EVENTs (a person and a voice within 1 s) carrying the voice reading;
never a fused event made from one of the lanes' own events.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.audio_clips import synthesize_site_clip

pytestmark = pytest.mark.integration

LANES = Path(__file__).resolve().parents[2] / 'config' / 'site_lanes.yaml'

CAMERA = textwrap.dedent("""
    import sys, time
    import rclpy
    from schnitzel_stream_msgs.msg import Event
    from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_msg
    from schnitzel_stream_ros.packet import now_ts
    rclpy.init()
    node = rclpy.create_node('camera_standin')
    pub = node.create_publisher(Event, '/site/events', 10)
    deadline = time.monotonic() + float(sys.argv[1])
    track = 0
    while time.monotonic() < deadline:
        track += 1
        event = build_event(site_id='S001', camera_id='cam0', ts=now_ts(), object_type='PERSON',
                            bbox={'x1': 100, 'y1': 200, 'x2': 160, 'y2': 420}, confidence=0.9, track_id=track)
        pub.publish(event_to_msg(event))
        time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
""")

LISTENER = textwrap.dedent("""
    import json, sys, time
    import rclpy
    from schnitzel_stream_msgs.msg import Event
    from schnitzel_stream_ros.codec.event_protocol import msg_to_event
    rclpy.init()
    node = rclpy.create_node('site_listener')
    seen = {'events': [], 'errors': []}
    def on_event(msg):
        try:
            seen['events'].append(msg_to_event(msg))
        except Exception as exc:
            seen['errors'].append(str(exc))
    node.create_subscription(Event, '/site/events', on_event, 100)
    print('ready', flush=True)
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(seen), flush=True)
""")


def test_audio_robot_and_fused_events_on_site_events(tmp_path, ros_env):
    clip = synthesize_site_clip(tmp_path / 'audio')
    env = {**ros_env, 'SITE_AUDIO': str(clip.flac), 'SITE_OUT': str(tmp_path),
           'SITE_BACKEND_URL': 'http://127.0.0.1:9/events'}  # no backend here: the queue keeps them
    (tmp_path / 'camera.py').write_text(CAMERA)
    (tmp_path / 'listener.py').write_text(LISTENER)
    listener = processes.start([sys.executable, str(tmp_path / 'listener.py'), '45'], env,
                               stdout=subprocess.PIPE, text=True)
    started = []
    try:
        assert listener.stdout.readline().strip() == 'ready'
        started.append(processes.start(
            [sys.executable, '-m', 'schnitzel_stream_ros.cli', 'run', str(LANES), '--duration', '38',
             '--quiet'],
            env, stdout=(tmp_path / 'lanes.log').open('w'), stderr=subprocess.STDOUT))
        started.append(processes.start(
            [sys.executable, '-m', 'schnitzel_stream_ros.demo.sim_robot', '--path', '0,0;10,0;0,0', '--loop',
             '--speed', '1', '--rate-hz', '10', '--duration', '40', '--wait-subscribers', '1',
             '--wait-topics', 'odom'], env, stdout=subprocess.DEVNULL))
        started.append(processes.start([sys.executable, str(tmp_path / 'camera.py'), '40'], env))
        out, _ = listener.communicate(timeout=90)
    finally:
        for proc in (*reversed(started), listener):
            processes.stop(proc)
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen['errors'] == []
    types = [e['event_type'] for e in seen['events']]
    for wanted in ('VOICE', 'LOUD_NOISE', 'GEOFENCE_ENTER', 'GEOFENCE_EXIT', 'FUSED_EVENT'):
        assert wanted in types, (wanted, sorted(set(types)), (tmp_path / 'lanes.log').read_text()[-2000:])
    fused = [e for e in seen['events'] if e['event_type'] == 'FUSED_EVENT']
    assert all(e['camera_id'] == 'cam0' and e['object_type'] == 'PERSON' for e in fused)
    assert all(e['sensor']['sensor_type'] == 'voice_activity' and e['sensor']['voice'] for e in fused)
    assert all(abs(e['fusion']['delta_ms']) <= 1000 for e in fused)
    audio = [e for e in seen['events'] if e['event_type'] in ('VOICE', 'LOUD_NOISE')]
    assert {(e['camera_id'], e['object_type']) for e in audio} == {('mic0', 'AUDIO')}
    fence = [e for e in seen['events'] if e['event_type'].startswith('GEOFENCE')]
    assert {e['zone']['zone_id'] for e in fence} == {'entrance'}
    first_enter = next(e for e in fence if e['event_type'] == 'GEOFENCE_ENTER')
    assert first_enter['sensor']['x'] == 3.0  # 30 steps of 0.1 m: the first pose on the boundary
