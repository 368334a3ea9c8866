"""Retry delays: exponential growth with a cap and jitter — one schedule for every retry loop.

Used by event delivery (retries of one event), by live cameras and serial ports (reconnects) and
by the runtime (restarts of a source whose produce() raised). Two jitter shapes, because the two
kinds of loop want different things:

- `full` (delivery): a uniform draw in [0, bound]. When a backend comes back after an outage,
  identical schedules make every edge box retry in lock-step and knock it over again; full jitter
  spreads the retries out while keeping upstream's upper bound (1 s / x2 / 10 s).
- `proportional` (reconnects, restarts): bound * (1 ± spread). A device loop must not retry at
  once (full jitter can draw ~0 s) but cameras of one site that lost the same server should not
  reconnect in lock-step either; upstream's 1 -> 30 s for RTSP, 0.5 -> 5 s for webcams.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

Jitter = Literal['full', 'proportional', 'none']


@dataclass
class Backoff:
    """Delay before retry number `attempt` (1 = first retry): min(cap, base * factor**(attempt-1)),
    jittered. `jitter='none'` gives upstream's deterministic 1, 2, 4, 8, 10, 10 ... schedule."""

    base_sec: float = 1.0
    factor: float = 2.0
    cap_sec: float = 10.0
    jitter: Jitter = 'full'
    spread: float = 0.2  # proportional jitter: the relative spread around the bound
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base_sec < 0 or self.cap_sec < 0:
            raise ValueError(
                f'backoff: base_sec and cap_sec must be >= 0, got {self.base_sec}, {self.cap_sec}'
            )
        if self.factor < 1:
            raise ValueError(f'backoff: factor must be >= 1, got {self.factor}')
        if self.jitter not in ('full', 'proportional', 'none'):
            raise ValueError(f"backoff: jitter must be 'full', 'proportional' or 'none', got {self.jitter!r}")
        if not 0.0 <= self.spread <= 1.0:
            raise ValueError(f'backoff: spread must be within 0..1, got {self.spread}')

    def bound(self, attempt: int) -> float:
        """The exponential bound (no jitter) for `attempt`, at most `cap_sec`."""
        exponent = max(0, attempt - 1)
        if self.factor > 1 and exponent > 64:  # past any useful cap; avoid float overflow
            return self.cap_sec
        return min(self.cap_sec, self.base_sec * self.factor**exponent)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before `attempt`."""
        upper = self.bound(attempt)
        if self.jitter == 'full':
            return self.rng.uniform(0.0, upper)
        if self.jitter == 'proportional' and self.spread > 0:
            return max(0.0, upper * self.rng.uniform(1.0 - self.spread, 1.0 + self.spread))
        return upper
