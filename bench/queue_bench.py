#!/usr/bin/env python3
"""Benchmark of the durable queue and the forwarder. Prints one JSON object.

    python bench/queue_bench.py [--events 40000] [--producers 1,16,32,64] [--deliver-events 20000]
                                [--runtime-events 40000] [--latency-rounds 2] [--quick]
    python bench/queue_bench.py --only-latency --runtime-events 20000 --latency-rounds 5

Enqueue, all at synchronous=FULL on this machine's disk, in the same run:
  baseline            one row per transaction, one thread, plain sqlite3 (what a naive queue does)
  enqueue (N callers) DurableQueue.enqueue() from N threads; each call returns after its commit,
                      the group committer shares commits between concurrent callers
  enqueue_many(100)   one call with 100 events (a node that hands over a batch)
Latency p50/p99 are per call (= until the event is accepted).
  runtime, 1 producer one producer node -> DurableForwarderSink through the real live runtime (one
                      container in this process, inbox `block`), the forwarder delivering to the
                      reference backend meanwhile. `batched`: the sink takes what waits in its inbox
                      at once (Plugin.process_batch, one commit); baseline `per_packet`: the same
                      path with one process() call and one commit per packet. commit p50/p99: per
                      sink call (= until every packet of it is accepted); accept p50/p99: per packet
                      from its emission to its commit.
  producer latency    the same one producer at an offered 10,000/s without delivery, with the
                      forwarder delivering meanwhile (as shipped: a settle lingers up to 20 ms to
                      share an enqueue's commit), with delivery from a process of its own
                      (DurableForwarderSink `delivery_process: true`, nice +5; nice 0 as info; as info
                      also with the backend at SCHED_IDLE, standing for a backend on another host), with
                      the forwarder's threads reniced in the producer's process (info), and
                      the baselines with delivery where every settle is a commit of its own (the
                      producer then waits behind it) and with the former WAL housekeeping. Cases
                      alternate round by round; per round: load average, cores of the producer's
                      process, its threads' GIL wait (GilProbe), the delivery process's CPU per
                      event; `paired_rounds_*` compares own process vs threads round by round.
Delivery: a pre-filled queue drained by the Forwarder to the reference backend (uvicorn, httptools,
uvloop) running in its own process (as in production), default settings vs a baseline of one worker
claiming one row at a time (one claim + one ack transaction per event); our HTTP client vs urllib3's;
delivery from its own process; a two-segment backend (threads and own process); and the same
backlog into the reference backend as shipped (uvicorn with httptools on uvloop) vs httptools on
asyncio vs h11 on asyncio (alternating rounds, with the backend process's CPU per event, the figure
a shared machine's load disturbs least).
Goals from issues 6 and 11: enqueue >= 10,000/s with p99 <= 5 ms (also while delivering);
delivery >= 5,000/s; two-segment backend >= 2,000/s.
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import ClassVar

from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.http_client import HttpTarget
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket

GOALS = {
    'enqueue_per_sec': 10_000,
    'enqueue_p99_ms': 5.0,
    'deliver_per_sec': 5_000,
    'deliver_two_segment_per_sec': 2_000,
}
BENCH_MODULE = 'queue_bench'
RUNTIME_TIMEOUT_SEC = 120.0


# -- one producer node through the live runtime ----------------------------------------------------
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink  # noqa: E402
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role  # noqa: E402


class EventSource(Plugin):
    """Protocol-v0.2-shaped events as fast as the runtime takes them (the one producer)."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'event'})),)
    PARAMS = (
        Param('count', int, 1000, 'events to emit', min=1),
        Param('rate_hz', float, 0.0, 'offered rate (0 = as fast as the runtime takes them)', min=0.0),
    )

    def produce(self):
        rate = self.params['rate_hz']
        started = time.perf_counter()
        for i in range(self.params['count']):
            if self.stopping:
                return
            if rate:
                ahead = started + i / rate - time.perf_counter()
                if ahead > 0.001:  # sleep in >= 1 ms steps; the events of a step go out together
                    time.sleep(ahead)
            yield sample_event(i).with_meta(bench_t_ns=time.perf_counter_ns())


class TimedSink(DurableForwarderSink):
    """DurableForwarderSink with timings: per call (commit) and per packet (emission -> commit)."""

    calls_ns: ClassVar[list[int]] = []
    accept_ns: ClassVar[list[int]] = []
    queue_stats: ClassVar[dict] = {}
    first_ns = 0
    last_ns = 0
    closed_ns = 0
    cpu_first = 0.0
    cpu_last = 0.0
    delivery_cpu_sec = 0.0

    def setup(self) -> None:
        super().setup()
        wait_ready = getattr(self.forwarder, 'wait_ready', None)
        if wait_ready is not None:  # delivery in its own process: measure once it runs
            assert wait_ready(30.0), 'the delivery process did not start'

    def close(self) -> None:
        if self.queue is not None:
            type(self).queue_stats = self.queue.stats()
            type(self).closed_ns = time.perf_counter_ns()
            pid = getattr(self.forwarder, 'pid', None)
            type(self).delivery_cpu_sec = process_cpu_sec(pid) if pid else 0.0
        super().close()

    def _timed(self, packets, call):
        t0 = time.perf_counter_ns()
        out = call()
        t1 = time.perf_counter_ns()
        cls = type(self)
        cls.calls_ns.append(t1 - t0)
        cls.accept_ns.extend(t1 - p.meta['bench_t_ns'] for p in packets)
        if not cls.first_ns:
            cls.first_ns = t0
            cls.cpu_first = time.process_time()  # this process: runtime, producer, committer (+ threads)
        cls.last_ns = t1
        cls.cpu_last = time.process_time()
        return out

    def process(self, packet, port='in'):
        return self._timed([packet], lambda: super(TimedSink, self).process(packet, port))

    def process_batch(self, packets, port='in'):
        return self._timed(packets, lambda: super(TimedSink, self).process_batch(packets, port))


