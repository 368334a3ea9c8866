"""Fault suite: network chaos, backend outage, kill -9 of the producer+queue process, backlog replay.

Oracle everywhere: every accepted event is at the backend (unique keys ⊇ accepted), nothing else
is, the queue is empty and no dead letters are left. Duplicates are allowed and counted.
Real processes and sockets on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request

import pytest

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.http_client import HttpTarget
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.testing import chaos_proxy
from schnitzel_stream_ros.testing.delivery_child import read_accepted
from schnitzel_stream_ros.testing.processes import python_cmd, start, stop

pytestmark = pytest.mark.integration

FAST = dict(backoff=Backoff(base_sec=0.05, cap_sec=0.5), breaker_open_sec=0.2, idle_poll_sec=0.05)


def events(n: int, prefix: str) -> list[StreamPacket]:
    return [
        StreamPacket.new('event', 'cam0', {'i': i}, meta={'idempotency_key': f'{prefix}{i}'})
        for i in range(n)
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def http_json(url: str, data: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=None if data is None else json.dumps(data).encode(),
        headers={'Content-Type': 'application/json'},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def backend_keys(base_url: str) -> set[str]:
    keys: set[str] = set()
    after = 0
    while True:
        page = http_json(f'{base_url}/events?limit=10000&after={after}')
        keys.update(e['key'] for e in page['events'])
        if not page['events']:
            return keys
        after = page['next_after']


def start_backend_process(port: int, db) -> tuple[subprocess.Popen, str]:
    proc = start(
        python_cmd('-m', 'schnitzel_stream_ros.delivery.backend', '--port', str(port), '--db', str(db)),
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        stop(proc)
        raise AssertionError('backend process did not start listening within 15 s')
    line = proc.stdout.readline()
    return proc, json.loads(line)['url']


def wait_until(predicate, timeout: float = 30.0, what: str = 'condition') -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f'timed out waiting for {what}')


# -- chaos between forwarder and backend --------------------------------------------------------


@pytest.mark.parametrize(
    ('mode', 'delay_ms', 'must_fail'),
    [
        ('pass', 0, False),
        ('delay', 25, False),  # slower, below the timeout: no failures
        ('delay', 900, True),  # above the 0.4 s timeout: timeouts, retries, duplicates
        ('blackhole', 0, True),
        ('reset', 0, True),
        ('refuse', 0, True),
    ],
)
def test_chaos_proxy_modes_lose_nothing(tmp_path, mode, delay_ms, must_fail):
    backend = serve_in_thread()
    proxy = chaos_proxy.serve_in_thread('127.0.0.1', backend.port)
    queue = DurableQueue(tmp_path / 'queue.db')
    forwarder = Forwarder(
        queue,
        HttpTarget(f'http://127.0.0.1:{proxy.port}/events', timeout_sec=0.4 if must_fail else 5.0),
        ForwarderConfig(concurrency=2, batch_size=16, **FAST),
    ).start()
    try:
        queue.enqueue_many(events(100, 'before-'))
        assert forwarder.wait_idle(20)
        proxy.set_mode(mode, delay_ms)
        accepted_during = queue.enqueue_many(events(100, 'during-'))
        if must_fail:
            wait_until(lambda: forwarder.metrics()['failed_total'] > 0, what=f'{mode} to bite')
        else:
            assert forwarder.wait_idle(30)
        proxy.set_mode('pass')
        assert forwarder.wait_idle(30)
        metrics = forwarder.metrics()
    finally:
        forwarder.stop()
        queue.close()
        proxy.stop()
    keys = backend.keys()
    stats = backend.stats()
    backend.stop()
    accepted = {f'before-{i}' for i in range(100)} | {f'during-{i}' for i in range(100)}
    assert len(accepted_during) == 100
    assert keys == accepted  # nothing lost, nothing invented
    assert stats['unique'] == 200
    assert metrics['dead_letter_total'] == 0
    if must_fail:
        assert metrics['failed_total'] > 0
    else:
        assert metrics['failed_total'] == 0 and stats['duplicates'] == 0


def test_chaos_proxy_cli_control_api(tmp_path):
    """The proxy as its own process, switched through its control port (for scripts)."""
    backend = serve_in_thread()
    proc = start(
        python_cmd(
            '-m', 'schnitzel_stream_ros.testing.chaos_proxy', '--upstream', f'127.0.0.1:{backend.port}'
        ),
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, 'proxy did not start'
        info = json.loads(proc.stdout.readline())
        proxy_url = f'http://{info["proxy"]}'
        control = f'http://{info["control"]}'
        assert http_json(proxy_url + '/healthz') == {'ok': True}
        assert http_json(control + '/mode', {'mode': 'refuse'}) == {'mode': 'refuse', 'delay_ms': 0}
        with pytest.raises(OSError):
            urllib.request.urlopen(proxy_url + '/healthz', timeout=2)
        http_json(control + '/mode', {'mode': 'pass'})
        assert http_json(proxy_url + '/healthz') == {'ok': True}
        assert http_json(control + '/stats')['accepted'] >= 2
    finally:
        stop(proc)
        backend.stop()


# -- backend outage --------------------------------------------------------------------------


def test_backend_killed_for_a_few_seconds_then_back(tmp_path):
    port = free_port()
    db = tmp_path / 'backend.db'
    backend, url = start_backend_process(port, db)
    try:  # whichever backend process is current is stopped, even when an assert fails early
        queue = DurableQueue(tmp_path / 'queue.db')
        forwarder = Forwarder(
            queue, HttpTarget(url + '/events', timeout_sec=0.5), ForwarderConfig(concurrency=2, **FAST)
        ).start()
        try:
            queue.enqueue_many(events(300, 'a'))
            os.killpg(backend.pid, signal.SIGKILL)  # mid-delivery, without warning
            backend.wait(10)
            outage_end = time.monotonic() + 3.0
            produced = 0
            while time.monotonic() < outage_end:  # events keep coming during the outage
                queue.enqueue_many(events(20, f'b{produced}-'))
                produced += 1
                time.sleep(0.05)
            assert forwarder.breaker.opened_total >= 1
            backend, url = start_backend_process(port, db)
            assert forwarder.wait_idle(30)
            metrics = forwarder.metrics()
        finally:
            forwarder.stop()
            queue.close()
        keys = backend_keys(url)
        stats = http_json(url + '/stats')
    finally:
        stop(backend)
    expected = {f'a{i}' for i in range(300)} | {f'b{p}-{i}' for p in range(produced) for i in range(20)}
    assert keys == expected
    assert stats['unique'] == len(expected)
    assert metrics['breaker_state'] == 'closed' and metrics['recovered_total'] >= 1


# -- kill -9 of the producer + queue + forwarder process --------------------------------------

CHILD = ('-m', 'schnitzel_stream_ros.testing.delivery_child')


def test_kill9_of_the_queue_process_at_random_points_loses_nothing(tmp_path):
    backend = serve_in_thread(db=str(tmp_path / 'backend.db'))
    queue_path = tmp_path / 'queue.db'
    log = tmp_path / 'accepted.txt'
    rng = random.Random(20_251_126)
    kills = 0
    next_start = 0
    common = [
        '--queue',
        str(queue_path),
        '--url',
        backend.url + '/events',
        '--run-id',
        'r',
        '--accepted-log',
        str(log),
        '--timeout-sec',
        '1.0',
    ]
    try:
        while kills < 22:
            before = len(read_accepted(str(log)))
            child = start(
                python_cmd(
                    *CHILD, *common, '--start', str(next_start), '--events', '100000000', '--rate', '1500'
                ),
                env=dict(os.environ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_until(
                    lambda b=before: len(read_accepted(str(log))) > b, timeout=20, what='events to flow'
                )
                time.sleep(rng.uniform(0.0, 0.5))
            finally:
                stop(child, sig=signal.SIGKILL)
            assert child.returncode == -signal.SIGKILL
            kills += 1
            accepted_keys = read_accepted(str(log))
            next_start = max(int(k.split(':')[1]) for k in accepted_keys) + 1
        # restart without killing: the backlog (and the in-flight rows of the last victim) drain
        final = subprocess.run(
            python_cmd(
                *CHILD,
                *common,
                '--start',
                str(next_start),
                '--events',
                str(next_start),
                '--exit-when-idle',
                '--idle-timeout-sec',
                '60',
            ),
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert final.returncode == 0, final.stderr[-2000:]
        keys = backend.keys()
        stats = backend.stats()
    finally:
        backend.stop()
    accepted = set(read_accepted(str(log)))
    # the last victim may have committed index next_start without logging it
    generated = {f'r:{i}' for i in range(next_start + 1)}
    assert len(accepted) > 200
    assert accepted - keys == set(), 'accepted events missing at the backend'
    assert keys <= generated, 'the backend got events nobody produced'
    # at most one event per kill was committed but not yet written to the log
    assert len(keys) - len(accepted) <= kills
    conn = sqlite3.connect(queue_path)
    left, dead = conn.execute(
        'SELECT (SELECT COUNT(*) FROM packets), (SELECT COUNT(*) FROM dead_letters)'
    ).fetchone()
    conn.close()
    assert (left, dead) == (0, 0)
    print(
        json.dumps(
            {
                'kills': kills,
                'accepted': len(accepted),
                'unique_at_backend': len(keys),
                'duplicates': stats['duplicates'],
            }
        )
    )


def test_backlog_of_10000_rows_drains_automatically_after_restart(tmp_path):
    queue_path = tmp_path / 'queue.db'
    with DurableQueue(queue_path) as queue:  # the site was offline: 10,000 events piled up
        for chunk in range(10):
            queue.enqueue_many(events(1000, f'c{chunk}-'))
        assert queue.depth() == 10_000
    backend = serve_in_thread()
    try:
        restarted = subprocess.run(
            python_cmd(
                *CHILD,
                '--queue',
                str(queue_path),
                '--url',
                backend.url + '/events',
                '--run-id',
                'x',
                '--accepted-log',
                str(tmp_path / 'none.txt'),
                '--start',
                '0',
                '--events',
                '0',
                '--exit-when-idle',
                '--idle-timeout-sec',
                '90',
            ),
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        summary = json.loads(restarted.stdout.strip().splitlines()[-1])
        keys = backend.keys()
    finally:
        backend.stop()
    assert summary['metrics']['acked_total'] == 10_000
    assert keys == {f'c{c}-{i}' for c in range(10) for i in range(1000)}
