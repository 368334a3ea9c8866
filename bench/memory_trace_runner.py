"""Run `schnitzel-stream` under tracemalloc and write where the runner's memory went.

    python bench/memory_trace_runner.py OUT.json --at 60,170 -- run graph.json --duration 180 ...

Used by `bench/soak_bench.py --trace-memory`: the runner's RSS slope alone does not say whether
Python objects pile up (a leak: tracemalloc shows the lines that allocate them) or C memory fills
to a limit (SQLite's page caches, allocator arenas: invisible to tracemalloc, bounded). So this
samples, every 5 s, the RSS, the Python heap tracemalloc sees and SQLite's own allocator
(`sqlite3_memory_used` of the library the sqlite3 module is linked to), takes a snapshot at each
`--at` second and writes the top differences between consecutive snapshots (by line) to OUT.json
at each snapshot and at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib.util  # noqa: F401  (cli.py expects it loaded, as `python -m` does)
import json
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

TOP = 25


def _sqlite_memory_used() -> int | None:
    """Bytes SQLite's allocator holds now (page caches, statements), or None if not reachable."""
    import _sqlite3  # noqa: F401  (loads the library the sqlite3 module uses)

    for name in (ctypes.util.find_library('sqlite3'), 'libsqlite3.so.0'):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.sqlite3_memory_used.restype = ctypes.c_int64
            return int(lib.sqlite3_memory_used())
        except (OSError, AttributeError):
            continue
    return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks',
        'keepcost')]  # fmt: skip


def _malloc_kb() -> tuple[int, int] | None:
    """glibc malloc: (bytes held in its arenas, of which free) in kB, or None without mallinfo2."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return None
    return (info.arena + info.hblkhd) // 1024, info.fordblks // 1024


def _rss_kb() -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return 0


def _watch(out: Path, marks: list[float], stop: threading.Event) -> None:
    t0 = time.monotonic()
    samples: list[dict] = []
    diffs: list[dict] = []
    trims: list[dict] = []
    previous: tracemalloc.Snapshot | None = None
    previous_at = 0.0
    pending = sorted(marks)
    while not stop.wait(5.0):
        t = time.monotonic() - t0
        traced, _peak = tracemalloc.get_traced_memory()
        held, free = _malloc_kb() or (0, 0)
        samples.append({'t': round(t, 1), 'rss_kb': _rss_kb(), 'traced_kb': traced // 1024,
                        'sqlite_kb': (_sqlite_memory_used() or 0) // 1024,
                        'malloc_held_kb': held, 'malloc_free_kb': free})  # fmt: skip
        if pending and t >= pending[0]:
            pending.pop(0)
            snap = tracemalloc.take_snapshot().filter_traces(
                (tracemalloc.Filter(False, tracemalloc.__file__),)
            )
            if previous is not None:
                stats = snap.compare_to(previous, 'lineno')
                top = [
                    {'where': str(s.traceback[0]), 'size_diff_kb': round(s.size_diff / 1024, 1),
                     'count_diff': s.count_diff}
                    for s in stats[:TOP]
                ]  # fmt: skip
                diffs.append({'from_sec': round(previous_at, 1), 'to_sec': round(t, 1), 'top': top})
            previous, previous_at = snap, t
            if not pending:  # the last mark: how much of the RSS is free heap glibc kept?
                before = _rss_kb()
                from schnitzel_stream_ros.memory import release_free_heap

                release_free_heap()
                trims.append({'t': round(t, 1), 'rss_before_kb': before, 'rss_after_kb': _rss_kb()})
        out.write_text(json.dumps({'samples': samples, 'diffs': diffs, 'trims': trims}, indent=1))


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index('--') if '--' in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', type=Path)
    parser.add_argument('--at', default='', help='seconds at which to snapshot, comma-separated')
    args = parser.parse_args(argv[:split])
    marks = [float(x) for x in args.at.split(',') if x.strip()]
    tracemalloc.start(1)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(args.out, marks, stop), daemon=True)
    watcher.start()
    from schnitzel_stream_ros.cli import main as cli_main

    sys.argv = ['schnitzel-stream', *argv[split + 1 :]]
    try:
        return cli_main()
    finally:
        stop.set()
        watcher.join(10.0)
        os.environ.pop('PYTHONTRACEMALLOC', None)


if __name__ == '__main__':
    sys.exit(main())
