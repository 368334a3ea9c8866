"""Live capture logic: backoff schedule, epochs, stall watchdog, giving up, no exception escapes.

The captures here are scripted stand-ins for cv2.VideoCapture (open / read / release), because the
faults under test — a read that blocks forever, an open that raises — cannot be produced on demand
with a real device in a unit test. The real RTSP faults (server killed, server SIGSTOPped) are
exercised end to end in test/integration/test_rtsp_source.py; the webcam test at the bottom uses
real OpenCV on a camera index that does not exist.
"""
from __future__ import annotations

import itertools
import random
import threading
import time

import numpy as np
import pytest

from schnitzel_stream_ros.nodes.vision.live_capture import LiveCapture, ReconnectPolicy
from schnitzel_stream_ros.nodes.vision.rtsp import OpenCvRtspSource
from schnitzel_stream_ros.nodes.vision.webcam import OpenCvWebcamSource
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


class ScriptedCapture:
    """Yields `frames` frames, then fails (`end='fail'`) or blocks until released (`end='hang'`)."""

    def __init__(self, frames: int, end: str = 'fail', interval: float = 0.0) -> None:
        self.frames, self.end, self.interval = frames, end, interval
        self.released = threading.Event()
        self.unblock = threading.Event()
        self.read_calls = 0

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return True

    def read(self):
        self.read_calls += 1
        if self.read_calls <= self.frames:
            time.sleep(self.interval)
            return True, np.full((4, 4, 3), self.read_calls, dtype=np.uint8)
        if self.end == 'hang':
            self.unblock.wait(30)  # a hung server: nothing returns
        return False, None

    def release(self) -> None:
        self.released.set()


class Harness:
    def __init__(self, opener, **kwargs):
        self.logs: list[tuple[str, str]] = []
        self.counters: dict[str, float] = {}
        self.stop = threading.Event()
        defaults = dict(name='test cam', policy=ReconnectPolicy(0.01, 0.05, 0.0), reconnect=True,
                        open_timeout_sec=2.0, stall_timeout_sec=5.0, rng=random.Random(1), poll_sec=0.02)
        defaults.update(kwargs)
        self.capture = LiveCapture(
            opener, stop=self.stop, log=lambda lvl, text: self.logs.append((lvl, text)),
            count=lambda name, n: self.counters.__setitem__(name, self.counters.get(name, 0) + n),
            gauge=lambda name, v: self.counters.__setitem__(name, v), **defaults,
        )

    def take(self, n: int, timeout: float = 10.0):
        """Up to n frames; the stop event ends the capture after `timeout` whatever happens."""
        got = []
        guard = threading.Timer(timeout, self.stop.set)
        guard.start()
        try:
            for frame in self.capture.frames():
                got.append(frame)
                if len(got) >= n:
                    break
        finally:
            guard.cancel()
        return got


