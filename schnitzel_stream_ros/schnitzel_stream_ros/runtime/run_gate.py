"""Whether a node's plugin code may run now: the lifecycle's `active`, as its threads see it.

A deactivated node must stop calling its plugin without losing anything: a source keeps its
produce() generator where it is (the next packet after `activate` is the one that would have come
next), an input worker keeps the packet it took and leaves the rest in the inboxes, where the
overflow policy applies as always. So the node's threads pass this gate around every plugin call
instead of being stopped, and `pause` waits until no call is in progress, so that once
`deactivate` has answered, the node emits nothing more.
"""

from __future__ import annotations

import threading
import time

#: How often a thread waiting at a paused gate looks at its stop event; how often `pause` looks
#: whether the calls in progress have returned.
_POLL_SEC = 0.2
_PAUSE_POLL_SEC = 0.002


class RunGate:
    """Open (active), paused (inactive) or closed (released for good); thread-safe.

    Passing an open gate is one plain lock round trip each way (it is on every packet's path);
    only the rare waits — at a paused gate, in `pause` — poll.
    """

    def __init__(self, lock: threading.Lock | None = None) -> None:
        # a node's gate may share its mailbox's lock: a DDS callback that runs a cheap node inline
        # then enters the gate and claims the mailbox in one lock round trip (Mailbox.try_claim)
        self._lock = lock if lock is not None else threading.Lock()
        self._wakeup = threading.Event()  # set while open or closed: waiting threads look again
        self._open = False
        self._closed = False
        self._inside = 0

    @property
    def is_open(self) -> bool:
        return self._open and not self._closed

    def enter(self, stop: threading.Event | None = None) -> bool:
        """Wait until the gate is open, then count the caller in. False: closed (or `stop` set) —
        the caller runs no plugin code and ends."""
        while True:
            with self._lock:
                if self._closed:
                    return False
                if self._open:
                    self._inside += 1
                    return True
            if stop is not None and stop.is_set():
                return False
            self._wakeup.wait(_POLL_SEC)

    def try_enter(self) -> bool:
        """Count the caller in if the gate is open now; never waits."""
        with self._lock:
            if not self._open or self._closed:
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def enter_held(self) -> bool:
        """try_enter() for a caller that holds this gate's lock already (a mailbox sharing it)."""
        if not self._open or self._closed:
            return False
        self._inside += 1
        return True

    def leave_held(self) -> None:
        """leave() for a caller that holds this gate's lock already."""
        self._inside -= 1

    def open(self) -> None:
        with self._lock:
            self._open = True
            self._wakeup.set()

    def pause(self, timeout: float) -> bool:
        """Let no new call in; wait up to `timeout` for the calls in progress. False: one is still
        running (stuck in plugin code); it is the last one, the gate is paused behind it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._open = False
            if not self._closed:
                self._wakeup.clear()
        while True:
            with self._lock:
                if self._inside == 0:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_PAUSE_POLL_SEC)

    def close(self) -> None:
        """For good: waiting threads return False from enter() at once."""
        with self._lock:
            self._closed = True
            self._wakeup.set()

    def wake(self) -> None:
        """Threads waiting at a paused gate look at their stop event now."""
        with self._lock:
            if not self._open and not self._closed:
                self._wakeup.set()  # wakes every waiter; cleared again, they wait once more
                self._wakeup.clear()
