#!/usr/bin/env python3
"""Long fault soak of durable delivery: >= 100,000 events through kills, chaos and a backend outage.

    python scripts/fault_soak.py                       # full: 100,000 events, 60 s outage, 20 kills
    python scripts/fault_soak.py --events 5000 --outage-sec 4 --scale 0.25 --kills 6   # quick check

Set-up (all on 127.0.0.1): producer+queue+forwarder child processes (testing/delivery_child.py)
-> chaos proxy (in this process) -> reference backend (its own process, SQLite store).
Timeline (seconds x --scale; production runs throughout, at a rate that spreads --events over it):
  proxy   delay 200 ms, reset, blackhole, refuse          (each a few seconds)
  backend 5xx, 400 for a few events, 429 + Retry-After, slow beyond the client timeout
  backend SIGKILLed and kept down for --outage-sec (not scaled), then restarted on its store
  kill -9 of the producer/queue process at --kills random moments; each restart resumes
  hostile idempotency keys throughout (every 50 events: non-Latin-1, CR/LF + a header, 8 KB)
  a backend that answers in two segments (Nagle on) for a few seconds
  in the middle of the outage: kill -9, one 4 KB page in the middle of the queue file overwritten,
    restart (the damaged file is quarantined and its readable rows salvaged)
  after the outage: an auth outage (401 for --auth-outage-sec, not scaled), then the token is fixed
At the end dead letters (the 400s) are re-driven, a last child drains the queue, and the oracle
compares the accepted log with the backend's store. Prints one JSON object:
  accepted, delivered, duplicates, dead_lettered, lost (must be at most the rows that were on the
  damaged page: salvage_unreadable), auth_dead_letters (must be 0),
  recovery_sec_after_backend_returns (first delivery after the outage; goal <= 5 s), and more.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from schnitzel_stream_ros.delivery import deadletter_cli
from schnitzel_stream_ros.testing import chaos_proxy
from schnitzel_stream_ros.testing.delivery_child import logged_key, read_accepted
from schnitzel_stream_ros.testing.processes import python_cmd, start, stop

RUN_ID = 'soak'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def http_json(url: str, data: dict | None = None, timeout: float = 2.0) -> dict:
    request = urllib.request.Request(
        url,
        data=None if data is None else json.dumps(data).encode(),
        headers={'Content-Type': 'application/json'},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class Backend:
    """The reference backend as a process that can be killed and brought back on the same store."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.db = workdir / 'backend.db'
        self.url = f'http://127.0.0.1:{self.port}'
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = python_cmd(
            '-m', 'schnitzel_stream_ros.delivery.backend', '--port', str(self.port), '--db', str(self.db)
        )
        self.proc = start(
            cmd, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        if not ready:
            stop(self.proc)  # nothing left behind when the backend never came up
            self.proc = None
            raise SystemExit('fault_soak: backend did not start')
        self.proc.stdout.readline()

    def kill(self) -> None:
        if self.proc is not None:
            stop(self.proc, sig=signal.SIGKILL)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def control(self, **fields) -> None:
        http_json(self.url + '/control', fields)

    def stats(self) -> dict:
        return http_json(self.url + '/stats')


class Producer:
    """The producer/queue/forwarder child; restarted after every kill, resuming the sequence."""

    def __init__(self, workdir: Path, url: str, total: int, rate: float) -> None:
        self.queue = workdir / 'queue.db'
        self.log = workdir / 'accepted.txt'
        self.url = url
        self.total = total
        self.rate = rate
        self.proc: subprocess.Popen | None = None
        self.kills = 0
        self.unexpected_exits = 0
        self.damaged_at_size = 0
        self.damaged_leaves = 0

    def next_index(self) -> int:
        # a hashed 8 KB key has no index in it: skipped (at worst one event is offered again,
        # a no-op for the queue)
        keys = read_accepted(str(self.log))
        tails = (k.rsplit(':', 1)[-1] for k in keys)
        return max((int(t) for t in tails if t.isdigit()), default=-1) + 1

    def args(self, first: int) -> list[str]:
        return [
            '-m',
            'schnitzel_stream_ros.testing.delivery_child',
            '--queue',
            str(self.queue),
            '--url',
            self.url,
            '--run-id',
            RUN_ID,
            '--accepted-log',
            str(self.log),
            '--start',
            str(first),
            '--events',
            str(self.total),
            '--rate',
            str(self.rate),
            '--timeout-sec',
            '1.0',
            '--breaker-open-sec',
            '0.5',
            '--concurrency',
            '4',
            '--hostile-keys',
        ]

    def start(self) -> None:
        self.proc = start(
            python_cmd(*self.args(self.next_index())),
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self, damage_page: bool = False) -> None:
        if self.proc is not None:
            stop(self.proc, sig=signal.SIGKILL)
            self.kills += 1
        if damage_page:
            # the page in the middle of the backlog: a leaf of the packets table (after moving
            # the WAL into the file, so the damaged page is the only copy of its rows)
            conn = sqlite3.connect(self.queue)
            try:
                conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchall()
                page_size = conn.execute('PRAGMA page_size').fetchone()[0]
                leaves = [
                    r[0]
                    for r in conn.execute(
                        "SELECT pageno FROM dbstat WHERE name = 'packets' AND pagetype = 'leaf' "
                        'ORDER BY pageno'
                    )
                ]
            finally:
                conn.close()
            self.damaged_at_size = self.queue.stat().st_size
            if leaves:
                self.damaged_leaves = len(leaves)
                rng = random.Random(11)
                with open(self.queue, 'r+b') as handle:
                    handle.seek((leaves[len(leaves) // 2] - 1) * page_size)
                    handle.write(bytes(rng.randrange(256) for _ in range(page_size)))
        self.start()

    def watch(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits += 1
            self.start()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def drain(self, timeout: float) -> dict:
        done = subprocess.run(
            python_cmd(*self.args(self.total), '--exit-when-idle', '--idle-timeout-sec', str(timeout)),
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=timeout + 60,
        )
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {'idle': False, 'stderr': done.stderr[-500:]}


def queue_depth(path: Path) -> int:
    try:
        conn = sqlite3.connect(f'file:{path}?mode=ro', uri=True, timeout=1)
        try:
            row = conn.execute("SELECT value FROM queue_counters WHERE name = 'depth_rows'").fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()
    except sqlite3.Error:
        return -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=100_000)
    parser.add_argument('--outage-sec', type=float, default=60.0)
    parser.add_argument('--kills', type=int, default=20)
    parser.add_argument('--auth-outage-sec', type=float, default=60.0, help='401 for this long (not scaled)')
    parser.add_argument(
        '--scale', type=float, default=1.0, help='stretch the chaos timeline (not the outage)'
    )
    parser.add_argument('--seed', type=int, default=6)
    parser.add_argument('--workdir', default=None, help='keep the files here (default: a temp dir, removed)')
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    def s(seconds: float) -> float:
        return seconds * args.scale

    keep = args.workdir is not None
    workdir = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix='fault-soak-'))
    workdir.mkdir(parents=True, exist_ok=True)

    outage_at = s(36)
    back_at = outage_at + args.outage_sec
    auth_at = back_at + s(5)
    auth_fixed_at = auth_at + args.auth_outage_sec
    production_sec = auth_fixed_at + s(20)
    rate = args.events / production_sec

    backend = Backend(workdir)
    proxy = None
    producer = None

    schedule: list[tuple[float, str, object]] = [
        (s(5), 'backend', {'mode': 'two_segments'}),
        (s(9), 'backend', {'mode': 'ok'}),
        (s(10), 'proxy', ('delay', 200)),
        (s(14), 'proxy', ('reset', 0)),
        (s(17), 'proxy', ('blackhole', 0)),
        (s(20), 'proxy', ('refuse', 0)),
        (s(23), 'proxy', ('pass', 0)),
        (s(25), 'backend', {'mode': '5xx', 'status': 503}),
        (s(27), 'backend', {'mode': 'ok'}),
        (s(28), 'backend', {'mode': '400', 'count': 5}),
        (s(30), 'backend', {'mode': '429', 'retry_after': 1}),
        (s(32), 'backend', {'mode': 'slow', 'delay_ms': 1500}),
        (s(35), 'backend', {'mode': 'ok'}),
        (outage_at, 'outage', None),
        (outage_at + args.outage_sec / 2, 'damage', None),
        (back_at, 'return', None),
        (auth_at, 'backend', {'mode': '4xx', 'status': 401}),
        (auth_fixed_at, 'backend', {'mode': 'ok'}),
    ]
    kill_times = sorted(rng.uniform(s(2), production_sec) for _ in range(args.kills))
    phases: list[str] = []
    recovery_sec = drained_sec = None
    unique_at_return = depth_at_return = 0
    returned_at = None
    started = time.monotonic()
    try:  # everything started from here on is stopped in the finally, whatever fails
        backend.start()
        proxy = chaos_proxy.serve_in_thread('127.0.0.1', backend.port)
        producer = Producer(workdir, f'http://127.0.0.1:{proxy.port}/events', args.events, rate)
        producer.start()
        while True:
            now = time.monotonic() - started
            while schedule and schedule[0][0] <= now:
                _, what, arg = schedule.pop(0)
                phases.append(f'{now:.1f}s {what} {arg}')
                if what == 'proxy':
                    proxy.set_mode(*arg)  # type: ignore[misc]
                elif what == 'backend':
                    backend.control(**arg)  # type: ignore[arg-type]
                elif what == 'outage':
                    backend.kill()
                elif what == 'damage':
                    producer.kill(damage_page=True)
                elif what == 'return':
                    backend.start()
                    returned_at = time.monotonic()
                    unique_at_return = backend.stats()['unique']
                    depth_at_return = queue_depth(producer.queue)
            while kill_times and kill_times[0] <= now:
                kill_times.pop(0)
                producer.kill()
            producer.watch()
            if returned_at is not None and recovery_sec is None:
                try:
                    if backend.stats()['unique'] > unique_at_return:
                        recovery_sec = time.monotonic() - returned_at
                except OSError:
                    pass
            if returned_at is not None and drained_sec is None:
                depth = queue_depth(producer.queue)
                if 0 <= depth <= max(200, depth_at_return // 100):
                    drained_sec = time.monotonic() - returned_at
            produced_all = not schedule and not kill_times and producer.next_index() >= args.events
            if produced_all and (drained_sec is not None or time.monotonic() - returned_at > 600):
                break  # (returned_at is set: the outage is part of the schedule)
            if now > production_sec * 3 + 120:
                raise SystemExit('fault_soak: production did not finish in time')
            time.sleep(0.02)
        producer.stop()
        proxy.set_mode('pass')
        backend.control(mode='ok')
        conn = sqlite3.connect(producer.queue)
        auth_dead = conn.execute(
            'SELECT COUNT(*) FROM dead_letters WHERE http_status IN (401, 403, 404)'
        ).fetchone()[0]
        conn.close()
        redriven = 0
        with open(os.devnull, 'w') as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                deadletter_cli.main(['redrive', str(producer.queue), '--all'])
            finally:
                sys.stdout = stdout
        conn = sqlite3.connect(producer.queue)
        redriven = conn.execute("SELECT value FROM queue_counters WHERE name = 'redriven_total'").fetchone()[
            0
        ]
        conn.close()
        final = producer.drain(timeout=600)
    finally:
        if producer is not None:
            producer.stop()
        if proxy is not None:
            proxy.stop()
        backend.stop()
    duration = time.monotonic() - started

    conn = sqlite3.connect(backend.db)
    backend_keys = {r[0] for r in conn.execute('SELECT idempotency_key FROM events')}
    counters = dict(conn.execute('SELECT name, value FROM backend_counters').fetchall())
    conn.close()
    conn = sqlite3.connect(producer.queue)
    dead_left = {r[0] for r in conn.execute('SELECT idempotency_key FROM dead_letters')}
    queue_left = conn.execute('SELECT COUNT(*) FROM packets').fetchone()[0]
    ledger = dict(conn.execute('SELECT name, value FROM queue_counters').fetchall())
    incidents = [json.loads(d) for (d,) in conn.execute('SELECT detail FROM queue_incidents')]
    conn.close()
    unreadable = sum(i.get('salvaged_unreadable', 0) for i in incidents)
    accepted = set(read_accepted(str(producer.log)))
    generated = {logged_key(RUN_ID, i, hostile=True) for i in range(args.events)}
    lost = accepted - backend_keys - dead_left
    result = {
        'events': args.events,
        'accepted': len(accepted),
        'accepted_unlogged': len(backend_keys - accepted),
        'delivered': len(backend_keys & generated),
        'duplicates': counters.get('duplicates', 0),
        'total_posts': counters.get('total_posts', 0),
        'faulted_posts': counters.get('faulted_posts', 0),
        'dead_lettered': ledger.get('dead_letter_total', 0),
        'dead_letters_redriven': redriven,
        'dead_letters_left': len(dead_left),
        'lost': len(lost),
        'lost_sample': sorted(lost)[:10],
        'damaged_page_at_file_size': producer.damaged_at_size,
        'backlog_leaf_pages_when_damaged': producer.damaged_leaves,
        'quarantined_files': len(incidents),
        'salvaged_rows': sum(i.get('salvaged_rows', 0) for i in incidents),
        'salvage_unreadable': unreadable,
        'auth_outage_sec': args.auth_outage_sec,
        'auth_dead_letters': auth_dead,
        'hostile_keys_delivered': len(
            {logged_key(RUN_ID, i, hostile=True) for i in range(args.events) if i % 50 in (7, 17, 27)}
            & backend_keys
        ),
        'invented': len(backend_keys - generated),
        'queue_left': queue_left,
        'kills': producer.kills,
        'unexpected_child_exits': producer.unexpected_exits,
        'outage_sec': args.outage_sec,
        'recovery_sec_after_backend_returns': None if recovery_sec is None else round(recovery_sec, 3),
        'backlog_at_return': depth_at_return,
        'backlog_drained_sec_after_backend_returns': None if drained_sec is None else round(drained_sec, 3),
        'final_drain_idle': final.get('idle'),
        'production_rate_per_sec': round(rate, 1),
        'duration_sec': round(duration, 1),
        'phases': phases,
        'workdir': str(workdir) if keep else None,
    }
    print(json.dumps(result, indent=2))
    if not keep:
        for path in sorted(workdir.iterdir()):
            path.unlink()
        workdir.rmdir()
    ok = (
        result['lost'] <= unreadable  # only rows that sat on the overwritten page may be gone
        and result['invented'] == 0
        and result['queue_left'] == 0
        and result['auth_dead_letters'] == 0
    )
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
