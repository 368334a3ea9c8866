"""Live sources where they run: graphs under `schnitzel-stream run`, in a container, with rclpy's logger.

Issue 19: a camera that hung for longer than its watchdog killed its own source — logging the stall
through rclpy's logger raised ("Logger severity cannot be changed between calls"), produce() died,
and the run ended as if the camera had finished. The plugin-level tests (test_rtsp_source.py) drive
the plugin in a plain thread with Python logging and could not see it. Here every scenario runs the
real runtime: a `schnitzel-stream run` process with its container(s), the real RTSP server
(GStreamer) that we kill, hang (SIGSTOP) and resume, a serial device on a pty that we unplug and
replug, a webcam index with no device behind it, and a source whose produce() raises.

What is observed comes from outside the runtime: the JSONL a sink writes (each line a packet with
its capture `ts` and `epoch`), the run's log (its stderr), and the run report's counters.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tty
from datetime import datetime
from pathlib import Path

import pytest

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.rtsp_server import RtspServer, unavailable_reason

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Run:
    """`schnitzel-stream run GRAPH` in its own process group; its log goes to a file."""

    def __init__(self, tmp_path: Path, graph_text: str, env: dict, duration: float = 90.0) -> None:
        self.graph = tmp_path / 'graph.yaml'
        self.graph.write_text(textwrap.dedent(graph_text).replace('TMP', str(tmp_path)))
        self.report_path = tmp_path / 'report.json'
        self.log_path = tmp_path / 'run.log'
        self._log = self.log_path.open('w')
        cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(self.graph),
               '--duration', str(duration), '--report-json', str(self.report_path)]
        self.proc = processes.start(cmd, env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def finish(self) -> dict:
        """SIGINT as an operator would (Ctrl-C), then the report the run wrote."""
        if self.running:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        finally:
            processes.stop(self.proc)
            self._log.close()
        return json.loads(self.report_path.read_text())


def jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSONL file that a running sink is still appending to."""
    if not path.exists():
        return []
    *complete, _partial = path.read_text().split('\n')
    return [json.loads(line) for line in complete if line]


def wall(ts: str) -> float:
    return datetime.fromisoformat(ts.replace('Z', '+00:00')).timestamp()


def wait_for(predicate, timeout: float, what: str, run: Run | None = None):
    """Poll `predicate`; fail at once (with the run's log) if the run ended meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if run is not None and not run.running:
            raise AssertionError(f'the run ended while waiting for {what}:\n{run.log()[-3000:]}')
        time.sleep(0.1)
    tail = f':\n{run.log()[-3000:]}' if run is not None else ''
    raise AssertionError(f'timed out after {timeout} s waiting for {what}{tail}')


@pytest.fixture
def camera():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = RtspServer('videotestsrc', mount='probe', fps=10)
    server.start()
    yield server
    server.stop()


# The lane: RTSP camera -> sampler -> the bundled person detector -> JSONL.
CAMERA_LANE = """
    version: 2
    namespace: /lane19
    nodes:
      - {id: cam, plugin: OpenCvRtspSource,
         config: {url: 'URL', source_id: cam, timeout_sec: 4.0, reconnect_backoff_sec: 0.5}}
      - {id: sampler, plugin: EveryNthFrameSamplerNode, config: {every_n: 2}}
      - {id: det, plugin: OnnxDetectorNode,
         config: {intra_op_threads: 1, __runtime__: {inbox_max: 1, inbox_overflow: drop_oldest}}}
      - {id: out, kind: sink, plugin: JsonlSink, config: {path: TMP/detections.jsonl}}
    edges:
      - {from: cam, to: sampler}
      - {from: sampler, to: det}
      - {from: det, to: out}
