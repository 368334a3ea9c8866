"""The blackboard: a keyed, versioned context the nodes of one graph read, write and watch.

Typical use: occupancy per zone written by the tracking lane and read by a policy; the
controller's current mode. Plugins reach it only through their context (`self.blackboard`, plugin.py).

Why a SQLite file is the blackboard: the containers of a graph are processes on one host, and what
watchers need — every committed version, in commit order, also across containers and restarts —
is what a commit log gives. Every write is one transaction that bumps the key's version and appends
to the log (`seq` = global commit order); a watcher reads the log after its cursor. The nodes of a
container share one connection (the in-container fast path: a write is readable by its neighbours
the moment it commits, no DDS hop); other containers see it at their next read. The file persists,
so values survive container restarts and graph restarts (`persist: false` clears it when the graph
starts; docs/state.md).

Two writers, one key — the rule is the writer's choice per write, both documented:
- `put(key, value)`: last writer wins; the writes are serialized by the file, the later commit is
  the current value, and both versions are in the log in that order;
- `put(key, value, expect=n)`: compare-and-set; it commits only if the key is at version n (0:
  absent), else BlackboardConflict carries the current version and nothing changed (read, retry).
Bounded: values up to MAX_VALUE_BYTES of JSON; the log keeps the last `max_versions` versions
(older ones are trimmed and counted; a watcher that fell behind them is told how many it missed).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.codec.json_values import dumps_json, loads_json
from schnitzel_stream_ros.document_limits import json_text_limits

MAX_VALUE_BYTES = 256 * 1024
MAX_KEY_CHARS = 256
BUSY_TIMEOUT_SEC = 10.0
_VALUE_LIMITS = json_text_limits(MAX_VALUE_BYTES)
_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS board (key TEXT PRIMARY KEY, version INTEGER NOT NULL, seq INTEGER NOT NULL)',
    'CREATE TABLE IF NOT EXISTS board_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,'
    ' version INTEGER NOT NULL, value TEXT NOT NULL, writer TEXT NOT NULL, written_unix REAL NOT NULL)',
)


class BlackboardConflict(ValueError):
    """A compare-and-set write found another version; nothing changed."""

    def __init__(self, key: str, expected: int, current: int) -> None:
        super().__init__(f'blackboard key {key!r}: expected version {expected}, it is at {current}')
        self.key, self.expected, self.current = key, expected, current


class BlackboardError(RuntimeError):
    """The blackboard file cannot be used, or a key/value is refused; one line."""


@dataclass(frozen=True)
class Version:
    """One committed version of a key."""

    key: str
    version: int
    value: Any
    writer: str
    seq: int
    written_unix: float


class BlackboardStore:
    """One blackboard file; thread-safe (one connection, one lock)."""

    def __init__(self, path: str | os.PathLike[str], max_versions: int = 100_000) -> None:
        self.path = Path(path)
        self.max_versions = max_versions
        self._lock = threading.Lock()
        self._writes = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SEC, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute('PRAGMA journal_mode=WAL')
            self._conn.execute('PRAGMA synchronous=FULL')
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise BlackboardError(f'blackboard file {self.path}: cannot open: {exc}') from None

    @staticmethod
    def _check_key(key: str) -> None:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise BlackboardError(
                f'blackboard key must be a non-empty text of at most {MAX_KEY_CHARS} characters, got {key!r}'
            )

    def put(self, key: str, value: Any, writer: str, expect: int | None = None) -> Version:
        """Commit a new version of `key` (see the module docstring for the rule)."""
        self._check_key(key)
        try:
            text = dumps_json(value, f'blackboard key {key!r}')
        except ValueError as exc:
            raise BlackboardError(str(exc)) from None
        if len(text.encode('utf-8')) > MAX_VALUE_BYTES:
            raise BlackboardError(f'blackboard key {key!r}: value over {MAX_VALUE_BYTES} bytes')
        now = time.time()
        with self._lock:
            conn = self._conn
            try:
                conn.execute('BEGIN IMMEDIATE')
                try:
                    row = conn.execute('SELECT version FROM board WHERE key = ?', (key,)).fetchone()
                    current = row[0] if row else 0
                    if expect is not None and expect != current:
                        raise BlackboardConflict(key, expect, current)
                    seq = conn.execute(
                        'INSERT INTO board_log (key, version, value, writer, written_unix)'
                        ' VALUES (?, ?, ?, ?, ?)',
                        (key, current + 1, text, writer, now)).lastrowid
                    conn.execute('INSERT INTO board VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET'
                                 ' version = excluded.version, seq = excluded.seq', (key, current + 1, seq))
                    conn.execute('COMMIT')
                except BaseException:
                    conn.execute('ROLLBACK')
                    raise
            except sqlite3.Error as exc:
                raise BlackboardError(
                    f'blackboard file {self.path}: write of {key!r} failed: {exc}'
                ) from None
            self._writes += 1
            if self._writes % 1000 == 0:
                self._trim()
        return Version(key, current + 1, value, writer, int(seq), now)

    def _trim(self) -> None:
        """Keep the last max_versions log rows (and always each key's current one)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute('DELETE FROM board_log WHERE seq <= (SELECT MAX(seq) FROM board_log) - ?'
                               ' AND seq NOT IN (SELECT seq FROM board)', (self.max_versions,))

    def _version(self, row: tuple) -> Version:
        seq, key, version, text, writer, written = row
        return Version(key, version, loads_json(text, f'blackboard key {key!r}', _VALUE_LIMITS), writer, seq,
                       written)

    def get(self, key: str) -> Version | None:
        self._check_key(key)
        with self._lock:
            try:
                row = self._conn.execute(
                    'SELECT l.seq, l.key, l.version, l.value, l.writer, l.written_unix FROM board b'
                    ' JOIN board_log l ON l.seq = b.seq WHERE b.key = ?', (key,)).fetchone()
            except sqlite3.Error as exc:
                raise BlackboardError(f'blackboard file {self.path}: read of {key!r} failed: {exc}') from None
        return None if row is None else self._version(row)

    def changes(
        self, after_seq: int, prefixes: tuple[str, ...], limit: int = 1000
    ) -> tuple[list[Version], int, int]:
        """Versions committed after `after_seq` under `prefixes` (all: ('',)), in commit order, and
        how many versions after `after_seq` the log no longer holds (trimmed: the watcher missed them)."""
        with self._lock:
            try:
                first = self._conn.execute('SELECT MIN(seq) FROM board_log').fetchone()[0]
                rows = self._conn.execute(
                    'SELECT seq, key, version, value, writer, written_unix FROM board_log WHERE seq > ?'
                    ' ORDER BY seq LIMIT ?', (after_seq, limit)).fetchall()
            except sqlite3.Error as exc:
                raise BlackboardError(f'blackboard file {self.path}: read failed: {exc}') from None
        missed = max(0, (first or 0) - after_seq - 1) if first is not None and after_seq >= 0 else 0
        out = [self._version(r) for r in rows if r[1].startswith(prefixes)]
        last = rows[-1][0] if rows else after_seq
        return out, missed, last

    def last_seq(self) -> int:
        with self._lock:
            return int(self._conn.execute('SELECT COALESCE(MAX(seq), 0) FROM board_log').fetchone()[0])

    def clear(self) -> None:
        with self._lock:
            self._conn.execute('DELETE FROM board')
            self._conn.execute('DELETE FROM board_log')

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


