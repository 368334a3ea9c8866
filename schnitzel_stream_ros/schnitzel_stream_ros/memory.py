"""Giving freed heap memory back to the operating system after a large, one-off allocation.

Why: glibc's malloc keeps memory that was freed in the middle of its heap, so a process's resident
size stays at its high-water mark. Loading a model is such a peak: onnxruntime parses the model file,
optimises the graph and frees the intermediate copies — about 20 MB for the bundled 12 MB person
model that the process kept for good (measured: session +44 MB resident, +23 MB after a trim). A
site runs for months, so a vision container would carry that for months. `malloc_trim(0)` returns
the free pages; it costs a few milliseconds and runs only after such peaks (a model loaded), never
per packet. On a C library without it (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_lock = threading.Lock()
_trim: object = None  # None: not looked up yet; False: not available


def _malloc_trim() -> object:
    global _trim
    if _trim is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
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


__all__ = ['release_free_heap']
