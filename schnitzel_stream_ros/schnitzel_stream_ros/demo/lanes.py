"""The audio and robot lanes of the site demo (config/site_lanes.yaml), next to the cameras.

`scripts/demo` runs them with the cameras' graph: a speaker track synthesized on the spot
(testing/audio_clips.py: espeak-ng speech, sox noise and tones, looped in real time) and a
simulated robot (`sim_robot`) driving back and forth through the zone `entrance` while its battery
drains, its motors report an error for a few seconds and it gets stuck once — each of these scaled
to the run's duration so a default 90 s run shows them all. The lanes' events and the FUSED_EVENTs
of camera PERSON events with a voice go to /site/events, the backend and out/demo/lanes_events.jsonl.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.audio_clips import synthesize_site_clip

LANES_GRAPH = Path(__file__).resolve().parents[2] / 'config' / 'site_lanes.yaml'
STALE = ('lanes_queue.db', 'lanes_queue.db-wal', 'lanes_queue.db-shm', 'lanes_events.jsonl',
         'lanes_report.json')


def start_lanes(env: dict[str, str], out: Path, duration: float, started: list[subprocess.Popen]) -> None:
    """Synthesize the speaker track, start the simulated robot and the lanes' graph (into `started`)."""
    for stale in STALE:
        (out / stale).unlink(missing_ok=True)
    clip = synthesize_site_clip(out / 'audio')
    env['SITE_AUDIO'] = str(clip.flac)
    d = max(duration, 30.0)
    started.append(processes.start(processes.python_cmd(
        '-m', 'schnitzel_stream_ros.demo.sim_robot', '--path', '0,0;10,0;0,0', '--loop', '--speed', '1',
        '--rate-hz', '10', '--duration', str(d + 30),
        '--battery-start', '0.35', '--battery-drain', str(0.3 / d),
        '--diag-error-at', f'{0.4 * d}:{0.4 * d + 5}', '--stall-at', f'{0.65 * d}:{0.65 * d + 4}',
        '--wait-subscribers', '1', '--wait-topics', 'odom', '--wait-timeout', '60'),
        env, stdout=subprocess.DEVNULL))
    started.append(processes.start(processes.python_cmd(
        '-m', 'schnitzel_stream_ros', 'run', str(LANES_GRAPH), '--duration', str(duration), '--quiet',
        '--report-json', str(out / 'lanes_report.json')), env))


def summarize_lanes(out: Path) -> dict[str, Any]:
    events: dict[str, int] = {}
    archive = out / 'lanes_events.jsonl'
    if archive.is_file():
        for line in archive.read_text().splitlines():
            event_type = json.loads(line)['payload']['event_type']
            events[event_type] = events.get(event_type, 0) + 1
    report_path = out / 'lanes_report.json'
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    audio = sum(events.get(t, 0) for t in ('VOICE', 'LOUD_NOISE'))
    robot = sum(n for t, n in events.items() if t.startswith(('GEOFENCE', 'BATTERY', 'ROBOT_')))
    return {'status': report.get('status'), 'events': events, 'audio_events': audio, 'robot_events': robot,
            'fused_events': events.get('FUSED_EVENT', 0), 'report': str(report_path),
            'archive': str(archive)}
