"""Events per second from a growing counter, over a short sliding window.

Metrics snapshots are taken at irregular times (a run report, a diagnostics tick, a test); a rate
computed from the two latest samples would swing wildly, one since the start would hide an
outage. A window of the last ~10 s of samples is what an operator means by "the rate now".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateMeter:
    def __init__(self, window_sec: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_sec = window_sec
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def observe(self, total: int) -> None:
        """Record the counter's current value."""
        now = self._clock()
        with self._lock:
            if self._samples and now - self._samples[-1][0] < 0.05:
                self._samples[-1] = (self._samples[-1][0], total)  # keep the deque short under load
            else:
                self._samples.append((now, total))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_sec:
                self._samples.popleft()

    def rate(self) -> float:
        """Per second over the window (0.0 until two samples exist)."""
        with self._lock:
            if len(self._samples) < 2:
                return 0.0
            (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0
