"""Consuming: the consumer lock, claims under a lease, settling outcomes (ack / nack / dead letter)
in one transaction, giving rows back, and making waiting retries due when the backend is back."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from functools import partial

from schnitzel_stream_ros.delivery.errors import (
    QueueClosedError,
)
from schnitzel_stream_ros.delivery.group_commit import Txn, WriteOp
from schnitzel_stream_ros.delivery.queue.rows import (
    DeadLetter,
    Nack,
    QueuedRow,
    SettleResult,
)
from schnitzel_stream_ros.delivery.queue.schema import (
    _DEAD_COPY,
    _ROW_COLUMNS,
    _iso_now,
)

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')

#: Acks deleted per statement. The settle runs on the committer thread, inside the transaction a
#: producer's enqueue shares: one statement per row meant one GIL round trip per row, and with the
#: forwarder's workers busy each round trip can wait up to a switch interval (5 ms) for the GIL
#: (profiled on the shared 2-core machine: commits carrying a 128-row settle p99 11-23 ms against
#: 7 ms for enqueue-only ones). Set-based, a settle is two statements per chunk whatever its size.
_SETTLE_CHUNK = 500


def _delete_rows(conn: sqlite3.Connection, seqs: list[int]) -> tuple[int, int]:
    """Delete the rows `seqs` in two statements; returns (rows that were there, their bytes)."""
    marks = ','.join('?' * len(seqs))
    found, found_bytes = conn.execute(
        f'SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM packets WHERE seq IN ({marks})', seqs
    ).fetchone()
    if found:
        conn.execute(f'DELETE FROM packets WHERE seq IN ({marks})', seqs)
    return int(found), int(found_bytes)


class Leasing:
    """Consuming: the consumer lock, claims under a lease, settling outcomes (ack / nack / dead letter)

    Used by DurableQueue (in the queue's own process) and by ConsumerQueue (a delivery process of
    its own); both call _init_leasing() and give it `path`, `_reader` and `_reader_lock`."""

    def _init_leasing(self) -> None:
        """The consumer's state: leases in memory, the consumer lock's descriptor, the rows signal."""
        self._leases: dict[int, float] = {}  # seq -> monotonic deadline
        self._lease_lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._consumer_fd: int | None = None
        self._warned_consumer = False
        self._rows_cond = threading.Condition()
        self._rows_generation = 0

    def _end_leasing(self) -> None:
        """At close: let another process consume (the flock goes with its descriptor) and wake
        every wait_for_rows()."""
        if self._consumer_fd is not None:
            os.close(self._consumer_fd)
            self._consumer_fd = None
        with self._rows_cond:
            self._rows_cond.notify_all()

    def depth(self) -> int:
        """Rows waiting in the queue (leased ones included), from the queue's own counter."""
        with self._reader_lock:
            row = self._reader.execute(
                "SELECT value FROM queue_counters WHERE name = 'depth_rows'"
            ).fetchone()
        return int(row[0]) if row else 0

    # -- consuming ---------------------------------------------------------------------------
    def _hold_consumer_lock(self) -> bool:
        if self._consumer_fd is not None:
            return True
        fd = os.open(f'{self.path}-consumer.lock', os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._consumer_fd = fd
        return True

    def claim(self, limit: int, lease_sec: float = 30.0) -> list[QueuedRow]:
        """Lease up to `limit` due rows in seq order. Leased rows are not handed out again until
        they are settled (ack/nack/dead-letter/release) or the lease expires (then they are due
        again and their attempt count grows by one). Returns [] while another process consumes."""
        if self._closed:
            raise QueueClosedError(f'node {self.node_id!r}: queue {self.path} is closed')
        if limit <= 0:
            return []
        with self._claim_lock:
            if not self._hold_consumer_lock():
                if not self._warned_consumer:
                    self._warned_consumer = True
                    _LOG.warning(
                        'node %s: another process consumes %s; this one waits for its turn',
                        self.node_id,
                        self.path,
                    )
                return []
            now_m = self._mono()
            with self._lease_lock:
                expired = [seq for seq, deadline in self._leases.items() if deadline <= now_m]
                for seq in expired:
                    del self._leases[seq]
                skip = set(self._leases)
            if expired:
                self._count('lease_expired_total', len(expired))
                _LOG.warning('node %s: %d leases expired; the rows are due again', self.node_id, len(expired))
                self._record_expired(expired)
            now_w = self._wall()
            # Leased rows are skipped inside SQLite (one JSON parameter, any number of leases):
            # reading them into Python only to drop them held the GIL that the producer's commit
            # needs, for every claim of every worker.
            with self._reader_lock:
                found = self._reader.execute(
                    f'SELECT {_ROW_COLUMNS} FROM packets '
                    'WHERE (next_attempt_at <= ? OR next_attempt_at > ?) '
                    'AND seq NOT IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?',
                    (now_w, now_w + self.max_retry_delay_sec, json.dumps(sorted(skip)), limit),
                ).fetchall()
            rows = [QueuedRow(*r) for r in found]
            deadline = now_m + lease_sec
            with self._lease_lock:
                for row in rows:
                    self._leases[row.seq] = deadline
            return rows

    def _record_expired(self, seqs: list[int]) -> None:
        """Count an attempt for rows whose lease ran out (nobody waits for the commit)."""
        self._committer.submit(WriteOp(partial(self._note_expired, seqs), weight=len(seqs)))

    def record_expired(self, seqs: list[int]) -> None:
        """The same for a consumer in another process (delivery/delivery_process.py)."""
        if seqs:
            self._record_expired(list(seqs))

    def _note_expired(self, seqs: list[int], txn: Txn) -> int:
        txn.conn.executemany(
            "UPDATE packets SET attempts = attempts + 1, last_error = 'lease expired' WHERE seq = ?",
            [(s,) for s in seqs],
        )
        return len(seqs)

    def release(self, seqs: Iterable[int]) -> None:
        """Give leased rows back untouched (nothing was attempted), e.g. when stopping."""
        with self._lease_lock:
            for seq in seqs:
                self._leases.pop(seq, None)
        with self._rows_cond:
            self._rows_generation += 1
            self._rows_cond.notify_all()

    def in_flight(self) -> int:
        with self._lease_lock:
            return len(self._leases)

    def wait_for_rows(self, timeout: float) -> None:
        """Sleep until this process commits new rows or `timeout` passes (other writers: poll)."""
        with self._rows_cond:
            generation = self._rows_generation
            self._rows_cond.wait_for(lambda: self._rows_generation != generation or self._closed, timeout)

    def ack(self, seqs: Iterable[int]) -> int:
        """Delete delivered rows; returns how many were still there. One transaction, one fsync."""
        return self.settle(acks=seqs).acked

    def nack(self, nacks: Iterable[Nack]) -> int:
        return self.settle(nacks=nacks).nacked

    def dead_letter(self, deads: Iterable[DeadLetter]) -> int:
        return self.settle(deads=deads).dead_lettered

    def settle(
        self,
        acks: Iterable[int] = (),
        nacks: Iterable[Nack] = (),
        deads: Iterable[DeadLetter] = (),
        linger_sec: float = 0.0,
    ) -> SettleResult:
        """Record outcomes of delivery attempts in one transaction (acks delete the row and bump
        the acked ledger in the same commit), then end the leases. `linger_sec` > 0: the record
        may wait that long to share the commit of an enqueue (see group_commit) rather than make
        a producer wait behind a commit of its own."""
        acks, nacks, deads = list(acks), list(nacks), list(deads)
        if not (acks or nacks or deads):
            return SettleResult(0, 0, 0)
        return self.submit_settle(acks, nacks, deads, linger_sec).wait()

    def submit_settle(
        self, acks: list[int], nacks: list[Nack], deads: list[DeadLetter], linger_sec: float = 0.0
    ) -> WriteOp:
        """settle() without waiting: the pending write; its wait() returns the SettleResult once
        committed. For a consumer in another process, whose outcomes this process commits
        (delivery/delivery_process.py), so its settles share the producer's commits."""
        weight = max(1, len(acks) + len(nacks) + len(deads))
        settle = partial(self._settle_op, acks, nacks, deads)
        return self._committer.submit(WriteOp(settle, weight=weight, background=True, linger_sec=linger_sec))

    def _settle_op(
        self, acks: list[int], nacks: list[Nack], deads: list[DeadLetter], txn: Txn
    ) -> SettleResult:
        conn = txn.conn
        now = self._wall()
        removed_rows = removed_bytes = 0
        acked = 0
        for start in range(0, len(acks), _SETTLE_CHUNK):
            found, found_bytes = _delete_rows(conn, acks[start : start + _SETTLE_CHUNK])
            acked += found
            removed_bytes += found_bytes
        nacked = 0
        for nack in nacks:
            delay = min(max(0.0, nack.delay_sec), self.max_retry_delay_sec)
            cur = conn.execute(
                'UPDATE packets SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? '
                'WHERE seq = ?',
                (now + delay, nack.error[:500], nack.seq),
            )
            nacked += cur.rowcount
        dead = 0
        dead_at = _iso_now(now)
        for item in deads:
            conn.execute(
                _DEAD_COPY,
                (1 if item.count_attempt else 0, item.reason[:1000], item.http_status, dead_at, item.seq),
            )
            row = conn.execute(
                'DELETE FROM packets WHERE seq = ? RETURNING size_bytes', (item.seq,)
            ).fetchone()
            if row is not None:
                dead += 1
                removed_bytes += row[0]
        removed_rows = acked + dead
        txn.state['rows'] -= removed_rows
        txn.state['bytes'] -= removed_bytes
        self._bump(txn, 'depth_rows', -removed_rows)
        self._bump(txn, 'depth_bytes', -removed_bytes)
        self._bump(txn, 'acked_total', acked)
        self._bump(txn, 'nacked_total', nacked)
        self._bump(txn, 'dead_letter_total', dead)
        settled = [*acks, *(n.seq for n in nacks), *(d.seq for d in deads)]
        txn.after_commit.append(partial(self.release_leases_quietly, settled))
        return SettleResult(acked, nacked, dead)

    def release_leases_quietly(self, seqs: Iterable[int]) -> None:
        with self._lease_lock:
            for seq in seqs:
                self._leases.pop(seq, None)

    def release_backoff(self) -> int:
        """Make every row that waits for a retry due now (the backend is back: do not wait out
        backoffs that the outage caused). Returns how many rows were waiting."""

        def op(txn: Txn) -> int:
            cur = txn.conn.execute('UPDATE packets SET next_attempt_at = 0 WHERE next_attempt_at > 0')
            return cur.rowcount

        count = self._committer.run(op)
        if count:
            with self._rows_cond:
                self._rows_generation += 1
                self._rows_cond.notify_all()
        return count
