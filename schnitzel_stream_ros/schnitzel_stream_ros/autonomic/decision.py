"""One decision of the controller, applied or rejected, as the record the decision log keeps.

Every record says why: the rule (or `operator`, `safe_mode`, `mode`), the metric values it saw,
the knob's old and new value, and the guardrail that limited or refused it. The same dict goes to
the JSONL log, the `~/decisions` topic and the run report (docs/autonomic.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Guardrails, as they appear in `guardrail` (None: nothing limited the decision).
BOUNDS = 'bounds'
STEP = 'step'
COOLDOWN = 'cooldown'
HYSTERESIS = 'hysteresis'
ROLLBACK = 'rollback'
SAFE_MODE = 'safe_mode'
PINNED = 'pinned'
MODE_HOLD = 'mode'
UNKNOWN_VALUE = 'unknown_value'
NO_CHANGE = 'no_change'
ROLLED_BACK = 'rolled_back'
ACTUATION_FAILED = 'actuation_failed'


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf/nan
    return value


@dataclass
class Decision:
    """What the controller decided at `t` (seconds of its clock) and why."""

    t: float
    rule: str
    action: str  # 'set' | 'reject' | 'enter' | 'leave' | 'pin' | 'unpin' | 'failed'
    knob: str | None = None
    mode: str | None = None
    old: Any = None
    new: Any = None
    guardrail: str | None = None
    reason: str = ''
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def applied(self) -> bool:
        """A knob change the controller sends to the node."""
        return self.action in ('set', 'pin') and self.knob is not None and self.new is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            't': round(self.t, 6),
            'rule': self.rule,
            'action': self.action,
            'knob': self.knob,
            'mode': self.mode,
            'old': _plain(self.old),
            'new': _plain(self.new),
            'guardrail': self.guardrail,
            'reason': self.reason,
            'metrics': {k: _plain(v) for k, v in self.metrics.items()},
        }
