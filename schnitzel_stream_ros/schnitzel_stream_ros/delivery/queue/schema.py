"""The queue file's schema: tables, columns, statements, the ledger's names, and the migration
that opens an upstream (schnitzel-stream-platform) file in place."""

from __future__ import annotations

import functools
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')

SCHEMA_VERSION = 1
_SQLITE_FULL = 13


def is_disk_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk (or max_page_count) has no room for the write."""
    return ((getattr(exc, 'sqlite_errorcode', 0) or 0) & 0xFF) == _SQLITE_FULL or 'full' in str(exc).lower()

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


def _iso_now(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _connect(path: Path, busy_timeout_sec: float) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_timeout_sec, isolation_level=None, check_same_thread=False)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
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
