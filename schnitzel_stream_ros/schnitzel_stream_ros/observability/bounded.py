"""Caps on what a run keeps in memory for its report and /diagnostics, each overflow counted.

A site runs for months and its report is built from what the runtime remembers: counters per node
(plugins name some of them after what they see: `stops_<reason>_total`, `routed_<port>_total`,
`<event type>_total`), and the warning and fatal lines of each container. Anything named after
input can grow with the input, so each of these has a cap, and what did not fit is counted where
the report shows it — never silently dropped, never an unbounded dict:

- counter names per node: `MAX_COUNTER_NAMES`; the counts of a name that did not fit go into the
  node's `counter_names_refused_total` (names already present keep counting);
- warning / fatal lines per container: `MAX_MESSAGES` distinct lines each, the first ones kept
  (the first failure explains the rest); the rest counted as `*_dropped` in the container's state,
  and the run report says how many in one warning line.

HealthMonitor's per-node and per-edge memory follows the live nodes and edges (forgotten when
they go), and its counters follow these capped names.
"""

from __future__ import annotations

#: Distinct counter/gauge names one node may have (a plugin's fixed ones are a few dozen).
MAX_COUNTER_NAMES = 256
#: The counter that takes what did not fit (always present once needed, outside the cap).
COUNTER_NAMES_REFUSED = 'counter_names_refused_total'
#: Distinct warning (and fatal) lines one container keeps for its report.
MAX_MESSAGES = 100


class BoundedMessages:
    """Distinct lines in arrival order, at most `cap`; `dropped` counts the lines that did not fit."""

    __slots__ = ('_seen', 'cap', 'dropped', 'lines')

    def __init__(self, cap: int = MAX_MESSAGES) -> None:
        self.cap = cap
        self.lines: list[str] = []
        self._seen: set[str] = set()
        self.dropped = 0

    def add(self, line: str) -> bool:
        """True when `line` is new and kept (the caller logs it then); repeats are no news."""
        if line in self._seen:
            return False
        if len(self.lines) >= self.cap:
            self.dropped += 1
            return False
        self.lines.append(line)
        self._seen.add(line)
        return True

    def __contains__(self, line: object) -> bool:
        return line in self._seen

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self):
        return iter(self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)
