"""The clock of the backpressure-fairness plugins: the machine's, or a virtual one for exact comparisons.

Upstream's harm metric has a latency part (each group's p95 of emission -> sink latency), and on the
machine's clock that part carries every timer overshoot and every microsecond of the runner's own
overhead: upstream's runner on the same seeds does not repeat its own harm to 0.1 %. On the virtual
clock time moves only when a plugin sleeps (the scorer's seeded delays, the source's outage and
pauses), by exactly what it asked for, so a run's latencies are a function of the seeds and the order
of work alone — the same numbers for any runner that orders work as upstream's does.
bench/backpressure_fairness.py runs both the deterministic placement and upstream's own runner on it.

The plugins read the clock through `now_ns()`, `sleep()` and `wait()`; `use()` swaps it for a block
of code in this process (one run at a time: the deterministic placement is single-threaded).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class MachineClock:
    """CLOCK_MONOTONIC, shared by every process of the machine (live placements measure across them)."""

    virtual = False

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Sleep `seconds` unless `stop` is set first; True when stopped."""
        return stop.wait(seconds)


class VirtualClock:
    """Starts at 1 s (a zero emission time means "none" to the sink); moves only by sleep() and wait().

    It has `monotonic_ns` and `sleep`, the two calls upstream's plugins make of the `time` module, so
    it can stand in for that module in upstream's code too (the bench does that)."""

    virtual = True

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now = start_ns

    def monotonic_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.now += round(seconds * 1e9)

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        if stop.is_set():
            return True
        self.sleep(seconds)
        return False


_clock: MachineClock | VirtualClock = MachineClock()


def now_ns() -> int:
    return _clock.monotonic_ns()


def sleep(seconds: float) -> None:
    _clock.sleep(seconds)


def wait(stop: threading.Event, seconds: float) -> bool:
    return _clock.wait(stop, seconds)


@contextmanager
def use(clock: MachineClock | VirtualClock) -> Iterator[MachineClock | VirtualClock]:
    """The experiment plugins of this process read `clock` inside the block."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous
