"""When a frame-lane reader sleeps on the lane's event, and when it is awake for the next frame.

A reader that sleeps until the producer rings it pays the wake-up of a sleeping thread in front of
every frame: on this VM 121 µs p50 and 820 µs p99 from the send to the reader running (two bare
processes, 30 frames/s), while a reader that polls sees the frame 26 / 193 µs after the send. So:
- frames back to back (a flood, at most `SPIN_NS` apart): the reader polls for up to `SPIN_NS` after
  the last one before it sleeps again; a flooding producer then finds it awake and rings it for
  ~0.2 µs instead of ~6 µs;
- frames at a steady period (a camera: 2–200 ms apart, the last gap within a quarter of the period
  learnt): the reader sleeps until `WAKE_AHEAD_NS` before the next frame is due, then polls until
  `WAKE_AHEAD_NS` after it. A frame outside that window is taken on the event's wake-up as before;
  an early one waits at most `SLICE_NS` (the reader looks every `SLICE_NS` while it sleeps close to
  the window). It costs the polling, ~0.8 ms of CPU per frame (2.4 % of a core at 30 frames/s,
  measured) and takes ~0.1 ms off p50 and p99 at 30 frames/s (bench/README.md);
- anything else (irregular frames, none yet, a window missed): the reader sleeps on the event.
The producer rings the event for every frame in every case, so a reader never misses a wake-up.
Polling lets go of the GIL between polls (`os.sched_yield`): the container's other threads run.
"""
from __future__ import annotations

#: Frames at most this far apart count as back to back: the reader polls this long after the last.
SPIN_NS = 100_000
#: A steady stream's window: the reader polls from this long before the next frame is due to as long
#: after it (the wake-up it replaces is 0.1–0.8 ms on this VM; the producer's own timing varies too).
WAKE_AHEAD_NS = 800_000
#: Periods the reader learns (a camera's 5–500 fps); outside them it sleeps on the event.
MIN_PERIOD_NS = 2_000_000
MAX_PERIOD_NS = 200_000_000
#: The event's timed wait is coarse (ms-grained, and up to ~7.5 ms late here, measured): it covers only
#: the wait up to this long before the window; the rest is slept in steps of SLICE_NS (precise),
#: looking for an early frame between them.
COARSE_MARGIN_NS = 10_000_000
SLICE_NS = 1_000_000

_NEVER = 1 << 62


class ArrivalClock:
    """The arrival times of one reader's frames, and what they say about the next one."""

    __slots__ = ('gap', 'last', 'period')

    def __init__(self) -> None:
        self.last = -_NEVER  # no frame yet
        self.gap = _NEVER
        self.period = 0  # the steady period learnt (0: not steady)

    def arrived(self, now: int) -> None:
        gap = now - self.last
        self.last, previous = now, self.gap
        self.gap = gap
        if not MIN_PERIOD_NS <= gap <= MAX_PERIOD_NS:
            self.period = 0
        elif self.period and abs(gap - self.period) * 4 <= self.period:
            self.period += (gap - self.period) // 8  # steady: follow it slowly
        elif MIN_PERIOD_NS <= previous <= MAX_PERIOD_NS and abs(gap - previous) * 4 <= gap:
            self.period = gap  # two gaps that agree: steady from here
        else:
            self.period = 0

    def back_to_back(self, now: int) -> bool:
        """Frames come back to back and the last one is at most SPIN_NS old: poll on."""
        return self.gap <= SPIN_NS and now - self.last < SPIN_NS

    def due(self, now: int) -> int:
        """When the next frame of a steady stream is due, while its window is still ahead or open;
        0 otherwise (sleep on the event)."""
        if not self.period:
            return 0
        due = self.last + self.period
        return due if now < due + WAKE_AHEAD_NS else 0