"""


def _frames(tmp_path: Path) -> list[tuple[float, int]]:
    """(capture wall time, epoch) of every frame that went through the detector lane."""
    return [(wall(r['ts']), r['meta']['epoch']) for r in jsonl(tmp_path / 'detections.jsonl')]


def test_hung_camera_is_detected_and_frames_return_within_5_s_of_sigcont(tmp_path, ros_env, camera):
    """The issue's scenario: camera SIGSTOPped after frames flowed, for longer than timeout_sec."""
    run = Run(tmp_path, CAMERA_LANE.replace('URL', camera.url), ros_env)
    try:
        wait_for(lambda: len(_frames(tmp_path)) >= 5, 60, 'frames through the detector lane', run)
        paused_at = time.time()
        camera.pause()
        wait_for(lambda: 'stalled' in run.log(), 10, 'the stall in the log', run)
        stalled_at = time.time()
        time.sleep(max(0.0, paused_at + 10.0 - time.time()))  # hung for 10 s: > timeout_sec (4 s)
        resumed_at = time.time()
        camera.resume()
        wait_for(lambda: any(t >= resumed_at for t, _ in _frames(tmp_path)), 20, 'frames after SIGCONT', run)
        assert run.running, f'the run ended:\n{run.log()[-3000:]}'
    finally:
        report = run.finish()
    frames = _frames(tmp_path)
    # Frame ts is the wall clock when the capture *read* the frame: frames the server had sent before
    # SIGSTOP can still be read (and stamped) a little after it on a loaded machine. The watchdog
    # counts from the last frame read; after it fired, nothing may come until SIGCONT.
    before = [t for t, _ in frames if t < paused_at]
    last_read = max(t for t, _ in frames if t < stalled_at)
    during = [t for t, _ in frames if stalled_at < t < resumed_at]
    after = [t for t, _ in frames if t >= resumed_at]
    assert before, 'no frames before the pause'
    # timeout_sec 4 + the watchdog's 0.1 s poll, the sampler's every 2nd frame and our 0.1 s poll
    late = stalled_at - last_read
    assert late <= 5.0, f'stall detected {late:.1f} s after the last frame'
    assert not during, f'{len(during)} frames while the camera was stopped'
    assert after, 'no frames after SIGCONT'
    assert after[0] - resumed_at <= 5.0, f'frames again only {after[0] - resumed_at:.1f} s after SIGCONT'
    assert max(epoch for _, epoch in frames) >= 2, 'no reconnect (epoch did not increase)'
    log = run.log()
    assert 'stalled: no frame for' in log and 'connected (epoch 2)' in log, log[-3000:]
    assert 'Logger severity' not in log and 'produce() failed' not in log, log[-3000:]
    m = report['metrics']
    assert m['node.cam.stalls_total'] >= 1 and m['node.cam.reconnects_total'] >= 1
    assert report['stop_reason'] != 'sources_done', report['stop_reason']


def test_killed_camera_frames_return_within_5_s_of_its_restart(tmp_path, ros_env, camera):
    run = Run(tmp_path, CAMERA_LANE.replace('URL', camera.url), ros_env)
    try:
        wait_for(lambda: len(_frames(tmp_path)) >= 5, 60, 'frames through the detector lane', run)
        camera.kill()
        wait_for(lambda: 'read failed' in run.log() or 'stalled' in run.log(), 10, 'the loss in the log', run)
        time.sleep(2.0)  # away for a while: reconnect attempts fail meanwhile
        back_at = time.time()
        camera.start()
        wait_for(lambda: any(t >= back_at for t, _ in _frames(tmp_path)), 20, 'frames after the restart', run)
        assert run.running, f'the run ended:\n{run.log()[-3000:]}'
    finally:
        report = run.finish()
    first_back = min(t for t, _ in _frames(tmp_path) if t >= back_at)
    late = first_back - back_at
    assert late <= 5.0, f'frames again only {late:.1f} s after the camera returned'
    assert report['metrics']['node.cam.reconnects_total'] >= 1
    assert 'produce() failed' not in run.log()


def test_webcam_without_a_device_keeps_retrying_and_the_run_goes_on(tmp_path, plugin_env):
    """No V4L2 device exists on this machine (and no v4l2loopback to make one), so this covers the
    webcam's failure path through the runtime: warnings and infos from the same helper, over and
    over, without killing the source. Its frame path is LiveCameraSource's, exercised by the RTSP
    tests above."""
    index = next(i for i in range(60, 100) if not Path(f'/dev/video{i}').exists())
    run = Run(tmp_path, f"""
        version: 2
        namespace: /webcam19
        nodes:
          - {{id: webcam, plugin: OpenCvWebcamSource,
             config: {{camera_index: {index}, reconnect_backoff_sec: 0.2, reconnect_backoff_max_sec: 0.5,
                      open_timeout_sec: 0.5}}}}
          - {{id: out, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink',
             config: {{closed_marker: TMP/closed.txt}}}}
        edges:
          - {{from: webcam, to: out}}
    """, plugin_env)
    try:
        wait_for(lambda: run.log().count('cannot connect') >= 3, 30, 'three failed connection attempts', run)
        assert 'reconnecting in' in run.log()
        assert run.running, f'the run ended:\n{run.log()[-3000:]}'
    finally:
        report = run.finish()
    assert report['metrics']['node.webcam.open_failures_total'] >= 3
    assert report['stop_reason'] == 'signal SIGINT', report['stop_reason']
    assert 'Logger severity' not in run.log() and 'produce() failed' not in run.log()


