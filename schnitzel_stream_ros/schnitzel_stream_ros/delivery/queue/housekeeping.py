"""Housekeeping: opening (integrity check, quarantine, salvage of a damaged file, migration),
incidents, inspection (ledger, depth, stats) and the WAL checkpointer."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.delivery import quarantine, salvage
from schnitzel_stream_ros.delivery.errors import (
    QueueStorageError,
)
from schnitzel_stream_ros.delivery.group_commit import Txn
from schnitzel_stream_ros.delivery.queue.disk_space import _size
from schnitzel_stream_ros.delivery.queue.schema import (
    _connect,
    migrate,
)

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')

#: Housekeeping that blocks writers waits until no enqueue came for this long ...
QUIET_SEC = 1.0
#: ... but gives freed pages back at least this often while a producer never pauses.
GIVE_BACK_BUSY_SEC = 30.0


class Housekeeping:
    """Housekeeping: opening (integrity check, quarantine, salvage of a damaged file, migration),"""

    #: see QUIET_SEC (an instance may set its own; 0 = never wait for a quiet moment)
    housekeeping_quiet_sec: float = QUIET_SEC

    # -- opening ---------------------------------------------------------------------------
    def _check_or_quarantine(self, on_corrupt: str) -> quarantine.Quarantined | None:
        problem = quarantine.check_file(self.path, lambda p: _connect(p, self._busy_timeout_sec))
        if problem is None:
            return None
        if on_corrupt == 'raise':
            raise QueueStorageError(f'node {self.node_id!r}: queue file {self.path} is damaged: {problem}')
        moved = quarantine.quarantine_files(self.path, problem)
        self.quarantined.append(moved)
        self._count('quarantined_total')
        return moved

    def _open_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path, self._busy_timeout_sec)
        try:
            # before WAL: incremental vacuum can only be chosen before the file has a header
            # (disk_space.py); the checkpoint thread keeps the WAL small, the autocheckpoint and
            # journal_size_limit set there are the bound for a stalled one.
            self._space_pragmas(conn)
            mode = conn.execute('PRAGMA journal_mode=WAL').fetchone()[0]
            if str(mode).lower() != 'wal':
                raise QueueStorageError(f'queue file {self.path}: cannot switch to WAL (journal_mode={mode})')
            conn.execute('PRAGMA synchronous=FULL')
            if self._max_page_count:
                conn.execute(f'PRAGMA max_page_count={int(self._max_page_count)}')
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _salvage_at_open(self, moved: quarantine.Quarantined) -> dict[str, Any]:
        """Copy what can be read of the quarantined file into the fresh one (before any other
        writer: the committer does not run yet). Never raises: salvage is a bonus, the fresh queue
        must start either way (the damaged file stays for `queue salvage` by hand)."""
        try:
            found = salvage.read_salvageable(moved.moved_to)
            self._writer.execute('BEGIN IMMEDIATE')
            try:
                report = self._insert_salvaged(self._writer, found)
                self._writer.execute(
                    'UPDATE queue_counters SET value = value + CASE name '
                    "WHEN 'depth_rows' THEN ? WHEN 'depth_bytes' THEN ? WHEN 'salvaged_total' THEN ? END "
                    "WHERE name IN ('depth_rows', 'depth_bytes', 'salvaged_total')",
                    (report['rows'], report['bytes'], report['rows'] + report['dead_letters']),
                )
                self._writer.execute('COMMIT')
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute('ROLLBACK')
                raise
        except Exception as exc:
            _LOG.exception('node %s: salvage of %s failed', self.node_id, moved.moved_to)
            return {'salvage_error': f'{type(exc).__name__}: {exc}'}
        _LOG.error(
            'node %s: salvaged %d queued events and %d dead letters from the damaged file %s (%d unreadable)',
            self.node_id,
            report['rows'],
            report['dead_letters'],
            moved.moved_to,
            report['unreadable'],
        )
        self._count('salvaged_total', report['rows'] + report['dead_letters'])
        return {f'salvaged_{k}': v for k, v in report.items() if k != 'bytes'}

    def salvage(self, damaged: str | os.PathLike[str]) -> dict[str, Any]:
        """Copy every readable row of another (damaged) queue file into this queue, keys kept:
        queued rows stay queued (a key already here is skipped), dead letters stay dead letters.
        Limits do not apply (these events were accepted already). The file is only read."""
        found = salvage.read_salvageable(Path(damaged))

        def op(txn: Txn) -> dict[str, Any]:
            report = self._insert_salvaged(txn.conn, found)
            txn.state['rows'] += report['rows']
            txn.state['bytes'] += report['bytes']
            self._bump(txn, 'depth_rows', report['rows'])
            self._bump(txn, 'depth_bytes', report['bytes'])
            self._bump(txn, 'salvaged_total', report['rows'] + report['dead_letters'])
            return report

        report = self._committer.run(op, weight=max(1, len(found.packets)))
        self._count('salvaged_total', report['rows'] + report['dead_letters'])
        with self._rows_cond:
            self._rows_generation += 1
            self._rows_cond.notify_all()
        return report

    def _insert_salvaged(self, conn: sqlite3.Connection, found: salvage.Salvaged) -> dict[str, Any]:
        rows = size = duplicates = 0
        for (
            _seq,
            enqueued_at,
            enqueued_epoch,
            key,
            packet_id,
            ts,
            kind,
            source_id,
            payload_json,
            meta_json,
            size_bytes,
            attempts,
        ) in found.packets:
            cur = conn.execute(
                'INSERT INTO packets (enqueued_at, enqueued_epoch, idempotency_key, packet_id, ts, kind, '
                'source_id, payload_json, meta_json, size_bytes, attempts) '
                'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(idempotency_key) DO NOTHING',
                (
                    enqueued_at,
                    enqueued_epoch or 0,
                    key,
                    packet_id,
                    ts,
                    kind,
                    source_id,
                    payload_json,
                    meta_json,
                    size_bytes or 0,
                    attempts or 0,
                ),
            )
            if cur.rowcount == 1:
                rows += 1
                size += size_bytes or 0
            else:
                duplicates += 1
        for dead in found.dead_letters:
            conn.execute(
                f'INSERT INTO dead_letters ({", ".join(salvage.DEAD_COLUMNS)}) '
                f'VALUES (NULL{", ?" * (len(salvage.DEAD_COLUMNS) - 1)})',
                dead[1:],
            )
        if found.dead_letters:
            # a dead letter's seq must never be reused by a future packet (dead-lettering copies
            # with INSERT OR REPLACE by seq): move the packets sequence past them
            conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'packets', 0 "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'packets')"
            )
            conn.execute(
                'UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT MAX(seq) FROM dead_letters)) '
                "WHERE name = 'packets'"
            )
        return {
            'rows': rows,
            'bytes': size,
            'dead_letters': len(found.dead_letters),
            'duplicates': duplicates,
            'unreadable': found.unreadable,
            'problems': found.problems,
        }

    def _record_incident(self, moved: quarantine.Quarantined, salvaged: dict[str, Any]) -> None:
        detail = {
            'original': str(moved.original),
            'moved_to': str(moved.moved_to),
            'reason': moved.reason,
            **salvaged,
        }
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute('BEGIN IMMEDIATE')
            self._writer.execute(
                'INSERT INTO queue_incidents (at, kind, detail) VALUES (?, ?, ?)',
                (moved.at, 'quarantined', json.dumps(detail)),
            )
            self._writer.execute(
                "UPDATE queue_counters SET value = value + 1 WHERE name = 'quarantined_total'"
            )
            self._writer.execute('COMMIT')
        if self._on_incident is not None:
            try:
                self._on_incident('quarantined', detail)
            except Exception:
                _LOG.exception('node %s: incident callback failed', self.node_id)

    def flush(self) -> None:
        """Return once every write submitted before this call is committed (or failed)."""
        self._committer.run(lambda _txn: None, weight=0)

    # -- inspection ----------------------------------------------------------------------------
    def ledger(self) -> dict[str, int]:
        """The persisted counters of this file (all processes, all runs)."""
        with self._reader_lock:
            return {
                name: int(value)
                for name, value in self._reader.execute('SELECT name, value FROM queue_counters')
            }

    def incidents(self) -> list[dict[str, Any]]:
        with self._reader_lock:
            found = self._reader.execute(
                'SELECT at, kind, detail FROM queue_incidents ORDER BY id'
            ).fetchall()
        return [{'at': at, 'kind': kind, **json.loads(detail)} for at, kind, detail in found]

    def stats(self) -> dict[str, Any]:
        """Gauges and this run's counters, with upstream-style names."""
        with self._reader_lock:
            ledger = {n: int(v) for n, v in self._reader.execute('SELECT name, value FROM queue_counters')}
            oldest = self._reader.execute(
                'SELECT enqueued_epoch FROM packets ORDER BY seq LIMIT 1'
            ).fetchone()
            dead_depth = int(self._reader.execute('SELECT COUNT(*) FROM dead_letters').fetchone()[0])
        with self._run_lock:
            run = dict(self._run)
        return {
            'queue_depth': ledger.get('depth_rows', 0),
            'queue_bytes': ledger.get('depth_bytes', 0),
            'oldest_age_sec': max(0.0, self._wall() - oldest[0]) if oldest else 0.0,
            'in_flight': self.in_flight(),
            'dead_letter_depth': dead_depth,
            'commits_total': self._committer.commits_total,
            'settle_only_commits_total': self._committer.background_only_commits_total,
            'enqueues_behind_settle_commit_total': self._committer.urgent_behind_background_total,
            **run,
        }

    # -- housekeeping --------------------------------------------------------------------------
    def _checkpoint_loop(self, interval: float) -> None:
        """Copy the WAL into the main file off the enqueue path (keeps enqueue p99 low).

        A PASSIVE checkpoint never blocks the writer. What does -- a TRUNCATE checkpoint, giving
        pages back (write transactions on this connection) -- makes a producer's BEGIN wait in
        SQLite's busy handler, which sleeps in steps of 1, 2, 5, 10... ms: so it waits for a moment
        without enqueues (`housekeeping_quiet_sec`) unless freed pages waited GIVE_BACK_BUSY_SEC
        (then counted: `housekeeping_blocked_writers_total`). The WAL bound holds busy or not: while
        a producer writes, its TRUNCATE checkpoint runs on the writer's own thread between two
        commits (`wal_bounded_between_commits_total`), so the producer waits for the checkpoint
        itself, never for a busy handler's sleep."""
        try:
            conn = _connect(self.path, self._busy_timeout_sec)
        except sqlite3.Error:
            _LOG.exception('node %s: checkpoint connection failed; relying on autocheckpoint', self.node_id)
            return
        wal = self.path.with_name(self.path.name + '-wal')
        last_give_back = time.monotonic()
        try:
            conn.execute(f'PRAGMA journal_size_limit={int(self.wal_limit_bytes)}')
            while not self._checkpoint_stop.wait(interval):
                try:
                    conn.execute('PRAGMA wal_checkpoint(PASSIVE)').fetchall()
                    self._count('checkpoints_total')
                    quiet = self._committer.seconds_since_urgent_write() >= self.housekeeping_quiet_sec
                    if _size(wal) > self.wal_limit_bytes:  # the bound holds, busy or not
                        if quiet or self.housekeeping_quiet_sec <= 0:
                            self._bound_wal(conn)
                        else:  # between two commits, on the writer: no producer sleeps on a lock
                            self._count('wal_bounded_between_commits_total')
                            self._committer.request_maintenance(self._bound_wal)
                    now = time.monotonic()
                    if quiet or now - last_give_back >= GIVE_BACK_BUSY_SEC:
                        last_give_back = now
                        if self._give_back_space(conn) and not quiet:
                            self._count('housekeeping_blocked_writers_total')
                except sqlite3.Error as exc:
                    _LOG.debug('node %s: checkpoint skipped: %s', self.node_id, exc)
        finally:
            conn.close()
