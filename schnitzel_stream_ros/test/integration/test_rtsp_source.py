"""OpenCvRtspSource against a real RTSP server (GStreamer, on 127.0.0.1) that we kill and hang.

Acceptance (issue 7): server killed -> frames again <= 5 s after it returns; server hung (SIGSTOP)
-> stall detected <= 5 s, reconnect after SIGCONT; `epoch` increments; no exception escapes the
node. The source runs on its own thread exactly as the runtime drives a source: iterate
`produce()` until the stop event. The hang test sets timeout_sec=4 (default 5) so that "detected
within 5 s" has a margin over the watchdog's own 0.1 s polling.
"""
from __future__ import annotations

import logging
import threading
import time

import pytest

from schnitzel_stream_ros.nodes.vision.rtsp import OpenCvRtspSource
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP_H264, asset, missing_reason
from schnitzel_stream_ros.testing.rtsp_server import RtspServer, unavailable_reason

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope='module')
def gstreamer():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def server(gstreamer):
    srv = RtspServer('videotestsrc', mount='cam', fps=10)
    srv.start()
    yield srv
    srv.stop()


class RunningSource:
    """A source plugin iterated on a thread, recording (arrival time, packet) and any exception."""

    def __init__(self, **config) -> None:
        self.ctx = SimpleContext('cam', resolve_params(OpenCvRtspSource, config))
        self.node = OpenCvRtspSource(self.ctx)
        self.node.setup()
        self.packets: list[tuple[float, object]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for packet in self.node.produce():
                self.packets.append((time.monotonic(), packet))
        except BaseException as exc:  # the point of the test: nothing may get here
            self.error = exc

    def wait_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return condition()

    def frames_after(self, t: float, min_epoch: int = 0) -> list:
        return [p for at, p in self.packets if at > t and p.meta['epoch'] >= min_epoch]

    def epoch(self) -> int:
        return self.packets[-1][1].meta['epoch'] if self.packets else 0

    def stop(self) -> None:
        self.ctx.stop_event.set()
        self.thread.join(10)
        self.node.close()
        assert not self.thread.is_alive(), 'the source did not stop within 10 s of the stop event'

    def check_packets(self) -> None:
        keys = [p.meta['idempotency_key'] for _, p in self.packets]
        assert len(keys) == len(set(keys)), 'frame keys repeat'
        epochs = [p.meta['epoch'] for _, p in self.packets]
        assert epochs == sorted(epochs), 'epoch went backwards'
        for _, p in self.packets:
            assert p.meta['idempotency_key'] == f"frame:cam:{p.meta['epoch']}:{p.meta['frame_idx']}"


def test_server_killed_then_frames_again_within_5_s_of_its_return(server, caplog):
    caplog.set_level(logging.INFO)
    url = server.url.replace('rtsp://', 'rtsp://viewer:s3cret@')  # credentials must never be logged
    src = RunningSource(url=url)
    try:
        assert src.wait_until(lambda: len(src.packets) >= 5, 15), 'no frames from the live server'
        assert src.epoch() == 1
        server.kill()
        assert src.wait_until(lambda: src.ctx.counters.get('read_failures_total', 0) >= 1, 10)
        time.sleep(2.0)  # the camera stays away for a while; reconnect attempts fail meanwhile
        back = time.monotonic()
        server.start()
        returned = src.wait_until(lambda: src.frames_after(back, min_epoch=2), 15)
        assert returned, 'no frames after the server returned'
        first = src.frames_after(back, min_epoch=2)[0]
        arrival = next(at for at, p in src.packets if p is first)
        assert arrival - back <= 5.0, f'frames again only {arrival - back:.1f} s after the server returned'
        assert first.meta['epoch'] == 2
        assert src.ctx.counters['reconnects_total'] == 1
        assert src.error is None and src.thread.is_alive()
    finally:
        src.stop()
    assert src.error is None
    src.check_packets()
    logged = '\n'.join(r.getMessage() for r in caplog.records)
    assert 'viewer:***@' in logged
    assert 's3cret' not in logged


def test_server_hung_stall_detected_within_5_s_then_reconnect_after_sigcont(server):
    src = RunningSource(url=server.url, timeout_sec=4.0)
    try:
        assert src.wait_until(lambda: len(src.packets) >= 5, 15), 'no frames from the live server'
        epoch_before = src.epoch()
        hung = time.monotonic()
        server.pause()
        stalled = src.wait_until(lambda: src.ctx.counters.get('stalls_total', 0) >= 1, 10)
        assert stalled, 'stall never detected'
        detected_after = time.monotonic() - hung
        assert detected_after <= 5.0, f'stall detected only {detected_after:.1f} s after SIGSTOP'
        time.sleep(1.0)
        resumed = time.monotonic()
        server.resume()
        assert src.wait_until(lambda: src.frames_after(resumed, min_epoch=epoch_before + 1), 25), \
            'no reconnect after SIGCONT'
        assert src.epoch() > epoch_before
        assert src.error is None and src.thread.is_alive()
    finally:
        src.stop()
    assert src.error is None
    src.check_packets()


def test_udp_transport_delivers_frames(server):
    src = RunningSource(url=server.url, transport='udp', max_frames=5)
    try:
        assert src.wait_until(lambda: len(src.packets) == 5, 15), 'no frames over UDP'
        assert src.packets[0][1].payload.shape == (480, 640, 3)
    finally:
        src.stop()
    assert src.error is None


def test_the_pedestrian_clip_is_served_in_a_loop(gstreamer):
    clip = asset(PEDESTRIAN_CLIP_H264)
    if clip is None:
        pytest.skip(missing_reason(PEDESTRIAN_CLIP_H264))
    with RtspServer(str(clip), mount='cam1') as srv:
        src = RunningSource(url=srv.url, max_frames=10)
        try:
            assert src.wait_until(lambda: len(src.packets) == 10, 15), 'no frames of the served clip'
        finally:
            src.stop()
    frame = src.packets[-1][1].payload
    assert frame.shape == (576, 768, 3)
    assert src.error is None