class TimedSinkPerPacket(TimedSink):
    """The baseline: the runtime calls process() once per packet (one commit each)."""

    process_batch = Plugin.process_batch


SINK_NAMES = {
    'TimedSink': 'batched',
    'TimedSinkSettleAlone': 'batched_settle_alone',
    'TimedSinkCheckpointsInline': 'batched_checkpoints_inline',
    'TimedSinkThreadsNiced': 'batched_delivery_threads_niced',
}


class TimedSinkSettleAlone(TimedSink):
    """Baseline of the producer's p99 while delivering: the forwarder's settles do not linger for
    an enqueue to share their commit (each is a commit of its own, as before the fix)."""

    def setup(self) -> None:
        super().setup()
        assert self.forwarder is not None
        self.forwarder.config.settle_linger_sec = 0.0


class TimedSinkThreadsNiced(TimedSink):
    """Candidate fix (b), for comparison only: the forwarder's threads stay in the producer's
    process but are reniced (+5, Linux: setpriority on each thread's id) so the kernel prefers
    the producer and the committer. They still share the GIL, and a niced thread that the kernel
    preempts while holding the GIL makes the producer wait for it (priority inversion)."""

    def setup(self) -> None:
        super().setup()
        assert self.forwarder is not None
        for thread in self.forwarder._threads:
            os.setpriority(os.PRIO_PROCESS, thread.native_id, 5)


class TimedSinkCheckpointsInline(TimedSink):
    """Baseline of the producer's p99 while delivering: WAL housekeeping as before the fix -- the
    writer-blocking part (TRUNCATE checkpoint, giving pages back) on the checkpointer's connection
    whenever it is due, not between two commits or in a moment without enqueues (a producer's
    BEGIN then waits in SQLite's busy handler, which sleeps in steps of 1, 2, 5, 10... ms)."""

    def setup(self) -> None:
        super().setup()
        assert self.queue is not None
        self.queue.housekeeping_quiet_sec = 0.0


class GilProbe:
    """How long a thread of the producer's process waits for the GIL (where the time goes): a
    thread wakes every millisecond; how late it is back running Python, minus its own time waiting
    for a CPU on the run queue (the kernel's schedstat for that thread) and minus the smallest
    lateness seen (timer slack), is time spent waiting for the GIL while other threads of the
    process held it. Reported as the mean per wake-up. On a loaded machine it also counts a GIL
    holder that the kernel preempted (measured at load 13: 140-880 us even without delivery), so
    like the p99 it is meaningful on a quiet machine."""

    PERIOD_SEC = 0.001

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._late_ns: list[int] = []
        self._runq_ns = 0
        self._thread = threading.Thread(target=self._run, name='gil-probe', daemon=True)

    @staticmethod
    def _runqueue_ns() -> int:
        """Nanoseconds this thread waited on a run queue so far (Linux schedstat, field 2)."""
        tid = threading.get_native_id()
        return int(Path(f'/proc/self/task/{tid}/schedstat').read_text().split()[1])

    def _run(self) -> None:
        runq_before = self._runqueue_ns()
        period_ns = int(self.PERIOD_SEC * 1e9)
        while not self._stop.is_set():
            t0 = time.perf_counter_ns()
            time.sleep(self.PERIOD_SEC)
            self._late_ns.append(time.perf_counter_ns() - t0 - period_ns)
        self._runq_ns = self._runqueue_ns() - runq_before

    def __enter__(self) -> GilProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def gil_wait_us_per_wake(self) -> float | None:
        if len(self._late_ns) < 10:
            return None
        floor = min(self._late_ns)
        waited = sum(late - floor for late in self._late_ns) - self._runq_ns
        return round(max(0.0, waited / len(self._late_ns) / 1000), 1)


