"""A forwarder round that fails gives back every row it claimed (issue 11, Build: "a forwarder round
that fails for any reason settles or releases every row it claimed").

The failure here is real: another connection holds the queue file's write lock (as a second
process, a backup tool or `sqlite3` by hand can) longer than the queue's busy timeout, so recording
the outcomes of a delivered batch fails with a storage error. The rows must not stay leased until
their lease runs out (300 s here): they are given back at once, sent again once the lock is gone
(duplicates at the backend, never a loss) and the queue ends empty, with no lease expired.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.http_client import HttpTarget
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket

pytestmark = pytest.mark.integration

N_EVENTS = 40
WAIT_SEC = 60.0  # generous: a loaded machine; every wait below ends on its condition


def _wait(condition, timeout: float = WAIT_SEC) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_round_whose_settle_fails_gives_its_rows_back_at_once(tmp_path):
    backend = serve_in_thread()
    queue = DurableQueue(tmp_path / 'q.db', node_id='q', busy_timeout_sec=0.2)
    keys = [f'k{i}' for i in range(N_EVENTS)]
    queue.enqueue_many([StreamPacket.new('event', 'cam', {'i': i}, meta={}) for i in range(N_EVENTS)], keys)
    blocker = sqlite3.connect(tmp_path / 'q.db', isolation_level=None)
    blocker.execute('BEGIN EXCLUSIVE')  # the write lock, held by somebody else
    forwarder = Forwarder(
        queue,
        HttpTarget(backend.url + '/events', timeout_sec=5.0),
        ForwarderConfig(
            concurrency=1,
            batch_size=N_EVENTS,
            lease_sec=300.0,
            settle_linger_sec=0.0,
            backoff=Backoff(base_sec=0.05, cap_sec=0.2),
            idle_poll_sec=0.05,
        ),
    ).start()
    try:
        # the whole batch reached the backend, and recording that failed
        assert _wait(lambda: backend.stats()['unique'] == N_EVENTS), backend.stats()
        assert _wait(lambda: forwarder.metrics()['settle_errors_total'] >= 1), forwarder.metrics()
        blocker.execute('ROLLBACK')
        assert _wait(lambda: queue.depth() == 0 and queue.in_flight() == 0), (
            queue.depth(),
            queue.in_flight(),
        )
        metrics = forwarder.metrics()
    finally:
        forwarder.stop()
        blocker.close()
        queue.close()
        stats = backend.stats()
        backend.stop()
    assert metrics['lease_expired_total'] == 0  # given back, not left to expire
    assert stats['unique'] == N_EVENTS and stats['duplicates'] >= 1  # sent again: at least once
    assert metrics['dead_letter_total'] == 0
