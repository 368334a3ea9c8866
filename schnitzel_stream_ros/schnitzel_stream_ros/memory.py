"""Giving freed heap memory back to the operating system after a large, one-off allocation.

Why: glibc's malloc keeps memory that was freed in the middle of its heap, so a process's resident
size stays at its high-water mark. Loading a model is such a peak: onnxruntime parses the model file,
optimises the graph and frees the intermediate copies — about 20 MB for the bundled 12 MB person
model that the process kept for good (measured: session +44 MB resident, +23 MB after a trim). A
site runs for months, so a vision container would carry that for months. `malloc_trim(0)` returns
the free pages; it costs a few milliseconds and runs only after such peaks (a model loaded), never
per packet. On a C library without it (musl, macOS) it does nothing.

The same holds after a *busy* phase, not only a load: a delivery backlog drained after an outage
churns through tens of MB of rows, JSON and HTTP buffers on several threads, each with its own
malloc arena, and glibc keeps what was freed. Measured with `bench/soak_bench.py --trace-memory`:
the runner's RSS kept rising after the outage while Python's heap (tracemalloc) and SQLite's
allocator stayed flat; the difference was free memory inside malloc's arenas. `PeriodicTrim` gives
it back at most once a minute, when the process grew by `TRIM_MIN_FREE_BYTES` since the last trim
and malloc holds that much free (counted in the container state: `heap_trims`, `heap_released_bytes`).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable

#: Free bytes inside malloc's arenas above which a periodic trim gives them back.
TRIM_MIN_FREE_BYTES = 8 << 20
#: Seconds between two looks at malloc's free bytes (a look costs well under a millisecond).
TRIM_EVERY_SEC = 60.0

_lock = threading.Lock()
_trim: object = None  # None: not looked up yet; False: not available


def _libc() -> ctypes.CDLL:
    """The C library's symbols, as this process already has them loaded (dlopen(NULL)): no
    `ctypes.util.find_library`, whose import brings subprocess and tempfile into every container."""
    return ctypes.CDLL(None)


def _malloc_trim() -> object:
    global _trim
    if _trim is None:
        try:
            libc = _libc()
            trim = libc.malloc_trim
            trim.argtypes = [ctypes.c_size_t]
            trim.restype = ctypes.c_int
            _trim = trim
        except (OSError, AttributeError):
            _trim = False
    return _trim


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; True when glibc's malloc_trim was there to do it."""
    with _lock:
        trim = _malloc_trim()
        if not trim:
            return False
        trim(0)  # type: ignore[operator]
        return True




_MALLINFO2_FIELDS = (
    'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost',
)
_mallinfo2: object = None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def free_heap_bytes() -> int | None:
    """Bytes malloc holds free in its arenas (glibc's mallinfo2), None where it cannot say."""
    global _mallinfo2
    if _mallinfo2 is None:
        try:
            libc = _libc()
            function = libc.mallinfo2
            function.restype = _MallInfo2
            _mallinfo2 = function
        except (OSError, AttributeError):
            _mallinfo2 = False
    if not _mallinfo2:
        return None
    return int(_mallinfo2().fordblks)  # type: ignore[operator]


class PeriodicTrim:
    """Call `maybe()` often (a timer); every `every_sec` it trims when the RSS grew by
    `min_free_bytes` since the last trim and malloc holds at least that much free (freed chunks
    stay counted as free after a trim, so the growth is what says there is something new to give
    back). `trims` counts the trims, `released_bytes` what the RSS fell by."""

    def __init__(
        self,
        every_sec: float = TRIM_EVERY_SEC,
        min_free_bytes: int = TRIM_MIN_FREE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_sec = every_sec
        self.min_free_bytes = min_free_bytes
        self._clock = clock
        self._last = clock()
        self._rss_after_trim = 0  # the first look may trim what loading left (start() trims too)
        self.trims = 0
        self.released_bytes = 0

    def maybe(self) -> bool:
        now = self._clock()
        if now - self._last < self.every_sec:
            return False
        self._last = now
        before = _rss_bytes()
        if before - self._rss_after_trim < self.min_free_bytes:
            return False  # the process did not grow since the last trim: nothing to give back
        free = free_heap_bytes()
        if free is None or free < self.min_free_bytes:
            return False
        if not release_free_heap():
            return False
        self._rss_after_trim = _rss_bytes()
        self.trims += 1
        self.released_bytes += max(0, before - self._rss_after_trim)
        return True


def _rss_bytes() -> int:
    try:
        with open('/proc/self/statm') as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


try:
    _PAGE = os.sysconf('SC_PAGE_SIZE')
except (ValueError, OSError, AttributeError):
    _PAGE = 4096


__all__ = ['PeriodicTrim', 'free_heap_bytes', 'release_free_heap']