def bench_runtime_producer(
    workdir: Path,
    url: str,
    count: int,
    sink: str,
    rate_hz: float = 0.0,
    deliver: bool = True,
    tag: str = '',
    extra_params: dict | None = None,
) -> dict:
    import importlib

    from schnitzel_stream_ros.graph.wiring import LoadRequest
    from schnitzel_stream_ros.runtime.container_handles import LocalContainerHandle

    # the container imports this file as the module BENCH_MODULE (not __main__): read its classes
    sink_cls = getattr(importlib.import_module(BENCH_MODULE), sink)
    sink_cls.calls_ns, sink_cls.accept_ns, sink_cls.first_ns, sink_cls.last_ns = [], [], 0, 0
    sink_cls.queue_stats, sink_cls.closed_ns, sink_cls.delivery_cpu_sec = {}, 0, 0.0
    handle = LocalContainerHandle('queue_bench', '/qb', executor='events', max_events=None, drain_timeout=5.0)
    try:
        source = LoadRequest(
            'schnitzel_stream_ros',
            f'{BENCH_MODULE}:EventSource',
            'src',
            '/qb',
            (),
            {'count': count, 'rate_hz': rate_hz},
            'qb',
        )
        params = {
            'path': str(workdir / f'runtime-{sink}-{rate_hz:g}-{deliver}-{tag}.db'),  # a fresh queue each run
            # deliver=False: nothing listens at port 9, the breaker stays open: enqueue alone
            'url': (url if deliver else 'http://127.0.0.1:9') + '/events',
            'breaker_open_sec': 1.0 if deliver else 3600.0,
            'inputs.in': ['/qb/src/out'],
            'inbox.in.max': 4096,
            'inbox.in.overflow': 'block',
            **(extra_params or {}),
        }
        sink_request = LoadRequest(
            'schnitzel_stream_ros', f'{BENCH_MODULE}:{sink}', 'deliver', '/qb', (), params, 'qb'
        )
        for request in (source, sink_request):
            result = handle.load(request)
            assert result.success, result.error_message
        deadline = time.monotonic() + RUNTIME_TIMEOUT_SEC
        with GilProbe() as probe:
            handle.start()
            while len(sink_cls.accept_ns) < count and time.monotonic() < deadline:
                time.sleep(0.01)
        handle.shutdown(5.0)
    finally:
        handle.close()
    accepted = len(sink_cls.accept_ns)
    elapsed = (sink_cls.last_ns - sink_cls.first_ns) / 1e9 if accepted else 0.0
    calls = [ns / 1e9 for ns in sink_cls.calls_ns]
    result = {
        'sink': SINK_NAMES.get(sink, 'per_packet'),
        'delivery': 'own process' if (extra_params or {}).get('delivery_process') else 'threads',
        'offered_per_sec': rate_hz or 'unthrottled',
        'forwarder_delivering_meanwhile': deliver,
        'events': count,
        'accepted': accepted,
        'accepted_per_sec': round(accepted / elapsed) if elapsed else 0,
        'sink_calls': len(calls),
        'packets_per_call': round(accepted / max(1, len(calls)), 1),
        # commits of settles alone, and enqueues that had to wait behind one (group_commit.py)
        'settle_only_commits': sink_cls.queue_stats.get('settle_only_commits_total'),
        'enqueues_behind_a_settle_commit': sink_cls.queue_stats.get('enqueues_behind_settle_commit_total'),
        # checkpoints on the checkpointer thread; writer-blocking housekeeping while a producer wrote
        'checkpoints': sink_cls.queue_stats.get('checkpoints_total'),
        'housekeeping_blocked_writers': sink_cls.queue_stats.get('housekeeping_blocked_writers_total'),
        'wal_bounded_between_commits': sink_cls.queue_stats.get('wal_bounded_between_commits_total'),
        # delivered from the producer's first commit until the node closed (the producer ran
        # meanwhile for `count` / offered seconds): what delivery keeps up with while producing
        'delivered_meanwhile_per_sec': round(
            (sink_cls.queue_stats.get('acked_total') or 0) / ((sink_cls.closed_ns - sink_cls.first_ns) / 1e9)
        )
        if deliver and accepted and sink_cls.closed_ns > sink_cls.first_ns
        else 0,
        # CPU, a figure the machine's load disturbs less than a p99: cores the producer's process
        # used while producing (runtime, producer, committer, and delivery threads if delivering
        # in-process), and a delivery process's CPU per delivered event
        'producer_process_cores': round((sink_cls.cpu_last - sink_cls.cpu_first) / elapsed, 2)
        if elapsed
        else None,
        'gil_wait_us_per_wake': probe.gil_wait_us_per_wake(),
        'delivery_process_cpu_us_per_event': round(
            sink_cls.delivery_cpu_sec / max(1, sink_cls.queue_stats.get('acked_total') or 0) * 1e6, 1
        )
        if sink_cls.delivery_cpu_sec
        else None,
    }
    if accepted:
        result.update({f'commit_{k}': v for k, v in percentiles(calls).items()})
        accept = [ns / 1e9 for ns in sink_cls.accept_ns]
        result.update({f'accept_{k}': v for k, v in percentiles(accept).items()})
    return result


#: The one producer at an offered 10,000/s: runtime result name -> (sink class, forwarder
#: delivering, extra node parameters)
LATENCY_CASES = {
    'batched_offered_10000_per_sec': ('TimedSink', True, {}),
    'batched_offered_10000_per_sec_delivery_process': ('TimedSink', True, {'delivery_process': True}),
    # one pipelined connection: on loopback it alone delivers more than the 5,000/s goal, with the
    # least CPU taken from the producer (the delivery rate is what the producer's tail pays for)
    'batched_offered_10000_per_sec_delivery_process_one_connection': (
        'TimedSink',
        True,
        {'delivery_process': True, 'concurrency': 1},
    ),
    'info_batched_offered_10000_per_sec_no_delivery': ('TimedSink', False, {}),
    'info_offered_10000_per_sec_delivery_threads_niced': ('TimedSinkThreadsNiced', True, {}),
    'info_offered_10000_per_sec_delivery_process_nice_0': (
        'TimedSink',
        True,
        {'delivery_process': True, 'delivery_process_nice': 0},
    ),
    'info_offered_10000_per_sec_delivery_process_backend_sched_idle': (
        'TimedSink',
        True,
        {'delivery_process': True},
    ),
    'baseline_batched_offered_10000_per_sec_settle_alone': ('TimedSinkSettleAlone', True, {}),
    'baseline_offered_10000_per_sec_checkpoints_inline': ('TimedSinkCheckpointsInline', True, {}),
}
#: Cases whose backend runs at SCHED_IDLE: on a site the backend is another host, so its CPU is not
#: the edge's; on this one machine SCHED_IDLE lets it take only the CPU the edge leaves idle.
BACKEND_ELSEWHERE_CASES = frozenset({'info_offered_10000_per_sec_delivery_process_backend_sched_idle'})
LATENCY_KEYS = (
    'accepted_per_sec',
    'commit_p50_ms',
    'commit_p99_ms',
    'accept_p50_ms',
    'accept_p99_ms',
    'sink_calls',
    'settle_only_commits',
    'enqueues_behind_a_settle_commit',
    'checkpoints',
    'housekeeping_blocked_writers',
    'wal_bounded_between_commits',
    'delivered_meanwhile_per_sec',
    'producer_process_cores',
    'gil_wait_us_per_wake',
    'delivery_process_cpu_us_per_event',
)


