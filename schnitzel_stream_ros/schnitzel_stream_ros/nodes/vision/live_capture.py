"""Live capture that survives its camera: reconnect with backoff, a stall watchdog, epochs.

Why a reader thread per connection: OpenCV's `VideoCapture.read()` cannot be interrupted. A hung
RTSP server (process stopped, network black hole) keeps it blocked for about three read timeouts,
and nothing short of that returns it. So each connection gets its own `CaptureSession` thread
that opens and reads; the source's own loop only waits for frames with a short timeout and
watches their age. When no frame arrived for `timeout_sec`, the session is *abandoned* — its
thread releases the capture whenever its read finally returns — and a new connection is made
right away. Nothing ever calls release() on a capture another thread is reading.

The session keeps only the newest frame (a one-slot mailbox): if the consumer is slower than the
camera, older frames are overwritten and counted, and capture never waits for the graph.

`epoch` counts successful connections (1 for the first); every reconnect increments it, so
`frame:<source_id>:<epoch>:<frame_idx>` never repeats within a run.
"""
from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from schnitzel_stream_ros.backoff import Backoff

#: A function that opens a capture and returns it (opened), or None when it could not.
Opener = Callable[[], Any]


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff between connection attempts, with proportional jitter.

    Attempt n (1-based) waits min(max, initial * 2**(n-1)) * (1 ± jitter): upstream's 1 -> 30 s for
    RTSP and 0.5 -> 5 s for webcams, with jitter 0.2 so cameras of one site that lost the same
    server do not reconnect in lock-step.
    """

    initial_sec: float = 1.0
    max_sec: float = 30.0
    jitter: float = 0.2
    max_attempts: int = 0  # consecutive failed attempts before giving up; 0 = never give up

    def delay(self, attempt: int, rng: random.Random) -> float:
        return Backoff(self.initial_sec, 2.0, self.max_sec, 'proportional', self.jitter, rng).delay(attempt)


@dataclass(frozen=True)
class CapturedFrame:
    frame: np.ndarray
    epoch: int
    wall_time: float  # time.time() when read: the frame's ts
    dropped_before: int  # frames overwritten in the mailbox since the previous one


class CaptureSession:
    """One connection: a daemon thread that opens a capture and reads frames into a 1-slot mailbox."""

    OPENING, OPEN, FAILED, ENDED = 'opening', 'open', 'failed', 'ended'

    def __init__(self, opener: Opener, name: str) -> None:
        self._opener = opener
        self._cond = threading.Condition()
        self.state = self.OPENING
        self.error = ''
        self.abandoned = False
        self.started_at = time.monotonic()
        self.opened_at: float | None = None
        self.last_frame_at: float | None = None
        self._latest: tuple[np.ndarray, float] | None = None
        self._overwritten = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> CaptureSession:
        self.thread.start()
        return self

    def _set_state(self, state: str, error: str = '') -> None:
        with self._cond:
            self.state = state
            self.error = error
            self._cond.notify_all()

    def _run(self) -> None:
        cap = None
        try:
            cap = self._opener()
            if cap is None or not cap.isOpened():
                self._set_state(self.FAILED, 'could not open')
                return
            if self.abandoned:
                return
            with self._cond:
                self.opened_at = time.monotonic()
            self._set_state(self.OPEN)
            while not self.abandoned:
                ok, frame = cap.read()
                if self.abandoned:
                    break
                if not ok or frame is None:
                    self._set_state(self.ENDED, 'read failed (stream ended or connection lost)')
                    break
                now = time.monotonic()
                with self._cond:
                    if self._latest is not None:
                        self._overwritten += 1
                    self._latest = (frame, time.time())
                    self.last_frame_at = now
                    self._cond.notify_all()
        except Exception as exc:  # a capture thread must never die with a traceback
            self._set_state(self.FAILED, f'{type(exc).__name__}: {exc}')
        finally:
            if cap is not None:
                with contextlib.suppress(Exception):  # nothing useful to do about a failed release
                    cap.release()

    def wait_open(self, timeout: float, stop: threading.Event) -> bool:
        """True once the capture is open; False when it failed, timed out, or stop was set."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.state == self.OPENING and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    self.error = f'open did not finish within {timeout:.1f} s'
                    return False
                self._cond.wait(min(left, 0.1))
            return self.state in (self.OPEN, self.ENDED) or self._latest is not None

    def take(self, timeout: float) -> tuple[np.ndarray, float, int] | None:
        """The newest unread frame (frame, wall time, frames overwritten before it), or None."""
        with self._cond:
            if self._latest is None and self.state in (self.OPENING, self.OPEN):
                self._cond.wait(timeout)
            if self._latest is None:
                return None
            frame, wall = self._latest
            self._latest = None
            dropped, self._overwritten = self._overwritten, 0
            return frame, wall, dropped

    def frame_age(self, now: float) -> float:
        """Seconds since the last frame (or since the connection was made, before the first)."""
        with self._cond:
            ref = self.last_frame_at or self.opened_at or self.started_at
        return now - ref

    def abandon(self) -> None:
        """Stop using this session; its thread releases the capture when its read returns."""
        with self._cond:
            self.abandoned = True
            self._latest = None
            self._cond.notify_all()


