"""Free heap a busy phase left in malloc's arenas goes back to the OS (issue 26, the runner's RSS
after an outage): real allocations in this process, glibc's own numbers, the RSS from /proc."""

from __future__ import annotations

import pytest

from schnitzel_stream_ros.memory import PeriodicTrim, free_heap_bytes


def test_a_periodic_trim_returns_what_a_burst_freed_and_counts_it():
    if free_heap_bytes() is None:
        pytest.skip('needs glibc (mallinfo2/malloc_trim); this C library keeps no such free heap')
    clock = [0.0]
    trim = PeriodicTrim(every_sec=60.0, min_free_bytes=4 << 20, clock=lambda: clock[0])
    burst = [bytearray(60_000) for _ in range(800)]  # ~48 MB in the arena (below the mmap threshold)
    keep = burst[-1]  # the newest chunk stays: the freed ones are below the heap's top, not trimmed by free()
    for chunk in burst:
        chunk[::4096] = b'x' * len(chunk[::4096])  # touched: resident
    del burst, chunk
    assert free_heap_bytes() >= 40 << 20  # malloc kept what was freed
    assert not trim.maybe()  # not a minute yet: nothing
    clock[0] = 61.0
    assert trim.maybe() and trim.trims == 1
    assert trim.released_bytes >= 20 << 20  # the RSS fell by (most of) the burst
    clock[0] = 122.0
    assert not trim.maybe()  # nothing left worth a trim
    assert len(keep) == 60_000
