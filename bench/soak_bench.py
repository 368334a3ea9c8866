"""Soak: does a long-running event lane keep its memory, descriptors, files, disk and queue bounded?

    python bench/soak_bench.py [--duration 300] [--rate 200] [--interval 2]   # prints one JSON object

The site's event lane, as `schnitzel-stream run` runs it for `--duration` seconds: a synthetic
event source (`--rate`/s, 300 B payloads) -> DurableForwarderSink (the SQLite queue, delivered
to the reference backend on loopback, which answers 503 for the middle third of the run: an
outage, a backlog, its drain) and -> a JsonlSink rotating at 1 MB (keep 2), plus the run's
`--timeline`. Every `--interval` s it samples, per process of the run, RSS (/proc/<pid>/status)
and open descriptors (/proc/<pid>/fd), and the sizes of the output folder, the JSONL files, the
queue file and its WAL, and the queue depth (read-only).

The figures: per series start / end / max and the slope per minute (least squares over the samples
after a 20 % warm-up). "Bounded" means a slope near the baseline's, files at their rotation limit,
the queue back to 0 after the outage. Baseline (same run, same duration, measured the same way):
the source alone into a no-op sink, i.e. the runtime without delivery or files.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.delivery.backend import serve_in_thread  # noqa: E402
from schnitzel_stream_ros.delivery.queue import DEFAULT_WAL_LIMIT_BYTES  # noqa: E402
from schnitzel_stream_ros.observability.report import FAILURE_COUNTER_SUFFIXES  # noqa: E402
from schnitzel_stream_ros.observability.timeline import TIMELINE_KEEP, TIMELINE_MAX_BYTES  # noqa: E402
from schnitzel_stream_ros.testing import processes  # noqa: E402
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env  # noqa: E402

SINK = 'schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink:DurableForwarderSink'
JSONL_MAX_BYTES = 1 << 20
JSONL_KEEP = 2


def site_graph(out: Path, url: str, rate: float) -> dict:
    return {
        'version': 2,
        'nodes': [
            {
                'id': 'events',
                'kind': 'source',
                'plugin': 'SyntheticSource',
                'config': {'rate_hz': rate, 'count': 0, 'payload_bytes': 300, 'kind': 'event'},
            },
            {
                'id': 'deliver',
                'kind': 'sink',
                'plugin': SINK,
                'config': {
                    'path': str(out / 'queue.db'),
                    'url': url,
                    'concurrency': 2,
                    'retry_backoff_max_sec': 2.0,
                    'breaker_open_sec': 1.0,
                },
            },
            {
                'id': 'archive',
                'kind': 'sink',
                'plugin': 'JsonlSink',
                'config': {
                    'path': str(out / 'events.jsonl'),
                    'flush': False,
                    'max_bytes': JSONL_MAX_BYTES,
                    'keep': JSONL_KEEP,
                },
            },
        ],
        'edges': [
            {'from': 'events', 'to': 'deliver', 'inbox': {'max': 256, 'overflow': 'block'}},
            {'from': 'events', 'to': 'archive', 'inbox': {'max': 256, 'overflow': 'block'}},
        ],
    }


def baseline_graph(rate: float) -> dict:
    return {
        'version': 2,
        'nodes': [
            {
                'id': 'events',
                'kind': 'source',
                'plugin': 'SyntheticSource',
                'config': {'rate_hz': rate, 'count': 0, 'payload_bytes': 300, 'kind': 'event'},
            },
            {'id': 'drop', 'kind': 'sink', 'plugin': 'Identity'},
        ],
        'edges': [{'from': 'events', 'to': 'drop', 'inbox': {'max': 256, 'overflow': 'block'}}],
    }


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f'/proc/{entry}/stat').read_text()
        except OSError:
            continue
        fields = stat.rsplit(')', 1)[1].split()
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            pids.append(int(entry))
    return pids


def rss_kb(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f'/proc/{pid}/fd'))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file())


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def queue_depth(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f'file:{db}?mode=ro', uri=True, timeout=1.0)
        try:
            row = conn.execute("SELECT value FROM queue_counters WHERE name = 'depth_rows'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def slope_per_min(points: list[tuple[float, float]], warmup: float = 0.2) -> float | None:
    """Least-squares slope (units per minute) of (t_sec, value) after a warm-up share of the samples."""
    points = points[int(len(points) * warmup) :]
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return round(60.0 * sum((t - mt) * (v - mv) for t, v in points) / var, 3)


def series(points: list[tuple[float, float]], duration: float) -> dict:
    """Figures of one sampled series; `slope_last_third_per_min` is the steady state after the
    outage (the middle third), where a leak shows without the backlog's own growth and drain."""
    values = [v for _, v in points]
    last_third = [(t, v) for t, v in points if t >= 2 * duration / 3]
    return {
        'start': values[0] if values else None,
        'end': values[-1] if values else None,
        'max': max(values) if values else None,
        'slope_per_min': slope_per_min(points),
        'slope_last_third_per_min': slope_per_min(last_third, warmup=0.0),
    }


