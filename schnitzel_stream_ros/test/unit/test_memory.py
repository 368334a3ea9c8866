"""release_free_heap gives freed heap pages back: resident memory drops after a freed peak."""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import pytest

from schnitzel_stream_ros.memory import release_free_heap


def _rss_mb() -> float:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise AssertionError('no VmRSS')


def test_a_freed_peak_in_the_middle_of_the_heap_is_given_back():
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    if not hasattr(libc, 'malloc_trim'):
        pytest.skip('not glibc: release_free_heap does nothing here by design')
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    # 80 MB in 1 KB blocks (below the mmap threshold: they live in the heap), touched so they are resident
    blocks = [libc.malloc(1024) for _ in range(80_000)]
    for block in blocks:
        libc.memset(block, 1, 1024)
    pin = libc.malloc(1024)  # a live block above them: free() alone cannot shrink the heap
    for block in blocks:
        libc.free(block)
    before = _rss_mb()
    try:
        assert release_free_heap() is True
        after = _rss_mb()
    finally:
        libc.free(pin)
    assert before - after > 40, f'resident {before:.1f} MB -> {after:.1f} MB'
