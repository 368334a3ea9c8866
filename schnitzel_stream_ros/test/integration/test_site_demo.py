"""The site end to end, as `scripts/demo` runs it, only shorter: cameras (file + real RTSP), a real
serial pty sensor, the real detector, policies, the durable queue to the reference backend and the
robot topic, in two container processes on a leased localhost-only ROS domain."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.assets import asset, missing_reason
from schnitzel_stream_ros.testing.rtsp_server import unavailable_reason

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(asset('vtest_h264.mp4') is None, reason=missing_reason('vtest_h264.mp4')),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]


def test_site_runs_end_to_end_and_events_reach_the_backend(tmp_path):
    out = tmp_path / 'demo'
    cmd = processes.python_cmd('-m', 'schnitzel_stream_ros.demo.site_demo', '--duration', '30',
                               '--out', str(out))
    demo = processes.start(cmd, os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _stdout, stderr = demo.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        # SIGINT first: the demo's own finally stops the backend, camera, sensor and runner it started
        processes.stop(demo, signal.SIGINT, timeout=30)
        raise
    finally:
        processes.stop(demo)
    assert (out / 'summary.json').is_file(), stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert demo.returncode == 0, (summary, stderr[-3000:])
    assert summary['status'] == 'ok'
    assert summary['frames']['cam0'] > 100 and summary['frames']['cam1'] > 100
    assert summary['cam0_frames_with_people_ratio'] >= 0.9
    # every event the queue accepted reached the backend, each once
    assert summary['backend']['unique'] == summary['events_accepted_by_queue'] > 0
    assert summary['robot_topic_events'] == summary['events_built']
    report = json.loads((out / 'report.json').read_text())
    assert report['status'] == 'ok'
    assert (out / 'demo.png').stat().st_size > 10_000
    timeline = (out / 'timeline.jsonl').read_text().splitlines()
    assert len(timeline) >= 20