@contextlib.contextmanager
def backend_elsewhere(pid: int | None, away: bool):
    """Every thread of the backend process at SCHED_IDLE for the block (BACKEND_ELSEWHERE_CASES),
    back to SCHED_OTHER after it."""
    def set_policy(policy: int) -> None:
        for task in Path(f'/proc/{pid}/task').iterdir():
            with contextlib.suppress(OSError):
                os.sched_setscheduler(int(task.name), policy, os.sched_param(0))

    if pid is None or not away:
        yield
        return
    set_policy(os.SCHED_IDLE)
    try:
        yield
    finally:
        set_policy(os.SCHED_OTHER)


def bench_producer_latency(
    workdir: Path, url: str, count: int, rounds: int, backend_pid: int | None = None
) -> dict:
    """The cases in alternating rounds (a shared machine's load then falls on each alike);
    each case's figures are the median over the rounds, its rounds listed too."""
    results: dict[str, list[dict]] = {name: [] for name in LATENCY_CASES}
    for index in range(rounds):
        for name, (sink, deliver, extra) in LATENCY_CASES.items():
            with backend_elsewhere(backend_pid, name in BACKEND_ELSEWHERE_CASES):
                results[name].append(
                    bench_runtime_producer(
                        workdir,
                        url,
                        count,
                        sink,
                        GOALS['enqueue_per_sec'],
                        deliver,
                        tag=f'{name}-{index}',
                        extra_params=extra,
                    )
                )
            results[name][-1]['loadavg_1m'] = round(os.getloadavg()[0], 2)
    merged = {}
    for name, runs in results.items():
        merged[name] = {
            **runs[0],
            **{k: _median([r.get(k) for r in runs]) for k in LATENCY_KEYS},
            'rounds': [{k: r.get(k) for k in (*LATENCY_KEYS, 'loadavg_1m')} for r in runs],
        }
    return merged


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def producer_latency(runtime: dict) -> dict:
    """The one producer's enqueue latency at an offered 10,000/s, with and without the forwarder
    delivering meanwhile (same run, medians over alternating rounds): commit = one sink call until
    its packets are accepted, accept = one packet from its emission to its commit."""
    if not runtime:
        return {}
    cases = {
        'without_delivery': 'info_batched_offered_10000_per_sec_no_delivery',
        'with_concurrent_delivery': 'batched_offered_10000_per_sec',
        'with_concurrent_delivery_from_own_process': 'batched_offered_10000_per_sec_delivery_process',
        'with_concurrent_delivery_from_own_process_one_connection': (
            'batched_offered_10000_per_sec_delivery_process_one_connection'
        ),
        'info_with_delivery_from_own_process_nice_0': 'info_offered_10000_per_sec_delivery_process_nice_0',
        'info_with_delivery_from_own_process_backend_sched_idle': (
            'info_offered_10000_per_sec_delivery_process_backend_sched_idle'
        ),
        'info_with_delivery_threads_niced': 'info_offered_10000_per_sec_delivery_threads_niced',
        'baseline_with_delivery_settle_alone': 'baseline_batched_offered_10000_per_sec_settle_alone',
        'baseline_with_delivery_checkpoints_inline': 'baseline_offered_10000_per_sec_checkpoints_inline',
    }
    result = {
        case: {**{k: runtime[name].get(k) for k in LATENCY_KEYS}, 'rounds': runtime[name]['rounds']}
        for case, name in cases.items()
    }
    result['paired_rounds_own_process_vs_threads'] = paired(
        result['with_concurrent_delivery_from_own_process']['rounds'],
        result['with_concurrent_delivery']['rounds'],
    )
    result['paired_rounds_own_process_vs_threads_p50'] = paired(
        result['with_concurrent_delivery_from_own_process']['rounds'],
        result['with_concurrent_delivery']['rounds'],
        'commit_p50_ms',
    )
    result['paired_rounds_own_process_vs_threads_gil_wait'] = paired(
        result['with_concurrent_delivery_from_own_process']['rounds'],
        result['with_concurrent_delivery']['rounds'],
        'gil_wait_us_per_wake',
    )
    return result


def paired(ours: list[dict], theirs: list[dict], key: str = 'commit_p99_ms') -> dict:
    """Round by round (each pair ran back to back, under about the same load): in how many rounds
    `ours` had the lower figure, and the median of the ratios -- steadier on a shared machine than
    comparing two medians."""
    pairs = [(a.get(key), b.get(key)) for a, b in zip(ours, theirs, strict=False)]
    pairs = [(a, b) for a, b in pairs if a is not None and b]
    return {
        'figure': key,
        'rounds_lower': f'{sum(a < b for a, b in pairs)} of {len(pairs)}',
        'median_ratio': round(statistics.median(a / b for a, b in pairs), 2) if pairs else None,
    }


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


#: The reference backend (uvicorn) as shipped (httptools parser on uvloop) and with what it would be
#: without the two C extras: httptools on asyncio, h11 (pure Python) on asyncio (the control plane's
#: setup): (--http, --loop). The measurement behind the choice.
BACKEND_SETUPS = {
    'httptools_uvloop': ('httptools', 'uvloop'),
    'httptools_asyncio': ('httptools', 'asyncio'),
    'h11_asyncio': ('h11', 'asyncio'),
}


