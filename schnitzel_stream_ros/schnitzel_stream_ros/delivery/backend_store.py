"""The reference backend's storage: events kept once per Idempotency-Key, every POST counted.

This is the oracle of the fault suite: `unique` must equal the number of accepted events and
`duplicates` shows what at-least-once delivery cost. Writes come in batches (one transaction per
event-loop turn of the server) so the oracle is not the bottleneck of a delivery benchmark.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      idempotency_key TEXT NOT NULL UNIQUE,
      path TEXT NOT NULL,
      body TEXT NOT NULL,
      posts INTEGER NOT NULL DEFAULT 1,
      received_at REAL NOT NULL
    )""",
    'CREATE TABLE IF NOT EXISTS backend_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)',
)
_COUNTERS = ('total_posts', 'duplicates', 'faulted_posts', 'invalid_posts')


@dataclass(frozen=True, slots=True)
class Incoming:
    """One event POST as the store sees it."""

    key: str
    path: str
    body: str


def key_for(header_key: str | None, body: bytes) -> str:
    """The Idempotency-Key, or (when a client sends none) a key derived from the body."""
    if header_key:
        return header_key
    return 'sha256:' + hashlib.sha256(body).hexdigest()


class BackendStore:
    """SQLite file (or ':memory:') with the events and the POST counters."""

    def __init__(self, path: str | Path = ':memory:', synchronous: str = 'NORMAL') -> None:
        if synchronous.upper() not in ('OFF', 'NORMAL', 'FULL'):
            raise ValueError(f'synchronous: expected OFF, NORMAL or FULL, got {synchronous!r}')
        if str(path) != ':memory:':
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute('PRAGMA journal_mode=WAL')
        self._conn.execute(f'PRAGMA synchronous={synchronous.upper()}')
        for statement in _SCHEMA:
            self._conn.execute(statement)
        self._conn.executemany(
            'INSERT OR IGNORE INTO backend_counters (name, value) VALUES (?, 0)', [(n,) for n in _COUNTERS]
        )
        self._counters = {
            n: int(v) for n, v in self._conn.execute('SELECT name, value FROM backend_counters')
        }
        self._unique = int(self._conn.execute('SELECT COUNT(*) FROM events').fetchone()[0])

    def store(self, items: list[Incoming]) -> list[bool]:
        """Store a batch in one transaction; True per item that was new, False for a duplicate."""
        if not items:
            return []
        now = time.time()
        created: list[bool] = []
        conn = self._conn
        conn.execute('BEGIN IMMEDIATE')
        try:
            for item in items:
                posts = conn.execute(
                    'INSERT INTO events (idempotency_key, path, body, received_at) VALUES (?, ?, ?, ?) '
                    'ON CONFLICT(idempotency_key) DO UPDATE SET posts = posts + 1 RETURNING posts',
                    (item.key, item.path, item.body, now),
                ).fetchone()[0]
                created.append(posts == 1)
            new = sum(created)
            dup = len(items) - new
            conn.execute(  # one statement for both counters: per-statement cost is the store's CPU
                "UPDATE backend_counters SET value = value + CASE name WHEN 'total_posts' THEN ? ELSE ? END "
                "WHERE name IN ('total_posts', 'duplicates')",
                (len(items), dup),
            )
            conn.execute('COMMIT')
        except BaseException:
            if conn.in_transaction:
                conn.execute('ROLLBACK')
            raise
        self._unique += new
        self._counters['total_posts'] += len(items)
        self._counters['duplicates'] += dup
        return created

    def count(self, name: str, n: int = 1) -> None:
        """Count a POST that was not stored (fault mode answer, invalid body)."""
        self._conn.execute('UPDATE backend_counters SET value = value + ? WHERE name = ?', (n, name))
        self._counters[name] += n

    def stats(self) -> dict[str, int]:
        return {'unique': self._unique, **self._counters}

    def events(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            'SELECT id, idempotency_key, path, body, posts, received_at FROM events '
            'WHERE id > ? ORDER BY id LIMIT ?',
            (after, limit),
        ).fetchall()
        return [
            {'id': r[0], 'key': r[1], 'path': r[2], 'body': r[3], 'posts': r[4], 'received_at': r[5]}
            for r in rows
        ]

    def keys(self) -> set[str]:
        return {r[0] for r in self._conn.execute('SELECT idempotency_key FROM events')}

    def close(self) -> None:
        self._conn.close()
