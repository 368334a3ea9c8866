"""Fault injection of the reference backend: how it answers event POSTs right now.

Tests and the fault soak flip it through `POST /control` (or `RunningBackend.set_control` in the
same process): 5xx/4xx/429/400 answers, slow answers, answers written in two segments (headers,
then body, Nagle on: as Python's http.server does it). Validated like any other input: an unknown
field or an out-of-range status is refused with the field named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODES = ('ok', '5xx', '4xx', '429', '400', 'slow', 'two_segments')


@dataclass
class FaultControl:
    """How the backend answers event POSTs right now (tests flip it through POST /control)."""

    mode: str = 'ok'
    status: int = 503  # for modes 5xx (500..599) and 4xx (400..499, e.g. 401 for a rotated token)
    delay_ms: int = 0  # for mode slow (stored first, answered late)
    retry_after: float | None = None  # Retry-After header for 429 / 5xx
    count: int | None = None  # apply to the next N event POSTs, then back to ok; None = until changed

    @classmethod
    def parse(cls, data: Any) -> FaultControl:
        if not isinstance(data, dict):
            raise ValueError('control: expected a JSON object')
        unknown = sorted(set(data) - {'mode', 'status', 'delay_ms', 'retry_after', 'count'})
        if unknown:
            raise ValueError(f'control: unknown field {unknown[0]!r}')
        control = cls(**data)
        if control.mode not in MODES:
            raise ValueError(f'control.mode: expected one of {list(MODES)}, got {control.mode!r}')
        low = 400 if control.mode == '4xx' else 500
        if not isinstance(control.status, int) or not low <= control.status <= low + 99:
            raise ValueError(f'control.status: expected {low}..{low + 99}, got {control.status!r}')
        if not isinstance(control.delay_ms, int | float) or control.delay_ms < 0:
            raise ValueError(f'control.delay_ms: expected >= 0, got {control.delay_ms!r}')
        if control.count is not None and (not isinstance(control.count, int) or control.count < 0):
            raise ValueError(f'control.count: expected an int >= 0 or null, got {control.count!r}')
        return control

    def take(self) -> FaultControl:
        """The behaviour for one event POST; counts down `count`."""
        current = FaultControl(self.mode, self.status, self.delay_ms, self.retry_after, None)
        if self.count is not None:
            self.count -= 1
            if self.count <= 0:
                self.mode, self.count = 'ok', None
        return current
