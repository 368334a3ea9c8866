"""The site demo: config/site.yaml end to end on this machine, for a bounded time.

What a site operator would run, with the outside world made local: the pedestrian clip as camera
cam0, the same clip served by a GStreamer RTSP server as camera cam1, a distance sensor on a real
pty, and the reference backend on 127.0.0.1. The graph runs through the embedded runner (the same
container code `ros2 launch schnitzel_stream_ros site.launch.py` starts) on a leased,
localhost-only ROS domain. While it runs, one progress line: fps per camera, detections, events,
queue depth, backend acks. At the end: a JSON summary, the run report and a PNG plot of fps and
latency over time, all in the output folder; every process started here is stopped.

    python -m schnitzel_stream_ros.demo.site_demo [--duration 90] [--out out/demo] [--control-port 8765]

While it runs, the operator page (control/) is at http://127.0.0.1:8765/ (printed at the start).

Exit 0 only when the run report says ok, events reached the backend, and people were detected in
at least 90 % of the frames of cam0 the detector processed (the clip has people in every frame).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.demo.lanes import start_lanes, summarize_lanes
from schnitzel_stream_ros.demo.plot import plot_timeline
from schnitzel_stream_ros.observability.timeline import last_complete_line
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

REQUIRED_DETECTION_RATIO = 0.9


#: The operator page of the demo: http://127.0.0.1:8765/ (control/, docs/control.md)
DEFAULT_CONTROL_PORT = 8765


def _repo() -> Path:
    return Path(os.environ.get('SCHNITZEL_STREAM_REPO') or Path(__file__).resolve().parents[3])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    """The default page port may be taken (another demo, a test running one): then any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def _get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return json.load(response)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f'site demo: {what} did not come up within {timeout:.0f} s')


def _node(sample: dict[str, Any] | None, node_id: str) -> dict[str, Any]:
    return (sample or {}).get('nodes', {}).get(node_id, {})


def progress_text(sample: dict[str, Any] | None, backend: dict[str, Any] | None, elapsed: float) -> str:
    fps = ' '.join(f'{cam} {_node(sample, cam).get("rate", 0.0):4.1f} fps' for cam in ('cam0', 'cam1'))
    detections = sum(_node(sample, d).get('counters', {}).get('detected_total', 0) for d in ('det0', 'det1'))
    events = _node(sample, 'fusion').get('produced', 0)
    queue = _node(sample, 'backend').get('counters', {}).get('queue_depth', 0)
    acks = (backend or {}).get('unique', 0)
    return (f'[demo {elapsed:5.1f}s] {fps} | detections {detections} | events {events} '
            f'| queue {int(queue)} | backend acks {acks}')


def summarize(report: dict[str, Any], backend: dict[str, Any], out: Path) -> dict[str, Any]:
    metrics = report.get('metrics', {})
    frames = metrics.get('node.det0.frames_total', 0)
    with_people = metrics.get('node.det0.frames_with_detections_total', 0)
    ratio = with_people / frames if frames else 0.0
    return {
        'status': report.get('status'),
        'stop_reason': report.get('stop_reason'),
        'duration_sec': report.get('duration_sec'),
        'frames': {cam: metrics.get(f'node.{cam}.produced', 0) for cam in ('cam0', 'cam1')},
        'detector_frames': {d: metrics.get(f'node.{d}.frames_total', 0) for d in ('det0', 'det1')},
        'cam0_frames_with_people_ratio': round(ratio, 4),
        'events_built': metrics.get('node.fusion.produced', 0),
        'events_accepted_by_queue': metrics.get('node.backend.accepted_total', 0),
        'backend': {k: backend.get(k) for k in ('unique', 'duplicates', 'total_posts')},
        'robot_topic_events': metrics.get('node.robot.consumed', 0),
        'report': str(out / 'report.json'),
        'plot': str(out / 'demo.png'),
    }


def site_graph(repo: Path | None = None) -> Path:
    """config/site.yaml of this checkout."""
    return (repo or _repo()) / 'schnitzel_stream_ros' / 'config' / 'site.yaml'


