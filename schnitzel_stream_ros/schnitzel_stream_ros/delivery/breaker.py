"""Circuit breaker: stop hammering a backend that is down, probe it, resume at once when it is back.

Without it, every queued event would burn an attempt (and grow its backoff) during an outage, so
after the backend returns the backlog would sit in backoff for up to the cap. With it, events
wait untouched while the breaker is open; one probe at a time tests the backend; the first success
closes the breaker and the forwarder drains at full speed (the issue's recovery goal is <= 5 s).

States: closed (normal) -> open after `failure_threshold` consecutive failures -> half-open after
`open_sec` (one probe allowed) -> closed on probe success / open again on probe failure.
Time is monotonic: a wall-clock jump neither keeps the breaker open nor closes it early.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = 'closed'
    OPEN = 'open'
    HALF_OPEN = 'half_open'


#: Numeric form for gauges (metrics want numbers).
STATE_CODE = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}


class Permit(StrEnum):
    """What the breaker allows the caller to do now."""

    NORMAL = 'normal'  # closed: send as much as you like
    PROBE = 'probe'  # half-open: send exactly one request and report its outcome
    WAIT = 'wait'  # open (or a probe is already out): send nothing


class CircuitBreaker:
    """Thread-safe breaker shared by all forwarder workers of one backend."""

    def __init__(
        self,
        failure_threshold: int = 5,
        open_sec: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f'breaker: failure_threshold must be >= 1, got {failure_threshold}')
        if open_sec <= 0:
            raise ValueError(f'breaker: open_sec must be > 0, got {open_sec}')
        self.failure_threshold = failure_threshold
        self.open_sec = open_sec
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self.opened_total = 0
        self.probes_total = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def _set(self, new: BreakerState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
            self.opened_total += 1
        if self._on_change is not None:
            self._on_change(old, new)

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.open_sec:
            self._set(BreakerState.HALF_OPEN)

    def acquire(self) -> Permit:
        """Ask before sending. A PROBE permit must be followed by record_success/record_failure
        or release_probe (nothing was sent after all)."""
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.CLOSED:
                return Permit.NORMAL
            if self._state is BreakerState.HALF_OPEN and not self._probe_out:
                self._probe_out = True
                self.probes_total += 1
                return Permit.PROBE
            return Permit.WAIT

    def seconds_until_probe(self) -> float:
        """How long a caller holding a WAIT permit should sleep before asking again."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                return max(0.0, self.open_sec - (self._clock() - self._opened_at))
            return 0.05 if self._probe_out else 0.0

    def release_probe(self) -> None:
        """The probe permit was not used (nothing to send): let the next caller probe."""
        with self._lock:
            self._probe_out = False

    def record_success(self) -> bool:
        """The backend answered. Returns True when this closed an open/half-open breaker."""
        with self._lock:
            self._consecutive_failures = 0
            self._probe_out = False
            if self._state is not BreakerState.CLOSED:
                self._set(BreakerState.CLOSED)
                return True
            return False

    def trip(self) -> bool:
        """Open at once, whatever the count (the backend refuses our credentials or route: every
        further request would fail the same way). Returns True when this opened it."""
        with self._lock:
            self._probe_out = False
            self._consecutive_failures = 0
            if self._state is BreakerState.OPEN:
                return False
            self._set(BreakerState.OPEN)
            return True

    def record_failure(self) -> bool:
        """The backend failed (connection error, timeout, 5xx, 429). Returns True when this opened it."""
        with self._lock:
            self._probe_out = False
            if self._state is BreakerState.HALF_OPEN:
                self._set(BreakerState.OPEN)
                return True
            if self._state is BreakerState.OPEN:
                return False
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.failure_threshold:
                self._consecutive_failures = 0
                self._set(BreakerState.OPEN)
                return True
            return False
