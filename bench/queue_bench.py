#!/usr/bin/env python3
"""Benchmark of the durable queue and the forwarder. Prints one JSON object.

    python bench/queue_bench.py [--events 40000] [--producers 1,16,32,64] [--deliver-events 20000]

Enqueue, all at synchronous=FULL on this machine's disk, in the same run:
  baseline            one row per transaction, one thread, plain sqlite3 (what a naive queue does)
  enqueue (N callers) DurableQueue.enqueue() from N threads; each call returns after its commit,
                      the group committer shares commits between concurrent callers
  enqueue_many(100)   one call with 100 events (a node that hands over a batch)
Latency p50/p99 are per call (= until the event is accepted).
Delivery: a pre-filled queue drained by the Forwarder to the reference backend running in its own
process (as in production), default settings vs a baseline of one worker claiming one row at a
time (one claim + one ack transaction per event).
Goals from issue 6: enqueue >= 10,000/s with p99 <= 5 ms; delivery >= 5,000/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.http_client import HttpTarget
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket

GOALS = {'enqueue_per_sec': 10_000, 'enqueue_p99_ms': 5.0, 'deliver_per_sec': 5_000}


def sample_event(i: int) -> StreamPacket:
    """An event shaped like protocol v0.2 (about 400 bytes of JSON)."""
    payload = {
        'event_id': f'evt-{i}',
        'ts': '2025-06-01T12:00:00.000Z',
        'site_id': 'plant-7',
        'camera_id': 'cam-03',
        'event_type': 'ZONE_INTRUSION',
        'object_type': 'PERSON',
        'severity': 'MEDIUM',
        'track_id': i % 97,
        'bbox': {'x1': 120, 'y1': 88, 'x2': 230, 'y2': 410},
        'confidence': 0.87,
        'zone': {'zone_id': 'loading-dock', 'inside': True},
        'snapshot_path': None,
        'sensor': None,
    }
    return StreamPacket.new('event', 'cam-03', payload, meta={'idempotency_key': f'bench:{i}'})


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        'p50_ms': round(statistics.median(ordered) * 1000, 3),
        'p99_ms': round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


def bench_baseline(path: Path, events: list[StreamPacket]) -> dict:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute('PRAGMA journal_mode=WAL')
    conn.execute('PRAGMA synchronous=FULL')
    conn.execute(
        'CREATE TABLE packets (seq INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT UNIQUE, '
        'packet_id TEXT, ts TEXT, kind TEXT, source_id TEXT, payload_json TEXT, meta_json TEXT)'
    )
    latencies = []
    started = time.perf_counter()
    for p in events:
        t0 = time.perf_counter()
        conn.execute('BEGIN IMMEDIATE')
        conn.execute(
            'INSERT INTO packets (idempotency_key, packet_id, ts, kind, source_id, payload_json, meta_json) '
            'VALUES (?, ?, ?, ?, ?, ?, ?)',
            (
                p.idempotency_key,
                p.packet_id,
                p.ts,
                p.kind,
                p.source_id,
                json.dumps(p.payload, allow_nan=False),
                json.dumps(p.meta, allow_nan=False),
            ),
        )
        conn.execute('COMMIT')
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    conn.close()
    return {'events': len(events), 'events_per_sec': round(len(events) / elapsed), **percentiles(latencies)}


def bench_enqueue(path: Path, events: list[StreamPacket], producers: int) -> dict:
    queue = DurableQueue(path)
    latencies: list[float] = []
    lock = threading.Lock()

    def produce(mine: list[StreamPacket]) -> None:
        local = []
        for p in mine:
            t0 = time.perf_counter()
            queue.enqueue(p)
            local.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=produce, args=(events[i::producers],)) for i in range(producers)]
    commits = queue.stats()['commits_total']
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    commits = queue.stats()['commits_total'] - commits
    depth = queue.depth()
    queue.close()
    assert depth == len(events), (depth, len(events))
    return {
        'producers': producers,
        'events': len(events),
        'events_per_sec': round(len(events) / elapsed),
        'rows_per_commit': round(len(events) / commits, 1),
        **percentiles(latencies),
    }


def bench_enqueue_many(path: Path, events: list[StreamPacket], batch: int) -> dict:
    queue = DurableQueue(path)
    latencies = []
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        t0 = time.perf_counter()
        queue.enqueue_many(events[i : i + batch])
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    queue.close()
    return {
        'batch': batch,
        'events': len(events),
        'events_per_sec': round(len(events) / elapsed),
        **{f'call_{k}': v for k, v in percentiles(latencies).items()},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def start_backend(workdir: Path) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        '-m',
        'schnitzel_stream_ros.delivery.backend',
        '--port',
        str(free_port()),
        '--db',
        str(workdir / 'backend.db'),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        raise SystemExit('bench: the reference backend did not start')
    return proc, json.loads(proc.stdout.readline())['url']


def bench_delivery(
    workdir: Path, url: str, events: list[StreamPacket], name: str, config: ForwarderConfig
) -> dict:
    path = workdir / f'deliver-{name}.db'
    queue = DurableQueue(path)
    for i in range(0, len(events), 1000):
        queue.enqueue_many(
            events[i : i + 1000], [f'{name}:{p.idempotency_key}' for p in events[i : i + 1000]]
        )
    forwarder = Forwarder(queue, HttpTarget(url + '/events'), config)
    started = time.perf_counter()
    forwarder.start()
    drained = forwarder.wait_idle(600, poll_sec=0.005)
    elapsed = time.perf_counter() - started
    forwarder.stop()
    metrics = forwarder.metrics()
    queue.close()
    return {
        'name': name,
        'concurrency': config.concurrency,
        'batch_size': config.batch_size,
        'events': len(events),
        'drained': drained,
        'events_per_sec': round(len(events) / elapsed),
        'posted_total': metrics['posted_total'],
        'failed_total': metrics['failed_total'],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=40_000, help='events per enqueue measurement')
    parser.add_argument('--baseline-events', type=int, default=3_000)
    parser.add_argument('--producers', default='1,16,32,64')
    parser.add_argument('--deliver-events', type=int, default=20_000)
    parser.add_argument('--dir', default=None, help='where the SQLite files go (default: a temp dir)')
    args = parser.parse_args(argv)
    producers = [int(p) for p in args.producers.split(',')]
    events = [sample_event(i) for i in range(max(args.events, args.deliver_events))]

    with tempfile.TemporaryDirectory(dir=args.dir, prefix='queue-bench-') as tmp:
        workdir = Path(tmp)
        baseline = bench_baseline(workdir / 'baseline.db', events[: args.baseline_events])
        concurrent = [
            bench_enqueue(
                workdir / f'enqueue-{n}.db', events[: args.events if n > 1 else args.baseline_events], n
            )
            for n in producers
        ]
        many = bench_enqueue_many(workdir / 'many.db', events[: args.events], 100)
        backend, url = start_backend(workdir)
        try:
            deliver_events = events[: args.deliver_events]
            delivery_baseline = bench_delivery(
                workdir,
                url,
                deliver_events[: args.deliver_events // 4],
                'baseline',
                ForwarderConfig(concurrency=1, batch_size=1),
            )
            delivery_default = bench_delivery(workdir, url, deliver_events, 'default', ForwarderConfig())
            delivery_wide = bench_delivery(
                workdir, url, deliver_events, 'wide', ForwarderConfig(concurrency=8, batch_size=256)
            )
        finally:
            os.killpg(backend.pid, signal.SIGTERM)
            backend.wait(10)

    best_enqueue = max(concurrent, key=lambda r: r['events_per_sec'])
    within_p99 = [r for r in concurrent if r['p99_ms'] <= GOALS['enqueue_p99_ms']]
    best_within = max(within_p99, key=lambda r: r['events_per_sec']) if within_p99 else None
    best_delivery = max((delivery_default, delivery_wide), key=lambda r: r['events_per_sec'])
    result = {
        'bench': 'queue_bench',
        'machine': {
            'cpus': os.cpu_count(),
            'python': platform.python_version(),
            'sqlite': sqlite3.sqlite_version,
            'loadavg_1m': round(os.getloadavg()[0], 2),
        },
        'synchronous': 'FULL',
        'enqueue': {
            'baseline_one_row_per_txn': baseline,
            'group_commit_concurrent': concurrent,
            'enqueue_many': many,
            'speedup_best_concurrent_vs_baseline': round(
                best_enqueue['events_per_sec'] / baseline['events_per_sec'], 1
            ),
            'speedup_enqueue_many_vs_baseline': round(many['events_per_sec'] / baseline['events_per_sec'], 1),
        },
        'delivery': {
            'baseline_1_worker_1_row': delivery_baseline,
            'default': delivery_default,
            'concurrency_8_batch_256': delivery_wide,
        },
        'goals': GOALS,
        'goals_met': {
            'enqueue_per_sec_concurrent': best_enqueue['events_per_sec'] >= GOALS['enqueue_per_sec'],
            'enqueue_per_sec_and_p99_same_run': bool(
                best_within and best_within['events_per_sec'] >= GOALS['enqueue_per_sec']
            ),
            'enqueue_many_per_sec': many['events_per_sec'] >= GOALS['enqueue_per_sec'],
            'deliver_per_sec': best_delivery['events_per_sec'] >= GOALS['deliver_per_sec'],
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