class PtyDevice:
    """A serial device on a pty behind a stable symlink; closing the pty is an unplug."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.fds: tuple[int, int] | None = None
        self.lock = threading.Lock()

    def plug(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(os.ttyname(slave))
        with self.lock:
            self.fds = (master, slave)

    def unplug(self) -> None:
        with self.lock:
            fds, self.fds = self.fds, None
        self.link.unlink(missing_ok=True)
        for fd in fds or ():
            os.close(fd)

    def write(self, text: str) -> None:
        with self.lock:
            if self.fds is not None:
                os.write(self.fds[0], text.encode())


def test_serial_sensor_unplugged_and_replugged_under_run(tmp_path, ros_env):
    device = PtyDevice(tmp_path / 'ttyV0')
    device.plug()
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.wait(0.05):
            device.write(f'{n}\n')
            n += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    run = Run(tmp_path, f"""
        version: 2
        namespace: /serial19
        nodes:
          - {{id: distance, plugin: SerialLineSensorSource,
             config: {{port: {device.link}, read_timeout_sec: 0.05, reconnect_backoff_sec: 0.2,
                      reconnect_backoff_max_sec: 0.5}}}}
          - {{id: out, kind: sink, plugin: JsonlSink, config: {{path: TMP/readings.jsonl}}}}
        edges:
          - {{from: distance, to: out}}
    """, ros_env)
    readings = tmp_path / 'readings.jsonl'
    try:
        wait_for(lambda: len(jsonl(readings)) >= 5, 30, 'readings before the unplug', run)
        device.unplug()
        wait_for(lambda: 'lost' in run.log(), 10, 'the unplug in the log', run)
        time.sleep(1.0)
        replugged_at = time.time()
        device.plug()
        replugged = lambda: any(r['meta']['epoch'] >= 1 for r in jsonl(readings))  # noqa: E731
        wait_for(replugged, 15, 'readings after the replug', run)
        assert run.running, f'the run ended:\n{run.log()[-3000:]}'
    finally:
        stop.set()
        feeder.join(5)
        report = run.finish()
        device.unplug()
    after = [wall(r['ts']) for r in jsonl(readings) if r['meta']['epoch'] >= 1]
    assert after and min(after) - replugged_at <= 5.0
    m = report['metrics']
    assert m['node.distance.disconnects_total'] >= 1 and m['node.distance.reconnects_total'] >= 1
    assert 'reopened (epoch 1)' in run.log()


def test_a_source_whose_produce_raises_is_restarted_not_finished(tmp_path, plugin_env):
    run = Run(tmp_path, """
        version: 2
        namespace: /flaky19
        nodes:
          - {id: flaky, plugin: 'runtime_test_plugins:FlakySource',
             config: {rate_hz: 50.0, fail_every: 4, count: 12}}
          - {id: out, kind: sink, plugin: JsonlSink, config: {path: TMP/out.jsonl, body: payload}}
        edges:
          - {from: flaky, to: out}
    """, plugin_env, duration=60)
    try:
        run.proc.wait(45)  # the source ends by itself after 12 packets: 2 restarts on the way
    finally:
        report = run.finish()
    assert [r['seq'] for r in jsonl(tmp_path / 'out.jsonl')] == list(range(12))
    assert report['stop_reason'] == 'sources_done'
    m = report['metrics']
    assert m['node.flaky.source_restarts_total'] == 2
    assert m['node.flaky.errors_total'] == 2
    assert report['status'] == 'degraded'  # survived errors are never silent
    assert run.log().count('OSError: device hiccup') == 2
    assert 'source restarts in' in run.log()


def test_every_log_level_from_one_call_site_passes_through_the_rclpy_logger(tmp_path, plugin_env):
    run = Run(tmp_path, """
        version: 2
        namespace: /log19
        nodes:
          - {id: src, plugin: StaticSource, config: {packets: [{kind: demo, payload: a},
                                                               {kind: demo, payload: b},
                                                               {kind: demo, payload: c}]}}
          - {id: talk, plugin: 'runtime_test_plugins:LogEveryLevel'}
          - {id: out, kind: sink, plugin: JsonlSink, config: {path: TMP/out.jsonl, body: payload}}
        edges:
          - {from: src, to: talk}
          - {from: talk, to: out}
    """, plugin_env, duration=60)
    try:
        run.proc.wait(45)
    finally:
        report = run.finish()
    log = run.log()
    assert [r for r in jsonl(tmp_path / 'out.jsonl')] == ['a', 'b', 'c']
    for level in ('info', 'warning', 'error'):
        for payload in 'abc':
            assert f'talk: level {level} for packet {payload}' in log, log[-3000:]
    assert log.count('direct warning for packet') == 3
    assert '[INFO] [' in log and '[WARN] [' in log and '[ERROR] [' in log  # rclpy's logger wrote them
    assert 'Logger severity' not in log
    assert report['metrics']['node.talk.errors_total'] == 0