@contextlib.contextmanager
def local_site(out: Path, env: dict[str, str], video: Path,
               clip: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """The site's outside world on this machine, for as long as the block runs.

    The reference backend (its database in `out`), camera cam1 as an RTSP server playing `clip`,
    the distance sensor on a pty; `env` (a localhost DDS environment) gets the SITE_* variables
    config/site.yaml reads, with `video` as camera cam0 and `out` as SITE_OUT. Yields the backend's
    address and the started processes: a caller adds its own, all are stopped, last first.
    """
    from schnitzel_stream_ros.testing.rtsp_server import RtspServer

    started: list[subprocess.Popen] = []
    rtsp = RtspServer(str(clip), mount='cam1', port=0)
    backend_port = _free_port()
    backend_url = f'http://127.0.0.1:{backend_port}'
    try:
        started.append(processes.start(
            processes.python_cmd('-m', 'schnitzel_stream_ros.delivery.backend', '--host', '127.0.0.1',
                                 '--port', str(backend_port), '--db', str(out / 'backend.db')),
            env, stdout=subprocess.DEVNULL))
        _wait_for(lambda: _get_json(f'{backend_url}/stats') is not None, 20, 'the reference backend')
        rtsp_url = rtsp.start()
        serial_link = out / 'distance.tty'
        started.append(processes.start(
            processes.python_cmd('-m', 'schnitzel_stream_ros.testing.serial_sensor_sim',
                                 '--link', str(serial_link), '--rate-hz', '10'), env))
        _wait_for(serial_link.exists, 10, 'the serial distance sensor')
        env.update({
            'SITE_VIDEO': str(video), 'SITE_RTSP_URL': rtsp_url, 'SITE_SERIAL_PORT': str(serial_link),
            'SITE_BACKEND_URL': f'{backend_url}/events', 'SITE_OUT': str(out),
        })
        yield backend_url, started
    finally:
        for proc in reversed(started):
            processes.stop(proc)
        rtsp.stop()


def run_demo(duration: float, out: Path, lanes: bool = False,
             control_port: int | None = DEFAULT_CONTROL_PORT) -> int:
    repo = _repo()
    assets = repo / 'assets'
    video, clip = assets / 'vtest.avi', assets / 'vtest_h264.mp4'
    if not (video.is_file() and clip.is_file()):
        print('site demo: test media missing: run scripts/install-system-deps (it fetches them)',
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for stale in ('queue.db', 'queue.db-wal', 'queue.db-shm', 'backend.db', 'events.jsonl', 'timeline.jsonl'):
        (out / stale).unlink(missing_ok=True)
    with lease_domain() as lease:
        env = localhost_env(lease.domain_id)
        with local_site(out, env, video, clip) as (backend_url, started):
            print(f'site demo: ROS_DOMAIN_ID={lease.domain_id} (localhost only), camera cam1 '
                  f'{env["SITE_RTSP_URL"]}, backend {backend_url}, output {out}', file=sys.stderr)
            if lanes:  # the audio and robot lanes beside the cameras (config/site_lanes.yaml)
                start_lanes(env, out, duration, started)
            control: list[str] = []
            if control_port is not None:  # the operator page and API (control/), on loopback only
                port = control_port if control_port and _port_free(control_port) else _free_port()
                control = ['--control', f'127.0.0.1:{port}', '--control-dir', str(out / 'control')]
                print(f'site demo: operator page http://127.0.0.1:{port}/ (token for actions in '
                      f'{out / "control" / "token"})', file=sys.stderr, flush=True)
            runner = processes.start(
                processes.python_cmd('-m', 'schnitzel_stream_ros', 'run', str(site_graph(repo)),
                                     '--duration', str(duration), '--quiet',
                                     '--report-json', str(out / 'report.json'),
                                     '--timeline', str(out / 'timeline.jsonl'), *control), env)
            started.append(runner)
            t0 = time.monotonic()
            backend: dict[str, Any] = {}
            while runner.poll() is None:
                time.sleep(2.0)
                with contextlib.suppress(OSError):
                    backend = _get_json(f'{backend_url}/stats')
                sample = last_complete_line(out / 'timeline.jsonl')
                line = progress_text(sample, backend, time.monotonic() - t0)
                print(line, file=sys.stderr, flush=True)
            time.sleep(1.0)  # the last forwarder posts land
            backend = _get_json(f'{backend_url}/stats')
    report = json.loads((out / 'report.json').read_text())
    plot_timeline(out / 'timeline.jsonl', out / 'demo.png')
    summary = summarize(report, backend, out)
    if lanes:
        summary['lanes'] = summarize_lanes(out)
    (out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    print(json.dumps(summary, indent=2))
    good = (
        summary['status'] == 'ok'
        and (summary['backend']['unique'] or 0) > 0
        and summary['cam0_frames_with_people_ratio'] >= REQUIRED_DETECTION_RATIO
        and (not lanes or (summary['lanes']['status'] == 'ok' and summary['lanes']['audio_events'] > 0
                           and summary['lanes']['robot_events'] > 0))
    )
    return 0 if good else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='site_demo', description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=float, default=90.0, help='seconds the site runs (default 90)')
    parser.add_argument('--out', type=Path, default=_repo() / 'out' / 'demo', help='output folder')
    parser.add_argument('--lanes', action=argparse.BooleanOptionalAction, default=False,
                        help='also run the audio and robot lanes (config/site_lanes.yaml; scripts/demo: on)')
    parser.add_argument('--control-port', type=int, default=DEFAULT_CONTROL_PORT,
                        help='operator page + API on 127.0.0.1:PORT (default %(default)s; 0: a free port)')
    parser.add_argument('--no-control', action='store_true', help='no operator page / API')
    args = parser.parse_args(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # DDS discovery never leaves this machine
    control_port = None if args.no_control else args.control_port
    return run_demo(args.duration, args.out.resolve(), args.lanes, control_port)


if __name__ == '__main__':
    sys.exit(main())