class LiveCapture:
    """Connect, read, watch, reconnect — forever, or until stop or `max_attempts` failures.

    Reports through callbacks so it stays independent of the plugin API: `log(level, text)` and
    `count(name, n)` / `gauge(name, value)` (the plugin's counters).
    """

    def __init__(
        self,
        opener: Opener,
        *,
        name: str,
        policy: ReconnectPolicy,
        reconnect: bool,
        open_timeout_sec: float,
        stall_timeout_sec: float,
        stop: threading.Event,
        log: Callable[[str, str], None],
        count: Callable[[str, int], None],
        gauge: Callable[[str, float], None],
        rng: random.Random | None = None,
        poll_sec: float = 0.1,
    ) -> None:
        self.opener = opener
        self.name = name  # already masked: goes into log lines
        self.policy = policy
        self.reconnect = reconnect
        self.open_timeout_sec = open_timeout_sec
        self.stall_timeout_sec = stall_timeout_sec
        self.stop = stop
        self.log = log
        self.count = count
        self.gauge = gauge
        self.rng = rng or random.Random()
        self.poll_sec = poll_sec
        self.epoch = 0
        self.session: CaptureSession | None = None
        self._abandoned: list[CaptureSession] = []

    def frames(self) -> Iterator[CapturedFrame]:
        """Frames of successive connections. Returns on stop, or after giving up."""
        failures = 0  # consecutive connection attempts that delivered no frame
        retry = 0  # waits since the last good connection: the backoff step
        self.gauge('connected', 0)  # until the first connection: a camera never reached is "not connected"
        while not self.stop.is_set():
            if retry:
                delay = self.policy.delay(retry, self.rng)
                self.log('info', f'{self.name}: reconnecting in {delay:.1f} s')
                if self.stop.wait(delay):
                    return
            delivered = False
            session = self._connect()
            if session is not None:
                for frame in self._read(session):
                    delivered = True
                    yield frame
                self._retire(session)
            if self.stop.is_set():
                return
            failures, retry = (0, 1) if delivered else (failures + 1, retry + 1)
            if not self.reconnect:
                self.log('error', f'{self.name}: no connection and reconnect is off: source ends')
                return
            if self.policy.max_attempts and failures >= self.policy.max_attempts:
                self.count('gave_up_total', 1)
                self.log('error', f'{self.name}: giving up after {failures} failed connection '
                                  f'attempts (reconnect_max_attempts={self.policy.max_attempts})')
                return

    def _connect(self) -> CaptureSession | None:
        self._reap()
        session = CaptureSession(self.opener, name=f'capture:{self.name}').start()
        self.session = session
        if not session.wait_open(self.open_timeout_sec, self.stop):
            if not self.stop.is_set():
                self.count('open_failures_total', 1)
                self.log('warning', f'{self.name}: cannot connect: {session.error or "could not open"}')
            self._retire(session)
            return None
        self.epoch += 1
        if self.epoch > 1:
            self.count('reconnects_total', 1)
        self.gauge('epoch', self.epoch)
        self.gauge('connected', 1)
        self.log('info', f'{self.name}: connected (epoch {self.epoch})')
        return session

    def _read(self, session: CaptureSession) -> Iterator[CapturedFrame]:
        last_gauge = 0.0
        while not self.stop.is_set():
            got = session.take(self.poll_sec)
            now = time.monotonic()
            if now - last_gauge >= 1.0:  # also while frames flow: a stale age would outlive a stall
                self.gauge('last_frame_age_sec', round(session.frame_age(now), 3))
                last_gauge = now
            if got is not None:
                frame, wall, dropped = got
                if dropped:
                    self.count('frames_dropped_total', dropped)
                yield CapturedFrame(frame, self.epoch, wall, dropped)
                continue
            if session.state in (CaptureSession.ENDED, CaptureSession.FAILED):
                self.count('read_failures_total', 1)
                self.log('warning', f'{self.name}: {session.error or "read failed"} (epoch {self.epoch})')
                break
            age = session.frame_age(now)
            if age > self.stall_timeout_sec:
                self.count('stalls_total', 1)
                self.log('warning', f'{self.name}: stalled: no frame for {age:.1f} s '
                                    f'(timeout_sec={self.stall_timeout_sec}); abandoning the connection')
                break
        self.gauge('connected', 0)

    def _retire(self, session: CaptureSession) -> None:
        session.abandon()
        if session.thread.is_alive():
            self._abandoned.append(session)
        if self.session is session:
            self.session = None
        self._reap()

    def _reap(self) -> None:
        self._abandoned = [s for s in self._abandoned if s.thread.is_alive()]
        self.gauge('abandoned_readers', len(self._abandoned))

    def close(self, join_timeout: float = 1.0) -> None:
        """Abandon everything; give reader threads a moment to release their captures."""
        if self.session is not None:
            self._retire(self.session)
        deadline = time.monotonic() + join_timeout
        for session in self._abandoned:
            session.thread.join(max(0.0, deadline - time.monotonic()))
        self._reap()
