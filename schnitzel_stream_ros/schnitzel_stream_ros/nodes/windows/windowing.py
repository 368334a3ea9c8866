"""Event-time windows with a watermark and allowed lateness (the Flink/Beam model, small).

Times are integer microseconds since the epoch, so window bounds are exact. The watermark is the
largest event time seen minus `watermark_delay` (how out of order the input may be) and never goes
back. A window [start, end) of a key fires once the watermark reaches `end`; it is kept until the
watermark passes `end + allowed_lateness`, and a packet arriving for it meanwhile updates it and
fires it again (revision 2, 3, ...). A packet whose every window is past `end + allowed_lateness`
is late: the caller counts it and routes it to the `late` port, it is never merged silently.

Windows: tumbling (size), sliding (size, slide: a packet belongs to size/slide windows), session
(gap: a key's packets closer than `gap` form one window [first, last + gap); sessions that an
arrival joins are merged).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from schnitzel_stream_ros.nodes.windows import aggregates

TUMBLING, SLIDING, SESSION = 'tumbling', 'sliding', 'session'
WINDOW_KINDS = (TUMBLING, SLIDING, SESSION)
_NO_WATERMARK = -(2**62)


@dataclass(frozen=True)
class WindowSpec:
    kind: str
    size_us: int = 0
    slide_us: int = 0
    gap_us: int = 0
    lateness_us: int = 0
    watermark_delay_us: int = 0

    def windows_of(self, t_us: int) -> list[tuple[int, int]]:
        """The fixed windows [start, end) holding event time t (tumbling, sliding)."""
        if self.kind == TUMBLING:
            start = t_us - t_us % self.size_us
            return [(start, start + self.size_us)]
        last = t_us - t_us % self.slide_us  # the latest window start <= t
        out = []
        start = last
        while start > t_us - self.size_us:
            out.append((start, start + self.size_us))
            start -= self.slide_us
        return out[::-1]


@dataclass
class Fired:
    """One window result to emit."""

    key: str
    start_us: int
    end_us: int
    revision: int
    acc: dict[str, Any]


class WindowState:
    """Open windows per key, the watermark, and the firing rules; all plain data (checkpointable)."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.watermark = _NO_WATERMARK
        self.max_seen = _NO_WATERMARK
        # (key, start) -> {'end', 'acc', 'fired': revisions emitted so far}; insertion order = age
        self.windows: dict[tuple[str, int], dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.windows)

    def add(self, key: str, t_us: int, value: float | None, distinct: Any, track_distinct: bool) -> bool:
        """Put one packet into its windows; False when it is late for all of them (not added)."""
        spec = self.spec
        if spec.kind == SESSION:
            return self._add_session(key, t_us, value, distinct, track_distinct)
        accepted = False
        for start, end in spec.windows_of(t_us):
            if end + spec.lateness_us <= self.watermark:
                continue  # this window is closed for good
            window = self.windows.get((key, start))
            if window is None:
                window = self.windows[(key, start)] = {'end': end, 'acc': aggregates.new_accumulator(),
                                                       'fired': 0, 'dirty': False}
            aggregates.add(window['acc'], value, distinct, track_distinct)
            window['dirty'] = True
            accepted = True
        return accepted

    def _add_session(self, key: str, t_us: int, value: float | None, distinct: Any, track: bool) -> bool:
        gap = self.spec.gap_us
        start, end = t_us, t_us + gap
        if end + self.spec.lateness_us <= self.watermark:
            return False
        touching = sorted(
            s for (k, s), w in self.windows.items()
            if k == key and s <= end and w['end'] >= start  # overlapping or adjacent sessions join
        )
        acc = aggregates.new_accumulator()
        fired = 0
        for s in touching:
            old = self.windows.pop((key, s))
            start, end = min(start, s), max(end, old['end'])
            aggregates.merge(acc, old['acc'])
            fired = max(fired, old['fired'])
        aggregates.add(acc, value, distinct, track)
        self.windows[(key, start)] = {'end': end, 'acc': acc, 'fired': fired, 'dirty': True}
        return True

    def advance(self, t_us: int) -> None:
        """A packet with event time t arrived: move the watermark (never back)."""
        if t_us > self.max_seen:
            self.max_seen = t_us
            self.watermark = max(self.watermark, t_us - self.spec.watermark_delay_us)

    def fire(self) -> Iterator[Fired]:
        """Windows the watermark has reached that changed since they last fired (oldest first),
        then forget those past their lateness."""
        watermark = self.watermark
        ready = sorted(
            ((w['end'], s, k) for (k, s), w in self.windows.items() if w['dirty'] and w['end'] <= watermark)
        )
        for _end, start, key in ready:
            window = self.windows[(key, start)]
            window['fired'] += 1
            window['dirty'] = False
            yield Fired(key, start, window['end'], window['fired'], window['acc'])
        lateness = self.spec.lateness_us
        for k_s in [k_s for k_s, w in self.windows.items() if w['end'] + lateness <= watermark]:
            del self.windows[k_s]

    def evict(self, max_windows: int) -> list[Fired]:
        """Over the bound: the oldest windows fire now as they are (partial) and are forgotten."""
        out = []
        while len(self.windows) > max_windows:
            (key, start), window = next(iter(self.windows.items()))
            del self.windows[(key, start)]
            out.append(Fired(key, start, window['end'], window['fired'] + 1, window['acc']))
        return out

    # -- checkpoint -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            'watermark': self.watermark,
            'max_seen': self.max_seen,
            'windows': [
                [k, s, w['end'], w['fired'], w['dirty'], w['acc']] for (k, s), w in self.windows.items()
            ],
        }

    def load(self, state: dict[str, Any]) -> None:
        self.watermark = int(state['watermark'])
        self.max_seen = int(state['max_seen'])
        self.windows = {}
        for key, start, end, fired, dirty, acc in state['windows']:
            if not isinstance(acc, dict) or not {'count', 'values', 'distinct'} <= set(acc):
                raise ValueError('a window accumulator needs count, values, distinct')
            self.windows[(str(key), int(start))] = {'end': int(end), 'acc': acc, 'fired': int(fired),
                                                    'dirty': bool(dirty)}
