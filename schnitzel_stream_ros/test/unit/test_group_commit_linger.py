"""Group commit: a lingering write (the forwarder's settle) shares the commit of a producer's write
instead of making the producer wait behind a commit of its own. Real SQLite file; the tests count
commits, they do not time them."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from schnitzel_stream_ros.delivery.group_commit import GroupCommitter, Txn

WAIT_SEC = 10.0  # generous bound for a loaded machine: only a hang reaches it


@pytest.fixture
def committer(tmp_path):
    conn = sqlite3.connect(tmp_path / 'gc.db', isolation_level=None, check_same_thread=False)
    conn.execute('CREATE TABLE t (x TEXT)')
    made: list[GroupCommitter] = []

    def make(active_window_sec: float) -> GroupCommitter:
        committer = GroupCommitter(
            conn, lambda _txn: None, lambda _txn: None, active_window_sec=active_window_sec
        )
        made.append(committer)
        return committer

    yield make
    for committer in made:
        committer.close()
    conn.close()


def _insert(value: str):
    def op(txn: Txn) -> str:
        txn.conn.execute('INSERT INTO t VALUES (?)', (value,))
        return value

    return op


def _in_thread(fn) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_a_lingering_write_joins_the_next_producer_write_in_one_commit(committer):
    gc = committer(active_window_sec=3600.0)  # the producer counts as active throughout the test
    assert gc.run(_insert('producer-1')) == 'producer-1'
    commits = gc.commits_total
    settle, settled = _in_thread(lambda: gc.run(_insert('settle'), background=True, linger_sec=3600.0))
    deadline = time.monotonic() + WAIT_SEC
    while not gc._pending and time.monotonic() < deadline:  # the settle is submitted
        time.sleep(0.01)
    settle.join(0.2)
    assert settle.is_alive() and gc.commits_total == commits  # waiting for company, nothing committed
    assert gc.run(_insert('producer-2')) == 'producer-2'
    settle.join(WAIT_SEC)
    assert settled == ['settle']
    assert gc.commits_total == commits + 1  # both writes, one commit (one fsync)
    assert gc.background_only_commits_total == 0 and gc.urgent_behind_background_total == 0


def test_a_lingering_write_commits_alone_once_its_linger_is_over(committer):
    gc = committer(active_window_sec=3600.0)
    gc.run(_insert('producer'))
    settle, settled = _in_thread(lambda: gc.run(_insert('settle'), background=True, linger_sec=0.05))
    settle.join(WAIT_SEC)
    assert settled == ['settle']


def test_without_producer_writes_nothing_lingers(committer):
    gc = committer(active_window_sec=0.05)  # no urgent write ever: no producer to wait for
    settle, settled = _in_thread(lambda: gc.run(_insert('settle'), background=True, linger_sec=3600.0))
    settle.join(WAIT_SEC)
    assert settled == ['settle']


def test_a_producer_write_behind_a_settle_only_commit_is_counted(committer):
    """The count the benchmark reports next to the p99: an urgent write that arrives while a commit
    of background writes alone is on its way to disk (here: held inside the op) waits for it."""
    gc = committer(active_window_sec=0.05)
    inside = threading.Event()
    release = threading.Event()

    def slow_settle(txn: Txn) -> str:
        inside.set()
        release.wait(WAIT_SEC)
        return 'settle'

    settle, settled = _in_thread(lambda: gc.run(slow_settle, background=True))  # no linger: the baseline
    assert inside.wait(WAIT_SEC)
    producer, produced = _in_thread(lambda: gc.run(_insert('producer')))
    deadline = time.monotonic() + WAIT_SEC
    while gc.urgent_behind_background_total == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    settle.join(WAIT_SEC)
    producer.join(WAIT_SEC)
    assert settled == ['settle'] and produced == ['producer']
    assert gc.background_only_commits_total == 1 and gc.urgent_behind_background_total == 1
