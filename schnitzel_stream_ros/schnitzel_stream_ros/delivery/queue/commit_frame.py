"""The write transaction frame: what every group commit does around the ops it carries (runs on
the committer thread): the live size for the limits, the counters' ledger in the same commit,
waking waiters after it, and what a SQLite error means (a full disk, or storage trouble)."""

from __future__ import annotations

import logging
import sqlite3
from functools import partial

from schnitzel_stream_ros.delivery.errors import (
    DiskFullError,
    QueueStorageError,
)
from schnitzel_stream_ros.delivery.group_commit import Txn
from schnitzel_stream_ros.delivery.queue.schema import is_disk_full

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')


class CommitFrame:
    """The write transaction frame: what every group commit does around the ops it carries (runs on"""

    # -- the write transaction frame (runs on the committer thread) --------------------------
    def _begin_txn(self, txn: Txn) -> None:
        txn.state['delta'] = {}
        if self.max_rows is None and self.max_bytes is None:
            txn.state['rows'] = txn.state['bytes'] = 0  # no limits: no need to read the live size
            return
        rows, size = txn.conn.execute(
            "SELECT (SELECT value FROM queue_counters WHERE name = 'depth_rows'),"
            " (SELECT value FROM queue_counters WHERE name = 'depth_bytes')"
        ).fetchone()
        txn.state['rows'] = rows or 0
        txn.state['bytes'] = size or 0

    def _finish_txn(self, txn: Txn) -> None:
        self._write_reserved_inserts(txn)
        delta: dict[str, int] = txn.state['delta']
        changes = [(k, v) for k, v in delta.items() if v]
        if changes:
            # one statement for all counters: every statement is a GIL round-trip on a busy committer
            cases = ' '.join('WHEN ? THEN ?' for _ in changes)
            marks = ', '.join('?' for _ in changes)
            params = [x for pair in changes for x in pair] + [k for k, _ in changes]
            txn.conn.execute(
                f'UPDATE queue_counters SET value = value + CASE name {cases} END WHERE name IN ({marks})',
                params,
            )
            txn.after_commit.append(partial(self._after_commit, dict(delta)))

    def _after_commit(self, delta: dict[str, int]) -> None:
        with self._run_lock:
            for name in (
                'enqueued_total',
                'duplicate_total',
                'acked_total',
                'nacked_total',
                'dead_letter_total',
                'redriven_total',
                'purged_total',
            ):
                if delta.get(name):
                    self._run[name] += delta[name]
        if delta.get('enqueued_total') or delta.get('redriven_total'):
            with self._rows_cond:
                self._rows_generation += 1
                self._rows_cond.notify_all()
        if delta.get('depth_rows', 0) < 0 or delta.get('depth_bytes', 0) < 0:
            with self._space_cond:
                self._space_generation += 1
                self._space_cond.notify_all()

    @staticmethod
    def _bump(txn: Txn, name: str, n: int) -> None:
        delta = txn.state['delta']
        delta[name] = delta.get(name, 0) + n

    def _map_sqlite_error(self, exc: sqlite3.Error) -> BaseException:
        if is_disk_full(exc):
            self._count('disk_full_total')
            return DiskFullError(
                f'node {self.node_id!r}: queue file {self.path} is full ({exc}); '
                'the write was rolled back and nothing of it was accepted'
            )
        return QueueStorageError(f'node {self.node_id!r}: queue file {self.path}: {exc}')

    def _count(self, name: str, n: int = 1) -> None:
        with self._run_lock:
            self._run[name] += n