class Blackboard:
    """What one node sees (`self.blackboard`): get, put, watch + changes, scoped to its graph."""

    def __init__(self, store: BlackboardStore, scope: str, writer: str) -> None:
        self._store = store
        self._scope = scope.rstrip('/') + '/'  # the graph namespace: two graphs never share keys
        self.writer = writer
        self._prefixes: tuple[str, ...] = ()
        self._cursor = -1
        self.missed = 0  # versions a watcher fell too far behind to see (trimmed from the log)

    def get(self, key: str) -> tuple[Any, int]:
        """(value, version) of `key`; (None, 0) when it has none."""
        BlackboardStore._check_key(key)
        found = self._store.get(self._scope + key)
        return (None, 0) if found is None else (found.value, found.version)

    def put(self, key: str, value: Any, expect: int | None = None) -> int:
        """Commit `value`; returns its version. `expect`: compare-and-set (BlackboardConflict)."""
        BlackboardStore._check_key(key)
        return self._store.put(self._scope + key, value, self.writer, expect).version

    def watch(self, prefix: str = '', from_start: bool = False) -> None:
        """Changes of keys under `prefix` from now on (or every version still in the log)."""
        self._prefixes += (self._scope + prefix,)
        if self._cursor < 0:
            self._cursor = 0 if from_start else self._store.last_seq()

    def changes(self, limit: int = 1000) -> list[tuple[str, Any, int]]:
        """(key, value, version) of every version committed under the watched prefixes since the
        last call, in commit order (at most `limit` per call; call again for the rest)."""
        if not self._prefixes:
            return []
        versions, missed, last = self._store.changes(self._cursor, self._prefixes, limit)
        self.missed += missed
        self._cursor = last
        return [(v.key[len(self._scope):], v.value, v.version) for v in versions]


def start_of_graph(path: str | os.PathLike[str] | None, persist: bool) -> None:
    """A graph starts (not a container restart): without persistence its blackboard starts empty."""
    if path is not None and not persist and Path(path).exists():
        store = BlackboardStore(path)
        try:
            store.clear()
        finally:
            store.close()


_OPEN: dict[Path, BlackboardStore] = {}
_OPEN_LOCK = threading.Lock()


def shared_blackboard(path: str | os.PathLike[str], max_versions: int) -> BlackboardStore:
    """The process' one connection to a blackboard file (every node of a container shares it)."""
    key = Path(path).absolute()
    with _OPEN_LOCK:
        store = _OPEN.get(key)
        if store is None:
            store = _OPEN[key] = BlackboardStore(key, max_versions)
        return store