def soak(
    graph: dict,
    out: Path,
    env: dict,
    duration: float,
    interval: float,
    backend=None,
    trace: Path | None = None,
) -> dict:
    graph_path = out / 'graph.json'
    graph_path.write_text(json.dumps(graph))
    report_path = out / 'report.json'
    runner = [sys.executable, '-m', 'schnitzel_stream_ros']
    if trace is not None:  # the runner under tracemalloc: snapshots before, after the outage, at the end
        at = (duration / 3 - 5, 2 * duration / 3, 5 * duration / 6, duration - 12)
        marks = ','.join(f'{t:.0f}' for t in at)
        tracer = REPO / 'bench' / 'memory_trace_runner.py'
        runner = [sys.executable, str(tracer), str(trace), '--at', marks, '--']
    cmd = [
        *runner, 'run', str(graph_path), '--quiet',
        '--duration', str(duration), '--report-json', str(report_path),
        '--timeline', str(out / 'timeline.jsonl'), '--drain-timeout', '10',
    ]  # fmt: skip
    proc = processes.start(cmd, env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    samples: dict[str, list[tuple[float, float]]] = {}
    outage = (duration / 3, 2 * duration / 3)
    state = 'up'

    def add(name: str, t: float, value: float | None) -> None:
        if value is not None:
            samples.setdefault(name, []).append((t, value))

    try:
        while proc.poll() is None:
            t = time.monotonic() - t0
            if t > duration - interval:  # the run is ending: shutdown is no steady state
                time.sleep(interval)
                continue
            if backend is not None:
                wanted = 'down' if outage[0] <= t < outage[1] else 'up'
                if wanted != state:
                    fault = {'mode': '5xx', 'status': 503} if wanted == 'down' else {'mode': 'ok'}
                    backend.set_control(**fault)
                    state = wanted
            for pid in group_pids(proc.pid):
                try:
                    name = 'runner' if pid == proc.pid else f'pid{pid}'
                    add(f'{name}.rss_kb', t, rss_kb(pid))
                    add(f'{name}.fds', t, fds(pid))
                except OSError:
                    continue  # ended meanwhile
            add('out_dir_bytes', t, dir_bytes(out))
            add('jsonl_bytes', t, sum(p.stat().st_size for p in out.glob('events.jsonl*')))
            add('jsonl_files', t, len(list(out.glob('events.jsonl*'))))
            add('timeline_bytes', t, sum(p.stat().st_size for p in out.glob('timeline.jsonl*')))
            add('queue_file_bytes', t, _size(out / 'queue.db'))
            add('queue_wal_bytes', t, _size(out / 'queue.db-wal'))
            add('queue_depth', t, queue_depth(out / 'queue.db'))
            time.sleep(interval)
        stderr = proc.stderr.read() if proc.stderr else ''
    finally:
        processes.stop(proc)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    m = report.get('metrics', {})
    traced = json.loads(trace.read_text()) if trace is not None and trace.exists() else None
    return {
        **({'memory_trace': _trace_figures(traced, duration)} if traced else {}),
        'exit_code': proc.returncode,
        'status': report.get('status'),
        'outcome': report.get('outcome'),
        'events_emitted': m.get('packets.source_emitted_total'),
        'warnings': report.get('warnings', [])[:3],
        'failure_counters': {k: v for k, v in m.items() if k.endswith(FAILURE_COUNTER_SUFFIXES) and v},
        'series': {name: series(points, duration) for name, points in sorted(samples.items())},
        'stderr_tail': stderr[-600:] if proc.returncode not in (0, 3) else '',
    }


def _trace_figures(traced: dict, duration: float) -> dict:
    """Slopes of RSS, the Python heap (tracemalloc) and SQLite's allocator after the outage, and
    the lines whose allocations grew most between the snapshots."""
    after = [s for s in traced['samples'] if s['t'] >= 2 * duration / 3]
    return {
        'after_outage_slope_kb_per_min': {
            name: slope_per_min([(s['t'], s[name]) for s in after], warmup=0.0)
            for name in ('rss_kb', 'traced_kb', 'sqlite_kb', 'malloc_held_kb', 'malloc_free_kb')
        },
        'end': traced['samples'][-1] if traced['samples'] else None,
        'samples_every_30s': traced['samples'][::6],
        'trim_at_the_end': traced.get('trims'),
        'diffs': [{**d, 'top': d['top'][:8]} for d in traced['diffs']],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=float, default=300.0, help='seconds of each run (default 300)')
    parser.add_argument('--rate', type=float, default=200.0, help='events per second (default 200)')
    parser.add_argument('--interval', type=float, default=2.0, help='seconds between samples (default 2)')
    parser.add_argument(
        '--trace-memory',
        action='store_true',
        help='run the site lane\'s runner under tracemalloc (bench/memory_trace_runner.py): RSS vs Python '
        'heap vs SQLite allocator after the outage, and the lines that grew (a diagnosis: no baseline run)',
    )
    args = parser.parse_args(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    result: dict = {'duration_sec': args.duration, 'rate_hz': args.rate, 'interval_sec': args.interval,
                    'loadavg': Path('/proc/loadavg').read_text().split()[:3]}  # fmt: skip
    with lease_domain() as lease, tempfile.TemporaryDirectory(prefix='soak-') as tmp:
        env = localhost_env(lease.domain_id)
        base_out = Path(tmp) / 'baseline'
        base_out.mkdir()
        if not args.trace_memory:  # a diagnosis run: no figures to compare with a baseline
            result['baseline'] = soak(baseline_graph(args.rate), base_out, env, args.duration, args.interval)
        backend = serve_in_thread()
        try:
            site_out = Path(tmp) / 'site'
            site_out.mkdir()
            result['site'] = soak(
                site_graph(site_out, backend.url + '/events', args.rate),
                site_out,
                env,
                args.duration,
                args.interval,
                backend,
                trace=Path(tmp) / 'memory_trace.json' if args.trace_memory else None,
            )
            stats = backend.stats()
            result['site']['backend'] = {'unique': stats['unique'], 'duplicates': stats['duplicates']}
        finally:
            backend.stop()
        result['site']['limits'] = {
            'jsonl_bytes': JSONL_MAX_BYTES * (JSONL_KEEP + 1),
            'jsonl_files': JSONL_KEEP + 1,
            'timeline_bytes': TIMELINE_MAX_BYTES * (TIMELINE_KEEP + 1),
            'queue_wal_bytes': DEFAULT_WAL_LIMIT_BYTES,
        }
    result['loadavg_end'] = Path('/proc/loadavg').read_text().split()[:3]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