def process_cpu_sec(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc): CPU per event is what a
    shared machine's load changes least."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def start_backend(workdir: Path, setup: str = 'httptools_uvloop') -> tuple[subprocess.Popen, str]:
    http, loop = BACKEND_SETUPS[setup]
    cmd = [
        sys.executable,
        '-m',
        'schnitzel_stream_ros.delivery.backend',
        '--http',
        http,
        '--loop',
        loop,
        '--port',
        str(free_port()),
        '--db',
        str(workdir / f'backend-{setup}.db'),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        raise SystemExit('bench: the reference backend did not start')
    return proc, json.loads(proc.stdout.readline())['url']


def serve_two_segments(port: int) -> None:
    """A backend as many small real ones are: Python's http.server, answer written in two segments
    (headers, then body), no TCP_NODELAY. Counts nothing; answers 201 to every POST."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def do_POST(self) -> None:  # http.server's naming
            self.rfile.read(int(self.headers.get('Content-Length', 0)))
            body = b'{"status":"created"}'
            self.send_response(201)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
    print(json.dumps({'url': f'http://127.0.0.1:{port}'}), flush=True)
    server.serve_forever()


def start_two_segment_backend() -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), '--serve-two-segments', str(free_port())]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        raise SystemExit('bench: the two-segment backend did not start')
    return proc, json.loads(proc.stdout.readline())['url']


def bench_delivery_two_segments(workdir: Path, events: list[StreamPacket]) -> dict:
    """Default forwarder settings against the two-segment backend, with TCP_QUICKACK (as shipped)
    and, as the baseline, without it (the client before the fix: delayed ACKs stall each answer)."""
    from schnitzel_stream_ros.delivery import http_wire

    proc, url = start_two_segment_backend()
    shipped = http_wire._TCP_QUICKACK
    try:
        http_wire._TCP_QUICKACK = None
        baseline = bench_delivery(
            workdir, url, events[: max(200, len(events) // 20)], 'twoseg-noqa', ForwarderConfig()
        )
        http_wire._TCP_QUICKACK = shipped
        ours = bench_delivery(workdir, url, events, 'twoseg', ForwarderConfig())
        from_process = bench_delivery(workdir, url, events, 'twoseg-process', ForwarderConfig(), process=True)
        library = bench_delivery(
            workdir,
            url,
            events[: max(200, len(events) // 20)],
            'twoseg-urllib3',
            ForwarderConfig(),
            client='urllib3',
        )
    finally:
        http_wire._TCP_QUICKACK = shipped
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    return {
        'baseline_without_quickack': baseline,
        'default_with_quickack': ours,
        'delivery_process': from_process,
        'urllib3_client': library,
    }


class Urllib3JsonClient:
    """The forwarder's client interface over urllib3 (one kept-alive connection per worker), with
    the same verdicts: what the forwarder would ship if it used the library."""

    def __init__(self, target: HttpTarget) -> None:
        import urllib3

        from schnitzel_stream_ros.delivery.http_client import HttpJsonClient

        self._judge_with = HttpJsonClient(target)  # verdict rules and headers: the same as ours
        parts = urllib3.util.parse_url(target.url)
        self._pool = urllib3.HTTPConnectionPool(
            parts.host, parts.port, maxsize=1, block=True, timeout=target.timeout_sec, retries=False
        )
        self._path = parts.request_uri
        self._headers = dict(self._judge_with._base_headers)
        self._header_name = target.idempotency_header

    def post(self, body: bytes, key: str | None):
        import urllib3

        from schnitzel_stream_ros.delivery.http_client import PostResult, Verdict
        from schnitzel_stream_ros.delivery.http_wire import Response
        from schnitzel_stream_ros.delivery.idempotency_key import header_key

        headers = dict(self._headers)
        if key:
            headers[self._header_name] = header_key(key)
        started = time.monotonic()
        try:
            answer = self._pool.urlopen('POST', self._path, body=body, headers=headers, preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            return PostResult(Verdict.RETRY, None, str(exc)[:300], None, time.monotonic() - started)
        response = Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.data)
        return self._judge_with._judge(response, started)

    def close(self) -> None:
        self._pool.close()
        self._judge_with.close()


def bench_delivery(
    workdir: Path,
    url: str,
    events: list[StreamPacket],
    name: str,
    config: ForwarderConfig,
    client: str = 'ours',
    backend_pid: int | None = None,
    process: bool = False,
) -> dict:
    """Drain a pre-filled queue; `process`: from a delivery process (DurableForwarderSink's
    `delivery_process`), the clock starting once it runs."""
    path = workdir / f'deliver-{name}.db'
    queue = DurableQueue(path)
    for i in range(0, len(events), 1000):
        queue.enqueue_many(
            events[i : i + 1000], [f'{name}:{p.idempotency_key}' for p in events[i : i + 1000]]
        )
    target = HttpTarget(url + '/events')
    factory = (lambda: Urllib3JsonClient(target)) if client == 'urllib3' else None
    if process:
        from schnitzel_stream_ros.delivery.delivery_process import DeliveryProcess
        from schnitzel_stream_ros.plugin import resolve_params

        params = resolve_params(
            DurableForwarderSink,
            {
                'path': str(path),
                'url': url + '/events',
                'concurrency': config.concurrency,
                'batch_size': config.batch_size,
                'delivery_process': True,
            },
        )
        forwarder = DeliveryProcess(queue, target, config, params)
    else:
        forwarder = Forwarder(queue, target, config, client_factory=factory)
    cpu_before = process_cpu_sec(backend_pid) if backend_pid else 0.0
    started = time.perf_counter()
    forwarder.start()
    if process:
        assert forwarder.wait_ready(30.0), 'the delivery process did not start'
        started = time.perf_counter()
    drained = forwarder.wait_idle(600, poll_sec=0.005)
    elapsed = time.perf_counter() - started
    forwarder.stop()
    metrics = forwarder.metrics()
    queue.close()
    result = {
        'name': name,
        'delivery': 'own process' if process else 'threads',
        'client': client,
        'concurrency': config.concurrency,
        'batch_size': config.batch_size,
        'events': len(events),
        'drained': drained,
        'events_per_sec': round(len(events) / elapsed),
        'posted_total': metrics['posted_total'],
        'failed_total': metrics['failed_total'],
    }
    if backend_pid:
        used = process_cpu_sec(backend_pid) - cpu_before
        result['backend_cpu_us_per_event'] = round(used / max(1, metrics['posted_total']) * 1e6, 1)
    return result


def bench_backends(workdir: Path, events: list[StreamPacket], rounds: int = 2) -> dict:
    """The same backlog delivered (default forwarder) into the reference backend as shipped
    (uvicorn, httptools, uvloop) and in the other BACKEND_SETUPS, alternating, `rounds` times each:
    delivery rate and the backend's CPU per event."""
    servers = {name: start_backend(workdir, name) for name in BACKEND_SETUPS}
    runs: dict[str, list[dict]] = {name: [] for name in BACKEND_SETUPS}
    try:
        for index in range(rounds):
            for name, (proc, url) in servers.items():
                runs[name].append(
                    bench_delivery(
                        workdir, url, events, f'{name}-{index}', ForwarderConfig(), backend_pid=proc.pid
                    )
                )
    finally:
        for proc, _ in servers.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            'events_per_sec': [r['events_per_sec'] for r in results],
            'median_events_per_sec': round(statistics.median(r['events_per_sec'] for r in results)),
            'backend_cpu_us_per_event': [r['backend_cpu_us_per_event'] for r in results],
            'median_backend_cpu_us_per_event': statistics.median(
                r['backend_cpu_us_per_event'] for r in results
            ),
            'drained': all(r['drained'] for r in results),
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=40_000, help='events per enqueue measurement')
    parser.add_argument('--baseline-events', type=int, default=3_000)
    parser.add_argument('--producers', default='1,16,32,64')
    parser.add_argument('--deliver-events', type=int, default=20_000)
    parser.add_argument(
        '--runtime-events', type=int, default=40_000, help='events of the one-producer runtime run (0 = skip)'
    )
    parser.add_argument('--latency-rounds', type=int, default=2, help='rounds of the producer latency cases')
    parser.add_argument(
        '--backend-rounds', type=int, default=2, help='rounds of the backend setups comparison'
    )
    parser.add_argument('--serve-two-segments', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--dir', default=None, help='where the SQLite files go (default: a temp dir)')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='a short run (fewer events, 1 round each, producers 1,32): for a loaded machine or a smoke test',
    )
    parser.add_argument(
        '--only-latency',
        action='store_true',
        help='only the one producer at an offered 10,000/s in its cases (alternating rounds): the '
        'decisive comparison of delivery threads vs delivery from its own process, cheaply',
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.deliver_events, args.runtime_events = 10_000, 10_000, 20_000
        args.producers, args.latency_rounds, args.backend_rounds = '1,32', 1, 1
    if args.serve_two_segments:
        serve_two_segments(args.serve_two_segments)
        return 0
    if args.runtime_events:
        from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

        os.environ['SCHNITZEL_STREAM_PLUGIN_ALLOWLIST'] = BENCH_MODULE  # the bench's own plugins
        os.environ['RCUTILS_LOGGING_USE_STDOUT'] = '0'  # stdout is the JSON result
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        lease = lease_domain()
        env = localhost_env(lease.domain_id)
        os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')})
    if args.only_latency:
        return latency_only(args)
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
            runtime: dict = {}
            if args.runtime_events:
                runtime = {
                    'baseline_per_packet': bench_runtime_producer(
                        workdir, url, min(args.runtime_events, args.baseline_events * 2), 'TimedSinkPerPacket'
                    ),
                    'batched_unthrottled': bench_runtime_producer(
                        workdir, url, args.runtime_events, 'TimedSink'
                    ),
                }
                runtime.update(bench_producer_latency(
                    workdir, url, args.runtime_events, args.latency_rounds, backend.pid))
            deliver_events = events[: args.deliver_events]
            delivery_baseline = bench_delivery(
                workdir,
                url,
                deliver_events[: args.deliver_events // 4],
                'baseline',
                ForwarderConfig(concurrency=1, batch_size=1),
            )
            delivery_default = bench_delivery(workdir, url, deliver_events, 'default', ForwarderConfig())
            delivery_process = bench_delivery(
                workdir, url, deliver_events, 'process', ForwarderConfig(), process=True
            )
            delivery_urllib3 = bench_delivery(
                workdir, url, deliver_events, 'urllib3', ForwarderConfig(), client='urllib3'
            )
            delivery_ours_again = bench_delivery(
                workdir, url, deliver_events, 'ours-again', ForwarderConfig()
            )
            delivery_wide = bench_delivery(
                workdir, url, deliver_events, 'wide', ForwarderConfig(concurrency=8, batch_size=256)
            )
        finally:
            os.killpg(backend.pid, signal.SIGTERM)
            backend.wait(10)
        two_segments = bench_delivery_two_segments(workdir, events[: args.deliver_events])
        backends = bench_backends(workdir, events[: args.deliver_events], rounds=args.backend_rounds)

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
        'runtime_one_producer_into_durable_forwarder_sink': runtime,
        'producer_enqueue_latency_one_producer': producer_latency(runtime),
        'delivery': {
            'backend': 'reference backend, uvicorn + httptools + uvloop (own process)',
            'baseline_1_worker_1_row': delivery_baseline,
            'default': delivery_default,
            'delivery_process': delivery_process,
            'default_with_urllib3_client': delivery_urllib3,
            'default_again_after_urllib3': delivery_ours_again,
            'concurrency_8_batch_256': delivery_wide,
            'two_segment_backend': two_segments,
            'backend_setups': backends,
        },
        'goals': GOALS,
        'goals_met': {
            'enqueue_per_sec_concurrent': best_enqueue['events_per_sec'] >= GOALS['enqueue_per_sec'],
            'enqueue_per_sec_and_p99_same_run': bool(
                best_within and best_within['events_per_sec'] >= GOALS['enqueue_per_sec']
            ),
            'enqueue_many_per_sec': many['events_per_sec'] >= GOALS['enqueue_per_sec'],
            'deliver_per_sec': best_delivery['events_per_sec'] >= GOALS['deliver_per_sec'],
            **{
                f'deliver_per_sec_into_backend_{name}'
                if name == 'httptools_uvloop'
                else f'info_deliver_per_sec_into_backend_{name}': figures['median_events_per_sec']
                >= GOALS['deliver_per_sec']
                for name, figures in backends.items()
            },
            'enqueue_p99_with_concurrent_delivery': bool(
                runtime
                and runtime['batched_offered_10000_per_sec'].get('commit_p99_ms', 1e9)
                <= GOALS['enqueue_p99_ms']
            ),
            'deliver_two_segment_per_sec': two_segments['default_with_quickack']['events_per_sec']
            >= GOALS['deliver_two_segment_per_sec'],
            # delivery from its own process (DurableForwarderSink `delivery_process: true`)
            'enqueue_p99_with_concurrent_delivery_from_own_process': bool(
                runtime
                and runtime['batched_offered_10000_per_sec_delivery_process'].get('commit_p99_ms', 1e9)
                <= GOALS['enqueue_p99_ms']
            ),
            'one_producer_sustains_10000_per_sec_with_commit_p99_delivery_from_own_process': bool(
                runtime and sustains(runtime['batched_offered_10000_per_sec_delivery_process'])
            ),
            'one_producer_sustains_10000_per_sec_with_commit_p99_while_delivering_5000_per_sec': bool(
                runtime and sustains_while_delivering(
                    runtime['batched_offered_10000_per_sec_delivery_process_one_connection'])
            ),
            'deliver_per_sec_from_own_process': (
                delivery_process['events_per_sec'] >= GOALS['deliver_per_sec']
            ),
            'deliver_two_segment_per_sec_from_own_process': (
                two_segments['delivery_process']['events_per_sec'] >= GOALS['deliver_two_segment_per_sec']
            ),
            'one_producer_runtime_per_sec': bool(
                runtime and runtime['batched_unthrottled']['accepted_per_sec'] >= GOALS['enqueue_per_sec']
            ),
            # issue 11's acceptance line as written: the producer's rate and p99 (its delivery is
            # measured on its own, above); the keys after this one ask for both at once
            'one_producer_runtime_sustains_10000_per_sec_with_commit_p99_delivery_not_running': bool(
                runtime and sustains(runtime['info_batched_offered_10000_per_sec_no_delivery'])
            ),
            'one_producer_runtime_sustains_10000_per_sec_with_commit_p99': bool(
                runtime and sustains(runtime['batched_offered_10000_per_sec'])
            ),
        },
    }
    result['summary'] = summary(result, runtime, best_delivery, two_segments, backends, delivery_process)
    print(json.dumps(result, indent=2))
    return 0


def summary(
    result: dict, runtime: dict, best_delivery: dict, two_segments: dict, backends: dict, from_process: dict
) -> dict:
    """The decisive figures next to their goals (the last key of the output, read first)."""
    latency = result['producer_enqueue_latency_one_producer']
    shipped = latency.get('with_concurrent_delivery', {})
    own = latency.get('with_concurrent_delivery_from_own_process', {})
    away = latency.get('info_with_delivery_from_own_process_backend_sched_idle', {})
    one = latency.get('with_concurrent_delivery_from_own_process_one_connection', {})
    met = result['goals_met']
    shown = (
        'accepted_per_sec',
        'commit_p50_ms',
        'commit_p99_ms',
        'accept_p99_ms',
        'delivered_meanwhile_per_sec',
        'producer_process_cores',
        'gil_wait_us_per_wake',
    )
    return {
        'verdict_commit_p99_while_delivering': (
            _verdict(met, shipped, own, away, one) if runtime else 'not measured'
        ),
        'loadavg_1m_at_end': round(os.getloadavg()[0], 2),
        'one_producer_accepted_per_sec_unthrottled': runtime.get('batched_unthrottled', {}).get(
            'accepted_per_sec'
        ),
        'one_producer_at_10000_per_sec_with_delivery_threads': {k: shipped.get(k) for k in shown},
        'one_producer_at_10000_per_sec_with_delivery_from_own_process': {k: own.get(k) for k in shown},
        'one_producer_at_10000_per_sec_with_delivery_from_own_process_one_connection': {
            k: one.get(k) for k in shown
        },
        'same_run_other_cases_commit_p99_ms': {
            case: figures.get('commit_p99_ms')
            for case, figures in latency.items()
            if case not in ('with_concurrent_delivery', 'with_concurrent_delivery_from_own_process')
            and 'rounds' in figures
        },
        'commit_p99_own_process_vs_threads_paired': latency.get('paired_rounds_own_process_vs_threads'),
        'commit_p50_own_process_vs_threads_paired': latency.get('paired_rounds_own_process_vs_threads_p50'),
        'gil_wait_own_process_vs_threads_paired': latency.get(
            'paired_rounds_own_process_vs_threads_gil_wait'
        ),
        'delivery_per_sec_reference_backend': best_delivery['events_per_sec'],
        'delivery_per_sec_reference_backend_from_own_process': from_process['events_per_sec'],
        'delivery_into_backend_setups_per_sec_and_backend_cpu_us_per_event': {
            name: [figures['median_events_per_sec'], figures['median_backend_cpu_us_per_event']]
            for name, figures in backends.items()
        },
        'delivery_per_sec_two_segment_backend': two_segments['default_with_quickack']['events_per_sec'],
        'delivery_per_sec_two_segment_backend_from_own_process': two_segments['delivery_process'][
            'events_per_sec'
        ],
        'goals': GOALS,
        'goals_met': result['goals_met'],
    }


def latency_only(args: argparse.Namespace) -> int:
    """`--only-latency`: the producer latency cases alone, with their verdict."""
    with tempfile.TemporaryDirectory(dir=args.dir, prefix='queue-bench-') as tmp:
        workdir = Path(tmp)
        load_start = round(os.getloadavg()[0], 2)
        backend, url = start_backend(workdir)
        try:
            runtime = bench_producer_latency(
                workdir, url, args.runtime_events, args.latency_rounds, backend.pid)
        finally:
            os.killpg(backend.pid, signal.SIGTERM)
            backend.wait(10)
    latency = producer_latency(runtime)
    threads = runtime['batched_offered_10000_per_sec']
    own = runtime['batched_offered_10000_per_sec_delivery_process']
    away = runtime['info_offered_10000_per_sec_delivery_process_backend_sched_idle']
    one = runtime['batched_offered_10000_per_sec_delivery_process_one_connection']
    alone = runtime['info_batched_offered_10000_per_sec_no_delivery']
    met = {
        # issue 11's acceptance line as written (delivery is measured on its own in the full run)
        'one_producer_runtime_sustains_10000_per_sec_with_commit_p99_delivery_not_running': sustains(alone),
        'one_producer_sustains_10000_per_sec_with_commit_p99_while_delivering_5000_per_sec': (
            sustains_while_delivering(one)
        ),
        'one_producer_runtime_sustains_10000_per_sec_with_commit_p99': sustains(threads),
        'one_producer_sustains_10000_per_sec_with_commit_p99_delivery_from_own_process': sustains(own),
        # info: the backend standing for another host (SCHED_IDLE), so only the edge's own work competes
        'info_the_same_with_the_backend_at_sched_idle': sustains(away),
    }
    result = {
        'bench': 'queue_bench --only-latency',
        'machine': {
            'cpus': os.cpu_count(),
            'python': platform.python_version(),
            'loadavg_1m_at_start': load_start,
        },
        'events_per_case': args.runtime_events,
        'rounds': args.latency_rounds,
        'producer_enqueue_latency_one_producer': latency,
        'summary': {
            'verdict_commit_p99_while_delivering': _verdict(met, threads, own, away, one),
            'commit_p99_own_process_vs_threads_paired': latency['paired_rounds_own_process_vs_threads'],
            'commit_p50_own_process_vs_threads_paired': latency['paired_rounds_own_process_vs_threads_p50'],
            'gil_wait_own_process_vs_threads_paired': latency[
                'paired_rounds_own_process_vs_threads_gil_wait'
            ],
            'loadavg_1m_at_end': round(os.getloadavg()[0], 2),
            'goals_met': met,
        },
    }
    print(json.dumps(result, indent=2))
    return 0


def sustains(case: dict) -> bool:
    """The producer's goals: >= 97 % of the offered 10,000 accepted/s, commit p99 <= 5 ms."""
    return (
        case.get('accepted_per_sec', 0) >= 0.97 * GOALS['enqueue_per_sec']
        and case.get('commit_p99_ms', 1e9) <= GOALS['enqueue_p99_ms']
    )


def _all_three(row: dict) -> bool:
    return sustains(row) and (row.get('delivered_meanwhile_per_sec') or 0) >= GOALS['deliver_per_sec']


def rounds_at_once(case: dict) -> str:
    """In how many rounds issue 11's three goals held together (`k of n`)."""
    rounds = case.get('rounds') or []
    return f'{sum(_all_three(r) for r in rounds)} of {len(rounds)}'


def sustains_while_delivering(case: dict) -> bool:
    """Issue 11's goals at once: >= 10,000 accepted/s with commit p99 <= 5 ms while >= 5,000/s are
    delivered to the backend meanwhile -- all three in the same round, in most rounds (not three
    medians taken apart)."""
    rounds = (case or {}).get('rounds') or []
    return bool(rounds) and 2 * sum(_all_three(r) for r in rounds) > len(rounds)


def _verdict(met: dict, threads: dict, own: dict, away: dict, one: dict) -> str:
    """One sentence: is the commit p99 goal met while delivering, in which variant, under what load."""
    load = round(os.getloadavg()[0], 1)
    goal = GOALS['enqueue_p99_ms']
    figures = (
        f"commit p99 {one.get('commit_p99_ms')} ms with delivery from its own process on one pipelined "
        f"connection ({one.get('delivered_meanwhile_per_sec')} delivered/s meanwhile; goal >= "
        f"{GOALS['deliver_per_sec']}/s; all three goals in the same round in {rounds_at_once(one)} "
        f"rounds), {threads.get('commit_p99_ms')} ms with delivery threads in the "
        f"producer's process, {own.get('commit_p99_ms')} ms with delivery from its own process on the "
        f"default 4 connections ({own.get('delivered_meanwhile_per_sec')} delivered/s), the backend on the "
        f"same cores (goal <= {goal:g} ms; medians of the rounds; 1-minute load average {load} at the end); "
        f"info: {away.get('commit_p99_ms')} ms from its own process with the backend at SCHED_IDLE "
        f"(standing for another host; {away.get('delivered_meanwhile_per_sec')} delivered/s meanwhile)"
    )
    if met['one_producer_sustains_10000_per_sec_with_commit_p99_while_delivering_5000_per_sec']:
        return 'MET with delivery from its own process on one pipelined connection: ' + figures
    if met['one_producer_sustains_10000_per_sec_with_commit_p99_delivery_from_own_process']:
        return 'MET with delivery from its own process: ' + figures
    if met['one_producer_runtime_sustains_10000_per_sec_with_commit_p99']:
        return 'MET with delivery threads: ' + figures
    return 'NOT MET in this run: ' + figures


if __name__ == '__main__':
    sys.exit(main())
