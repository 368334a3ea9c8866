"""Retry delays: exponential growth with full jitter and a cap.

Upstream waited 1 s doubling to 10 s, the same for every event. When a backend comes back after an
outage, identical schedules make every edge box retry in lock-step and knock it over again; full
jitter (a uniform draw between 0 and the exponential bound) spreads the retries out while keeping
the same upper bound, so the defaults stay upstream's 1 s / x2 / 10 s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before retry number `attempt` (1 = first retry).

    `jitter=False` gives upstream's deterministic 1, 2, 4, 8, 10, 10 ... schedule.
    """

    base_sec: float = 1.0
    factor: float = 2.0
    cap_sec: float = 10.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base_sec < 0 or self.cap_sec < 0:
            raise ValueError(
                f'backoff: base_sec and cap_sec must be >= 0, got {self.base_sec}, {self.cap_sec}'
            )
        if self.factor < 1:
            raise ValueError(f'backoff: factor must be >= 1, got {self.factor}')

    def bound(self, attempt: int) -> float:
        """The exponential bound (no jitter) for `attempt`, at most `cap_sec`."""
        exponent = max(0, attempt - 1)
        if self.factor > 1 and exponent > 64:  # past any useful cap; avoid float overflow
            return self.cap_sec
        return min(self.cap_sec, self.base_sec * self.factor**exponent)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before `attempt`: uniform in [0, bound] with jitter, else the bound."""
        upper = self.bound(attempt)
        return self.rng.uniform(0.0, upper) if self.jitter else upper