def test_backoff_doubles_to_the_cap_with_bounded_jitter():
    rng = random.Random(7)
    exact = ReconnectPolicy(1.0, 30.0, 0.0)
    assert [exact.delay(n, rng) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    jittered = ReconnectPolicy(1.0, 30.0, 0.2)
    for attempt in range(1, 10):
        bound = min(30.0, 2.0 ** (attempt - 1))
        delays = [jittered.delay(attempt, rng) for _ in range(200)]
        assert all(0.8 * bound <= d <= 1.2 * bound for d in delays)
        assert max(delays) - min(delays) > 0.2 * bound  # the jitter really spreads
    assert ReconnectPolicy(0.5, 5.0, 0.0).delay(100, rng) == 5.0


def test_epoch_increments_on_every_reconnect_and_frames_continue():
    caps = [ScriptedCapture(3, interval=0.02) for _ in range(3)]
    opened = iter(caps)
    # after the third capture the opener fails (StopIteration inside the reader): give up then
    h = Harness(lambda: next(opened), policy=ReconnectPolicy(0.01, 0.05, 0.0, max_attempts=1))
    frames = h.take(100)
    epochs = [f.epoch for f in frames]
    assert epochs == sorted(epochs) and set(epochs) == {1, 2, 3}
    # the one-slot mailbox may drop a frame when this thread is slow, never more than were read
    assert len(frames) + h.counters.get('frames_dropped_total', 0) == 9
    assert h.counters['reconnects_total'] == 2
    assert h.counters['read_failures_total'] == 3
    assert h.counters['gave_up_total'] == 1
    assert all(c.released.wait(2) for c in caps)


def test_failed_opens_back_off_then_connect():
    attempts = []

    def opener():
        attempts.append(time.monotonic())
        return ScriptedCapture(100, interval=0.01) if len(attempts) >= 4 else None

    h = Harness(opener, policy=ReconnectPolicy(0.05, 1.0, 0.0))
    frames = h.take(2)
    assert [f.epoch for f in frames] == [1, 1]  # the first *successful* connection is epoch 1
    assert h.counters['open_failures_total'] == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # 0.05, 0.1, 0.2: doubling


def test_gives_up_after_max_attempts_without_raising():
    calls = []
    h = Harness(lambda: calls.append(1), policy=ReconnectPolicy(0.01, 0.02, 0.0, max_attempts=3))
    assert h.take(1) == []
    assert len(calls) == 3
    assert h.counters['gave_up_total'] == 1
    assert any(lvl == 'error' and 'giving up after 3' in text for lvl, text in h.logs)


def test_an_opener_that_raises_is_a_failed_attempt_not_a_crash():
    def opener():
        raise RuntimeError('driver exploded')

    h = Harness(opener, policy=ReconnectPolicy(0.01, 0.02, 0.0, max_attempts=2))
    assert h.take(1) == []
    assert h.counters['open_failures_total'] == 2
    assert any('driver exploded' in text for _, text in h.logs)


def test_stall_watchdog_abandons_a_blocked_read_and_reconnects():
    hung = ScriptedCapture(2, end='hang', interval=0.01)
    fresh = ScriptedCapture(100, interval=0.01)
    opened = iter([hung, fresh])
    h = Harness(lambda: next(opened), stall_timeout_sec=0.3)
    started = time.monotonic()
    frames = h.take(4)
    epochs = [f.epoch for f in frames]
    assert epochs[0] == 1 and epochs[-1] == 2 and epochs == sorted(epochs)
    assert h.counters['stalls_total'] == 1
    assert time.monotonic() - started < 5.0  # did not wait for the blocked read
    # the abandoned reader still blocks in read(); it releases its capture once the read returns
    assert not hung.released.is_set()
    hung.unblock.set()
    assert hung.released.wait(5)
    h.stop.set()
    h.capture.close()


def test_reconnect_off_ends_after_the_first_loss():
    h = Harness(lambda: ScriptedCapture(2), reconnect=False)
    frames = list(h.capture.frames())
    assert frames and len(frames) + h.counters.get('frames_dropped_total', 0) == 2  # mailbox may drop one
    assert h.counters['read_failures_total'] == 1
    assert any('reconnect is off' in text for _, text in h.logs)


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted():
    cap = ScriptedCapture(50, end='hang', interval=0.005)
    h = Harness(lambda: cap, stall_timeout_sec=1.0)
    frames = h.capture.frames()
    first = next(frames)
    time.sleep(0.4)  # the camera keeps reading meanwhile
    second = next(frames)
    assert int(second.frame[0, 0, 0]) - int(first.frame[0, 0, 0]) > 1
    assert second.dropped_before > 0
    assert h.counters['frames_dropped_total'] == second.dropped_before
    h.stop.set()
    cap.unblock.set()
    h.capture.close()


def test_rtsp_parameters_are_checked_and_credentials_masked():
    params = resolve_params(OpenCvRtspSource, {'url': 'rtsp://admin:hunter2@10.0.0.9/stream'})
    node = OpenCvRtspSource(SimpleContext('cam', params))
    node.setup()
    assert node.camera_name() == 'rtsp rtsp://admin:***@10.0.0.9/stream'
    assert node.read_timeout_sec == 10.0  # 2 x timeout_sec
    bad = resolve_params(OpenCvRtspSource, {'url': 'rtsp://h/s', 'timeout_sec': 5.0, 'read_timeout_sec': 2.0})
    with pytest.raises(ValueError, match=r"parameter 'read_timeout_sec' \(2.0\) must be above 'timeout_sec'"):
        OpenCvRtspSource(SimpleContext('cam', bad)).setup()
    with pytest.raises(ValueError, match=r"parameter 'url': not a URL"):
        OpenCvRtspSource(SimpleContext('cam', resolve_params(OpenCvRtspSource, {'url': 'camera1'}))).setup()
    inverted = resolve_params(OpenCvRtspSource, {'url': 'rtsp://h/s', 'reconnect_backoff_sec': 5.0,
                                                 'reconnect_backoff_max_sec': 1.0})
    with pytest.raises(ValueError, match=r"'reconnect_backoff_max_sec' \(1.0\) is below"):
        OpenCvRtspSource(SimpleContext('cam', inverted)).setup()


def test_webcam_that_does_not_exist_retries_then_gives_up_quietly():
    """Real OpenCV: /dev/video63 does not exist on this machine, so every open fails."""
    params = resolve_params(OpenCvWebcamSource, {
        'camera_index': 63, 'reconnect_backoff_sec': 0.01, 'reconnect_backoff_max_sec': 0.02,
        'reconnect_max_attempts': 3,
    })
    ctx = SimpleContext('webcam', params)
    node = OpenCvWebcamSource(ctx)
    node.setup()
    assert list(node.produce()) == []
    node.close()
    assert ctx.counters['open_failures_total'] == 3
    assert ctx.counters['gave_up_total'] == 1
    assert OpenCvWebcamSource.param_schema()['reconnect_backoff_sec'].default == 0.5
    assert OpenCvWebcamSource.param_schema()['reconnect_backoff_max_sec'].default == 5.0


def test_camera_log_lines_of_several_severities_through_an_rclpy_logger():
    # the live runtime hands plugins an rclpy logger, which refuses a second severity from one source
    # line: "connected" (info) then "stalled" (warning) once ended the camera source with ValueError
    from rclpy.logging import get_logger

    ctx = SimpleContext('cam', resolve_params(OpenCvRtspSource, {'url': 'rtsp://127.0.0.1:9/x'}),
                        logger=get_logger('test_camera_log_severities'))
    source = OpenCvRtspSource(ctx)
    source.setup()
    for level in ('info', 'warning', 'error', 'info', 'warning'):
        source._log(level, f'a {level} line')
