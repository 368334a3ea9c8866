"""DurableQueue: the SQLite store-and-forward queue where an event becomes *accepted*.

An event is accepted when its row is committed (WAL, `synchronous=FULL`): from then on a crash, a
kill -9 or a power cut cannot lose it, and it stays in the file until the backend answered 2xx
(ack) or it was moved to the dead-letter table. `enqueue()` returns only after that commit; the
group committer lets concurrent callers share one fsync so the promise stays cheap.

Upstream-compatible: same table (`packets`) and columns, idempotency key explicit ->
meta.idempotency_key -> packet_id, re-enqueue of a present key is a no-op returning its seq, drain in
seq order, ack deletes. A queue file written by schnitzel-stream-platform opens here and drains.
Beyond upstream: leases for in-flight rows, attempt counts and next-attempt times, a dead-letter
table, row/byte limits with an explicit full policy, integrity check with quarantine, and a
counters ledger updated in the same transaction as the rows it counts.

Time: leases use the monotonic clock (a wall-clock jump neither expires nor freezes them). Retry
times must survive restarts, so they are wall-clock, but a row whose next attempt lies further in
the future than the largest delay we ever set (`max_retry_delay_sec`) is due now: a backwards
clock jump can park a row for at most that long.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.delivery import quarantine, salvage
from schnitzel_stream_ros.delivery.errors import (
    BatchTooLargeError,
    DiskFullError,
    QueueClosedError,
    QueueFullError,
    QueueStorageError,
)
from schnitzel_stream_ros.delivery.group_commit import GroupCommitter, Txn, WriteOp
from schnitzel_stream_ros.delivery.idempotency_key import wire_key
from schnitzel_stream_ros.delivery.strict_json import to_json_text
from schnitzel_stream_ros.packet import MetaKey, StreamPacket

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')

SCHEMA_VERSION = 1
_SQLITE_FULL = 13

_CREATE_PACKETS = """
CREATE TABLE IF NOT EXISTS packets (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  enqueued_at TEXT NOT NULL,
  idempotency_key TEXT,
  packet_id TEXT NOT NULL,
  ts TEXT NOT NULL,
  kind TEXT NOT NULL,
  source_id TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  meta_json TEXT NOT NULL,
  enqueued_epoch REAL NOT NULL DEFAULT 0,
  size_bytes INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL DEFAULT 0,
  last_error TEXT
)"""

#: Columns we add to an upstream file (name, definition).
_EXTRA_COLUMNS = (
    ('enqueued_epoch', 'REAL NOT NULL DEFAULT 0'),
    ('size_bytes', 'INTEGER NOT NULL DEFAULT 0'),
    ('attempts', 'INTEGER NOT NULL DEFAULT 0'),
    ('next_attempt_at', 'REAL NOT NULL DEFAULT 0'),
    ('last_error', 'TEXT'),
)

_CREATE_OTHERS = (
    'CREATE UNIQUE INDEX IF NOT EXISTS idx_packets_idempotency ON packets(idempotency_key)',
    """CREATE TABLE IF NOT EXISTS dead_letters (
      seq INTEGER PRIMARY KEY,
      idempotency_key TEXT NOT NULL,
      packet_id TEXT NOT NULL,
      ts TEXT NOT NULL,
      kind TEXT NOT NULL,
      source_id TEXT NOT NULL,
      payload_json TEXT NOT NULL,
      meta_json TEXT NOT NULL,
      enqueued_at TEXT NOT NULL,
      enqueued_epoch REAL NOT NULL,
      size_bytes INTEGER NOT NULL,
      attempts INTEGER NOT NULL,
      reason TEXT NOT NULL,
      http_status INTEGER,
      dead_at TEXT NOT NULL
    )""",
    'CREATE TABLE IF NOT EXISTS queue_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)',
    """CREATE TABLE IF NOT EXISTS queue_incidents (
      id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL
    )""",
    'CREATE TABLE IF NOT EXISTS queue_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)',
)

_ROW_COLUMNS = (
    'seq, idempotency_key, packet_id, ts, kind, source_id, payload_json, meta_json, attempts, enqueued_epoch'
)
_INSERT = (
    'INSERT INTO packets (enqueued_at, enqueued_epoch, idempotency_key, packet_id, ts, kind, source_id, '
    'payload_json, meta_json, size_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) '
    'ON CONFLICT(idempotency_key) DO NOTHING'
)
_MULTI_INSERT_ROWS = 500  # 10 parameters per row, well under SQLite's 32,766 variables


@functools.lru_cache(maxsize=64)
def _multi_insert_sql(rows: int) -> str:
    values = ', '.join(['(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'] * rows)
    return _INSERT.replace('VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', f'VALUES {values}')


_DEAD_COPY = (
    'INSERT OR REPLACE INTO dead_letters (seq, idempotency_key, packet_id, ts, kind, source_id, '
    'payload_json, '
    'meta_json, enqueued_at, enqueued_epoch, size_bytes, attempts, reason, http_status, dead_at) '
    'SELECT seq, idempotency_key, packet_id, ts, kind, source_id, payload_json, meta_json, enqueued_at, '
    'enqueued_epoch, size_bytes, attempts + ?, ?, ?, ? FROM packets WHERE seq = ?'
)

#: Persisted ledger (lifetime of the file). depth_* are the live size, used for limits.
LEDGER = (
    'depth_rows',
    'depth_bytes',
    'enqueued_total',
    'duplicate_total',
    'acked_total',
    'nacked_total',
    'dead_letter_total',
    'redriven_total',
    'purged_total',
    'quarantined_total',
    'salvaged_total',
)


class FullPolicy(StrEnum):
    """What enqueue does when a limit is reached. There is no 'drop'."""

    BLOCK = 'block'  # wait (up to block_timeout_sec) for room, then QueueFullError
    REFUSE = 'refuse'  # QueueFullError at once


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A claimed row: the original packet as JSON text plus delivery state."""

    seq: int
    idempotency_key: str
    packet_id: str
    ts: str
    kind: str
    source_id: str
    payload_json: str
    meta_json: str
    attempts: int
    enqueued_epoch: float

    def packet(self) -> StreamPacket:
        """The original StreamPacket (payload and meta decoded from JSON)."""
        meta = json.loads(self.meta_json)
        return StreamPacket(
            self.packet_id,
            self.ts,
            self.kind,
            self.source_id,
            json.loads(self.payload_json),
            meta if isinstance(meta, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class Nack:
    """A failed attempt: retry not before `delay_sec` from now."""

    seq: int
    delay_sec: float
    error: str = ''


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Move a row to the dead-letter table (non-retryable answer, or budget exhausted)."""

    seq: int
    reason: str
    http_status: int | None = None
    count_attempt: bool = True  # this failure was an attempt (adds 1 to the stored attempts)


@dataclass(frozen=True, slots=True)
class DeadRow:
    """A row of the dead-letter table, as `list_dead` shows it."""

    seq: int
    idempotency_key: str
    packet_id: str
    ts: str
    kind: str
    source_id: str
    attempts: int
    reason: str
    http_status: int | None
    dead_at: str
    enqueued_at: str
    size_bytes: int
    payload_json: str


@dataclass(frozen=True, slots=True)
class SettleResult:
    acked: int
    nacked: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class RedriveResult:
    moved: int
    already_queued: int  # the key was enqueued again meanwhile: the dead row is dropped
    left_no_room: int  # stayed in the dead-letter table because the queue is at its limit


class _NoRoom(Exception):
    """Inside a write op: the rows do not fit now (the caller decides: block or refuse)."""


def _iso_now(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _connect(path: Path, busy_timeout_sec: float) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_timeout_sec, isolation_level=None, check_same_thread=False)
    return conn


class DurableQueue:
    """A durable, idempotent, leased queue of StreamPackets in one SQLite file.

    Thread-safe. One process may hold the consumer role (claim) per file at a time (an flock on
    `<path>-consumer.lock`, released by the kernel when the process dies); any number of threads
    and processes may enqueue, ack or manage dead letters.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        node_id: str = 'queue',
        max_rows: int | None = None,
        max_bytes: int | None = None,
        full_policy: FullPolicy | str = FullPolicy.BLOCK,
        block_timeout_sec: float = 10.0,
        max_retry_delay_sec: float = 60.0,
        max_page_count: int | None = None,
        busy_timeout_sec: float = 10.0,
        checkpoint_interval_sec: float = 0.5,
        max_batch_rows: int = 4096,
        on_corrupt: str = 'quarantine',
        on_incident: Callable[[str, dict[str, Any]], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.node_id = node_id
        self.max_rows = max_rows if max_rows and max_rows > 0 else None
        self.max_bytes = max_bytes if max_bytes and max_bytes > 0 else None
        try:
            self.full_policy = FullPolicy(full_policy)
        except ValueError:
            raise ValueError(
                f'node {node_id!r}: full_policy must be one of {[p.value for p in FullPolicy]}, '
                f'got {full_policy!r}'
            ) from None
        if on_corrupt not in ('quarantine', 'raise'):
            raise ValueError(
                f"node {node_id!r}: on_corrupt must be 'quarantine' or 'raise', got {on_corrupt!r}"
            )
        self.block_timeout_sec = block_timeout_sec
        self.max_retry_delay_sec = max_retry_delay_sec
        self._max_page_count = max_page_count
        self._busy_timeout_sec = busy_timeout_sec
        self._on_incident = on_incident
        self._wall = wall_clock
        self._mono = mono_clock
        self._closed = False

        # per-process counters (the run's view; the file's lifetime view is the ledger)
        self._run: dict[str, int] = dict.fromkeys(
            (
                'enqueued_total',
                'duplicate_total',
                'acked_total',
                'nacked_total',
                'dead_letter_total',
                'refused_total',
                'disk_full_total',
                'quarantined_total',
                'salvaged_total',
                'lease_expired_total',
                'redriven_total',
                'purged_total',
            ),
            0,
        )
        self._run_lock = threading.Lock()

        self._leases: dict[int, float] = {}  # seq -> monotonic deadline
        self._lease_lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._consumer_fd: int | None = None
        self._warned_consumer = False
        self._rows_cond = threading.Condition()
        self._rows_generation = 0
        self._space_cond = threading.Condition()
        self._space_generation = 0
        self.quarantined: list[quarantine.Quarantined] = []

        self.path.parent.mkdir(parents=True, exist_ok=True)
        incident = self._check_or_quarantine(on_corrupt)
        try:
            self._writer = self._open_writer()
            self._reader = _connect(self.path, busy_timeout_sec)
            self._reader_lock = threading.Lock()
        except sqlite3.Error as exc:
            raise QueueStorageError(f'node {node_id!r}: cannot open queue file {self.path}: {exc}') from exc
        if incident is not None:
            self._record_incident(incident, self._salvage_at_open(incident))

        self._committer = GroupCommitter(
            self._writer,
            self._begin_txn,
            self._finish_txn,
            name=f'{node_id}-committer',
            max_batch_weight=max_batch_rows,
            map_error=self._map_sqlite_error,
        )
        self._checkpoint_stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_interval_sec,),
            name=f'{node_id}-checkpoint',
            daemon=True,
        )
        self._checkpointer.start()

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
            mode = conn.execute('PRAGMA journal_mode=WAL').fetchone()[0]
            if str(mode).lower() != 'wal':
                raise QueueStorageError(f'queue file {self.path}: cannot switch to WAL (journal_mode={mode})')
            conn.execute('PRAGMA synchronous=FULL')
            # The checkpoint thread keeps the WAL small; this is only the safety net for a stalled one.
            conn.execute('PRAGMA wal_autocheckpoint=16384')
            if self._max_page_count:
                conn.execute(f'PRAGMA max_page_count={int(self._max_page_count)}')
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create our tables, or add our columns to an upstream file; recount the live size."""
        conn.execute('BEGIN IMMEDIATE')
        try:
            conn.execute(_CREATE_PACKETS)
            present = {row[1] for row in conn.execute('PRAGMA table_info(packets)')}
            for name, definition in _EXTRA_COLUMNS:
                if name not in present:
                    conn.execute(f'ALTER TABLE packets ADD COLUMN {name} {definition}')
            if 'enqueued_epoch' not in present:  # rows of an upstream file: derive what we add
                conn.execute(
                    'UPDATE packets SET enqueued_epoch ='
                    ' COALESCE(julianday(enqueued_at) * 86400.0 - 210866760000.0, 0),'
                    ' size_bytes = length(payload_json) + length(meta_json),'
                    " idempotency_key = COALESCE(NULLIF(idempotency_key, ''), packet_id)"
                )
            for statement in _CREATE_OTHERS:
                conn.execute(statement)
            conn.execute(
                'INSERT OR IGNORE INTO queue_info (key, value) VALUES (?, ?)',
                ('schema_version', str(SCHEMA_VERSION)),
            )
            conn.executemany(
                'INSERT OR IGNORE INTO queue_counters (name, value) VALUES (?, 0)', [(n,) for n in LEDGER]
            )
            rows, size = conn.execute('SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM packets').fetchone()
            conn.execute("UPDATE queue_counters SET value = ? WHERE name = 'depth_rows'", (rows,))
            conn.execute("UPDATE queue_counters SET value = ? WHERE name = 'depth_bytes'", (size,))
            conn.execute('COMMIT')
        except BaseException:
            if conn.in_transaction:
                conn.execute('ROLLBACK')
            raise

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
        code = getattr(exc, 'sqlite_errorcode', 0) or 0
        if (code & 0xFF) == _SQLITE_FULL or 'full' in str(exc).lower():
            self._count('disk_full_total')
            return DiskFullError(
                f'node {self.node_id!r}: queue file {self.path} is full ({exc}); '
                'the write was rolled back and nothing of it was accepted'
            )
        return QueueStorageError(f'node {self.node_id!r}: queue file {self.path}: {exc}')

    def _count(self, name: str, n: int = 1) -> None:
        with self._run_lock:
            self._run[name] += n

    # -- producing ---------------------------------------------------------------------------
    def _row_for(self, packet: StreamPacket, key: str | None, now: float, now_iso: str) -> tuple[Any, ...]:
        if not isinstance(packet, StreamPacket):
            raise TypeError(
                f'node {self.node_id!r}: enqueue expects a StreamPacket, got {type(packet).__name__}'
            )
        where = {'node_id': self.node_id, 'kind': packet.kind, 'source_id': packet.source_id}
        payload_json = to_json_text(packet.payload, field='payload', **where)
        meta_json = to_json_text(packet.meta, field='meta', **where)
        if key is None or not str(key).strip():
            raw = packet.meta.get(MetaKey.IDEMPOTENCY_KEY)
            key = raw if raw is not None and str(raw).strip() else packet.packet_id
        key = wire_key(str(key).strip())  # header-safe, the same on every retry
        size = len(payload_json) + len(meta_json)
        return (
            now_iso,
            now,
            key,
            packet.packet_id,
            packet.ts,
            packet.kind,
            packet.source_id,
            payload_json,
            meta_json,
            size,
        )

    def enqueue(
        self, packet: StreamPacket, idempotency_key: str | None = None, timeout: float | None = None
    ) -> int:
        """Store `packet`; returns its seq once committed (or the seq of the row with the same key).

        Raises NotJsonError for a non-JSON payload/meta, QueueFullError when a limit refuses it
        (policy 'refuse', or 'block' past `timeout`/block_timeout_sec), DiskFullError on SQLITE_FULL.
        When it returns, the event is accepted: nothing short of losing the disk loses it.
        """
        return self.enqueue_many([packet], [idempotency_key], timeout=timeout)[0]

    def enqueue_many(
        self,
        packets: Sequence[StreamPacket],
        keys: Sequence[str | None] | None = None,
        timeout: float | None = None,
    ) -> list[int]:
        """Store several packets in one transaction (all or none); returns their seqs in order."""
        if self._closed:
            raise QueueClosedError(f'node {self.node_id!r}: queue {self.path} is closed')
        if not packets:
            return []
        now = self._wall()
        now_iso = _iso_now(now)
        keys = keys if keys is not None else [None] * len(packets)
        if len(keys) != len(packets):
            raise ValueError(f'node {self.node_id!r}: {len(packets)} packets but {len(keys)} keys')
        rows = [self._row_for(p, k, now, now_iso) for p, k in zip(packets, keys, strict=True)]
        self._refuse_never_fitting(rows)
        wait = self.block_timeout_sec if timeout is None else timeout
        deadline = self._mono() + wait
        while True:
            with self._space_cond:
                generation = self._space_generation
            try:
                return self._committer.run(partial(self._insert_rows, rows), weight=len(rows))
            except _NoRoom as full:
                if self.full_policy is FullPolicy.REFUSE or self._mono() >= deadline:
                    self._count('refused_total', len(rows))
                    how = (
                        'refused'
                        if self.full_policy is FullPolicy.REFUSE
                        else f'blocked {wait:g} s, then refused'
                    )
                    _LOG.warning('node %s: queue full: %s (%s)', self.node_id, full, how)
                    raise QueueFullError(
                        f'node {self.node_id!r}: queue {self.path} is full ({full}); '
                        f'event {how}, not accepted'
                    ) from None
                with self._space_cond:
                    if self._space_generation == generation:
                        # other processes may free room too: look again at least every 0.25 s
                        self._space_cond.wait(min(0.25, max(0.0, deadline - self._mono())))

    def _refuse_never_fitting(self, rows: list[tuple[Any, ...]]) -> None:
        error = BatchTooLargeError if len(rows) > 1 else QueueFullError
        if self.max_rows is not None and len(rows) > self.max_rows:
            self._count('refused_total', len(rows))
            raise error(
                f'node {self.node_id!r}: {len(rows)} events in one call exceed max_rows={self.max_rows}'
            )
        if self.max_bytes is not None:
            size = sum(r[9] for r in rows)
            if size > self.max_bytes:
                self._count('refused_total', len(rows))
                raise error(
                    f'node {self.node_id!r}: {size} bytes in one call exceed max_bytes={self.max_bytes}'
                )

    def _fits(self, txn: Txn, add_rows: int, add_bytes: int) -> str | None:
        rows = txn.state['rows'] + add_rows
        size = txn.state['bytes'] + add_bytes
        if self.max_rows is not None and rows > self.max_rows:
            return f'max_rows={self.max_rows} reached ({txn.state["rows"]} rows queued)'
        if self.max_bytes is not None and size > self.max_bytes:
            return f'max_bytes={self.max_bytes} reached ({txn.state["bytes"]} bytes queued)'
        return None

    def _existing_seq(self, conn: sqlite3.Connection, key: str) -> int | None:
        row = conn.execute('SELECT seq FROM packets WHERE idempotency_key = ?', (key,)).fetchone()
        return None if row is None else int(row[0])

    def _insert_rows(self, rows: list[tuple[Any, ...]], txn: Txn) -> list[int]:
        """The enqueue op. Usually it only reserves room and leaves the INSERT to `_finish_txn`,
        which writes the rows of every enqueue in the batch with one multi-row statement: on a
        busy committer each SQLite call is a GIL round-trip, so one call per batch instead of one
        per row is what lets hundreds of producers share a commit. The returned list is filled
        in before the commit, i.e. before the caller sees it."""
        size = sum(r[9] for r in rows)
        if self._fits(txn, len(rows), size) is None:
            txn.state['rows'] += len(rows)  # provisional; duplicates are given back in _finish_txn
            txn.state['bytes'] += size
            seqs: list[int] = []
            txn.state.setdefault('inserts', []).append((rows, seqs))
            return seqs
        # near a limit: duplicates take no room, so find out what is really new before refusing
        conn = txn.conn
        new_keys: set[str] = set()
        new_rows = new_bytes = 0
        for row in rows:
            if row[2] not in new_keys and self._existing_seq(conn, row[2]) is None:
                new_keys.add(row[2])
                new_rows += 1
                new_bytes += row[9]
        problem = self._fits(txn, new_rows, new_bytes)
        if problem is not None:
            raise _NoRoom(problem)
        seqs, inserted, inserted_bytes = self._insert_one_by_one(conn, rows)
        txn.state['rows'] += inserted
        txn.state['bytes'] += inserted_bytes
        self._count_inserts(txn, len(rows), inserted, inserted_bytes)
        return seqs

    def _count_inserts(self, txn: Txn, offered: int, inserted: int, inserted_bytes: int) -> None:
        self._bump(txn, 'depth_rows', inserted)
        self._bump(txn, 'depth_bytes', inserted_bytes)
        self._bump(txn, 'enqueued_total', inserted)
        self._bump(txn, 'duplicate_total', offered - inserted)

    def _insert_one_by_one(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]
    ) -> tuple[list[int], int, int]:
        seqs: list[int] = []
        inserted = inserted_bytes = 0
        for row in rows:
            cur = conn.execute(_INSERT, row)
            if cur.rowcount == 1:
                seqs.append(int(cur.lastrowid))  # type: ignore[arg-type]
                inserted += 1
                inserted_bytes += row[9]
            else:
                seq = self._existing_seq(conn, row[2])
                if seq is None:  # cannot happen with the unique index; never report a phantom seq
                    raise QueueStorageError(f'node {self.node_id!r}: key {row[2]!r} conflicted but is absent')
                seqs.append(seq)
        return seqs, inserted, inserted_bytes

    def _write_reserved_inserts(self, txn: Txn) -> None:
        """Insert the rows reserved by this batch's enqueue ops, in op order, in few statements.

        A chunk whose rows are all new gets consecutive seqs (AUTOINCREMENT, one writer), so the
        seqs follow from the last rowid. A chunk with a duplicate key (present before, or twice in
        the batch) is rolled back to its savepoint and inserted row by row, which knows exactly
        which rows were new.
        """
        inserts = txn.state.pop('inserts', None)
        if not inserts:
            return
        conn = txn.conn
        pairs = [(row, seqs) for rows, seqs in inserts for row in rows]
        offered = len(pairs)
        reserved_bytes = sum(row[9] for row, _ in pairs)
        inserted = inserted_bytes = 0
        for start in range(0, len(pairs), _MULTI_INSERT_ROWS):
            chunk = pairs[start : start + _MULTI_INSERT_ROWS]
            rows = [row for row, _ in chunk]
            conn.execute('SAVEPOINT multi_insert')
            cur = conn.execute(_multi_insert_sql(len(rows)), [value for row in rows for value in row])
            if cur.rowcount == len(rows):
                conn.execute('RELEASE multi_insert')
                first = int(cur.lastrowid) - len(rows) + 1  # type: ignore[arg-type]
                chunk_seqs = range(first, first + len(rows))
                inserted += len(rows)
                inserted_bytes += sum(row[9] for row in rows)
            else:
                conn.execute('ROLLBACK TO multi_insert')
                conn.execute('RELEASE multi_insert')
                chunk_seqs, n_new, n_bytes = self._insert_one_by_one(conn, rows)
                inserted += n_new
                inserted_bytes += n_bytes
            for (_, seqs), seq in zip(chunk, chunk_seqs, strict=True):
                seqs.append(seq)
        txn.state['rows'] -= offered - inserted
        txn.state['bytes'] -= reserved_bytes - inserted_bytes
        self._count_inserts(txn, offered, inserted, inserted_bytes)

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
                self._committer.submit(WriteOp(partial(self._note_expired, expired), weight=len(expired)))
            now_w = self._wall()
            with self._reader_lock:
                found = self._reader.execute(
                    f'SELECT {_ROW_COLUMNS} FROM packets WHERE next_attempt_at <= ? OR next_attempt_at > ? '
                    'ORDER BY seq LIMIT ?',
                    (now_w, now_w + self.max_retry_delay_sec, limit + len(skip)),
                ).fetchall()
            rows = [QueuedRow(*r) for r in found if r[0] not in skip][:limit]
            deadline = now_m + lease_sec
            with self._lease_lock:
                for row in rows:
                    self._leases[row.seq] = deadline
            return rows

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
        self, acks: Iterable[int] = (), nacks: Iterable[Nack] = (), deads: Iterable[DeadLetter] = ()
    ) -> SettleResult:
        """Record outcomes of delivery attempts in one transaction (acks delete the row and bump
        the acked ledger in the same commit), then end the leases."""
        acks, nacks, deads = list(acks), list(nacks), list(deads)
        if not (acks or nacks or deads):
            return SettleResult(0, 0, 0)
        weight = len(acks) + len(nacks) + len(deads)
        return self._committer.run(partial(self._settle_op, acks, nacks, deads), weight=weight)

    def _settle_op(
        self, acks: list[int], nacks: list[Nack], deads: list[DeadLetter], txn: Txn
    ) -> SettleResult:
        conn = txn.conn
        now = self._wall()
        removed_rows = removed_bytes = 0
        acked = 0
        for seq in acks:
            row = conn.execute('DELETE FROM packets WHERE seq = ? RETURNING size_bytes', (seq,)).fetchone()
            if row is not None:
                acked += 1
                removed_bytes += row[0]
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

    # -- dead letters --------------------------------------------------------------------------
    def list_dead(self, limit: int = 50, after_seq: int = 0) -> list[DeadRow]:
        with self._reader_lock:
            found = self._reader.execute(
                'SELECT seq, idempotency_key, packet_id, ts, kind, source_id, attempts, reason, http_status, '
                'dead_at, enqueued_at, size_bytes, payload_json FROM dead_letters WHERE seq > ? '
                'ORDER BY seq LIMIT ?',
                (after_seq, limit),
            ).fetchall()
        return [DeadRow(*r) for r in found]

    def dead_count(self) -> int:
        with self._reader_lock:
            return int(self._reader.execute('SELECT COUNT(*) FROM dead_letters').fetchone()[0])

    def redrive(self, seqs: Iterable[int] | None = None) -> RedriveResult:
        """Move dead letters (all, or the given seqs) back into the queue as new, due rows with
        attempts reset. Respects the queue limits: what does not fit stays a dead letter."""
        wanted = None if seqs is None else sorted(set(seqs))
        return self._committer.run(partial(self._redrive_op, wanted), weight=256)

    def _redrive_op(self, wanted: list[int] | None, txn: Txn) -> RedriveResult:
        conn = txn.conn
        if wanted is None:
            candidates = conn.execute(
                'SELECT seq, idempotency_key, size_bytes FROM dead_letters ORDER BY seq'
            ).fetchall()
        else:
            candidates = [
                row
                for s in wanted
                for row in conn.execute(
                    'SELECT seq, idempotency_key, size_bytes FROM dead_letters WHERE seq = ?', (s,)
                ).fetchall()
            ]
        now = self._wall()
        now_iso = _iso_now(now)
        moved = already = no_room = 0
        moved_bytes = 0
        for seq, key, size in candidates:
            if self._existing_seq(conn, key) is not None:
                conn.execute('DELETE FROM dead_letters WHERE seq = ?', (seq,))
                already += 1
                continue
            if self._fits(txn, moved + 1, moved_bytes + size) is not None:
                no_room += 1
                continue
            conn.execute(
                'INSERT INTO packets (enqueued_at, enqueued_epoch, idempotency_key, packet_id, ts, kind, '
                'source_id, payload_json, meta_json, size_bytes) '
                'SELECT ?, ?, idempotency_key, packet_id, ts, kind, source_id, '
                'payload_json, meta_json, size_bytes FROM dead_letters WHERE seq = ?',
                (now_iso, now, seq),
            )
            conn.execute('DELETE FROM dead_letters WHERE seq = ?', (seq,))
            moved += 1
            moved_bytes += size
        txn.state['rows'] += moved
        txn.state['bytes'] += moved_bytes
        self._bump(txn, 'depth_rows', moved)
        self._bump(txn, 'depth_bytes', moved_bytes)
        self._bump(txn, 'redriven_total', moved)
        return RedriveResult(moved, already, no_room)

    def bury(
        self, packet: StreamPacket, reason: str, http_status: int | None = None, attempts: int = 1
    ) -> int:
        """Put a packet straight into the dead-letter table (a synchronous sink gave up on it).
        Returns its seq; `deadletter list/redrive` then treat it like any other dead letter."""
        now = self._wall()
        row = self._row_for(packet, None, now, _iso_now(now))

        def op(txn: Txn) -> int:
            existing = self._existing_seq(txn.conn, row[2])
            if existing is not None:  # the key is queued anyway: it will be delivered from there
                return existing
            seq = int(txn.conn.execute(_INSERT, row).lastrowid)  # type: ignore[arg-type]
            txn.conn.execute(_DEAD_COPY, (attempts, reason[:1000], http_status, _iso_now(now), seq))
            txn.conn.execute('DELETE FROM packets WHERE seq = ?', (seq,))
            self._bump(txn, 'dead_letter_total', 1)
            return seq

        return self._committer.run(op)

    def purge(self, seqs: Iterable[int] | None = None) -> int:
        """Delete dead letters for good (all, or the given seqs). Returns how many."""
        wanted = None if seqs is None else sorted(set(seqs))

        def op(txn: Txn) -> int:
            if wanted is None:
                count = txn.conn.execute('DELETE FROM dead_letters').rowcount
            else:
                count = sum(
                    txn.conn.execute('DELETE FROM dead_letters WHERE seq = ?', (s,)).rowcount for s in wanted
                )
            self._bump(txn, 'purged_total', count)
            return count

        return self._committer.run(op)

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

    def depth(self) -> int:
        with self._reader_lock:
            row = self._reader.execute(
                "SELECT value FROM queue_counters WHERE name = 'depth_rows'"
            ).fetchone()
        return int(row[0]) if row else 0

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
            **run,
        }

    # -- housekeeping --------------------------------------------------------------------------
    def _checkpoint_loop(self, interval: float) -> None:
        """Copy the WAL into the main file off the enqueue path (keeps enqueue p99 low)."""
        try:
            conn = _connect(self.path, self._busy_timeout_sec)
        except sqlite3.Error:
            _LOG.exception('node %s: checkpoint connection failed; relying on autocheckpoint', self.node_id)
            return
        try:
            while not self._checkpoint_stop.wait(interval):
                try:
                    conn.execute('PRAGMA wal_checkpoint(PASSIVE)').fetchall()
                except sqlite3.Error as exc:
                    _LOG.debug('node %s: checkpoint skipped: %s', self.node_id, exc)
        finally:
            conn.close()

    def close(self) -> None:
        """Commit pending writes, checkpoint, close. Leased rows stay in the file (due on next open)."""
        if self._closed:
            return
        self._closed = True
        self._committer.close()
        self._checkpoint_stop.set()
        self._checkpointer.join(5.0)
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchall()
        with self._reader_lock:
            self._reader.close()
        self._writer.close()
        if self._consumer_fd is not None:
            os.close(self._consumer_fd)  # also drops the flock
            self._consumer_fd = None
        with self._rows_cond:
            self._rows_cond.notify_all()

    def __enter__(self) -> DurableQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
