"""The live one-line progress of a run on stderr: packets/s per source, totals, drops.

On a terminal the line is rewritten in place; otherwise (CI logs, pipes) a full line is written
every few seconds so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO


class ProgressLine:
    def __init__(
        self, stream: TextIO | None = None, *, enabled: bool = True, interval_sec: float | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, 'isatty', lambda: False)())
        self.interval = interval_sec if interval_sec is not None else (0.5 if self.tty else 5.0)
        self._t0 = time.monotonic()
        self._last_t = self._t0
        self._last_shown = 0.0
        self._last_produced: dict[str, float] = {}
        self._width = 0

    def update(self, snapshots: Iterable[Mapping[str, Any]], *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_shown < self.interval:
            return
        dt = max(now - self._last_t, 1e-6)
        sources: list[str] = []
        holding: list[str] = []
        consumed = dropped = errors = 0
        for snap in snapshots:
            for node_id, values in snap.get('nodes', {}).items():
                held = _holding(values.get('counters', {}))
                if held:
                    holding.append(f'{node_id} {held}')
                consumed += values.get('consumed', 0)
                dropped += values.get('inbox_dropped_total', 0)
                errors += values.get('errors_total', 0)
                if values.get('is_source'):
                    produced = values.get('produced', 0)
                    rate = (produced - self._last_produced.get(node_id, 0)) / dt
                    self._last_produced[node_id] = produced
                    sources.append(f'{node_id} {rate:,.0f}/s')
        text = (
            f'[run {now - self._t0:6.1f}s] '
            + (' '.join(sources) or 'no sources')
            + f' | consumed {consumed:,} dropped {dropped:,}'
            + (f' errors {errors:,}' if errors else '')
            + (f' | HOLDING (no room): {", ".join(holding)}' if holding else '')
        )
        self._last_t = self._last_shown = now
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write('\r' + text + ' ' * pad)
            self._width = len(text)
        else:
            self.stream.write(text + '\n')
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write('\n')
            self.stream.flush()


#: storage_blocked_code of a durable sink (observability/health.py has the long names)
_BLOCKED_SHORT = {1: 'queue limit', 2: 'free-space reserve', 3: 'disk full'}


def _holding(counters: Mapping[str, Any]) -> str:
    """'disk full, 128 packets held' while a durable sink holds its packets for room, else ''."""
    code = counters.get('storage_blocked_code')
    if code not in _BLOCKED_SHORT:
        return ''
    return f'{_BLOCKED_SHORT[int(code)]}, {int(counters.get("storage_held_packets", 0))} packets held'
