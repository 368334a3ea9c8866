"""The checkpoint file of a graph: one SQLite file, one row per stateful node, written atomically.

Why SQLite: one UPSERT is atomic and, in WAL mode with synchronous=FULL, durable once it returns —
a kill -9 (or a power cut) right after leaves the new row, right before leaves the previous one,
never half of either. Several container processes of one graph write to the same file (WAL allows
one writer at a time; a checkpoint is one short transaction, busy_timeout covers the wait).

A row: node (full ROS name `/ns/id`: two graphs in other namespaces may share a file), plugin
(`module:Class`), version (its STATE_VERSION), state (JSON text), bytes, seq (checkpoints written
for this node), written_unix, took_ms. The file comes from disk and may have been edited or
damaged: every read is bounded (size, nesting) and checked; a problem is one line naming the file.
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

FORMAT_VERSION = 1
BUSY_TIMEOUT_SEC = 10.0
#: the largest state the store reads back, whatever a node's bound says (a hostile/edited file)
MAX_READ_BYTES = 1024 * 1024 * 1024

_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS checkpoints ('
    ' node TEXT PRIMARY KEY, plugin TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,'
    ' bytes INTEGER NOT NULL, seq INTEGER NOT NULL, written_unix REAL NOT NULL, took_ms REAL NOT NULL)',
    'CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)',
)


class StateStoreError(RuntimeError):
    """The checkpoint file cannot be used; one line naming the file and what to do."""


@dataclass(frozen=True)
class CheckpointRow:
    """One node's last checkpoint, without the state (listing) or with it (read)."""

    node: str
    plugin: str
    version: int
    bytes: int
    seq: int
    written_unix: float
    took_ms: float
    state: Any = None

    def summary(self, now: float | None = None) -> dict[str, Any]:
        age = (time.time() if now is None else now) - self.written_unix
        return {'node': self.node, 'plugin': self.plugin, 'version': self.version, 'bytes': self.bytes,
                'seq': self.seq, 'written_unix': round(self.written_unix, 3), 'age_sec': round(age, 3),
                'took_ms': round(self.took_ms, 3)}


def encode_state(state: Any, where: str) -> str:
    """Strict JSON of a snapshot (ValueError naming `where` when it is not plain data)."""
    return dumps_json(state, where)


class CheckpointStore:
    """One open checkpoint file; thread-safe (one connection, one lock)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StateStoreError(f'no checkpoint file at {self.path}')
        self._lock = threading.Lock()
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SEC, isolation_level=None,
                                         check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StateStoreError(f'checkpoint file {self.path}: cannot open: {exc}') from None
        try:
            mode = self._conn.execute('PRAGMA journal_mode=WAL').fetchone()[0]
            if str(mode).lower() != 'wal':
                raise StateStoreError(f'checkpoint file {self.path}: cannot switch to WAL ({mode})')
            self._conn.execute('PRAGMA synchronous=FULL')
            for statement in _SCHEMA:
                self._conn.execute(statement)
            self._check_format()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StateStoreError(
                f'checkpoint file {self.path} is damaged or not a checkpoint file ({exc}); move it '
                'aside or clear it (schnitzel-stream state clear) to start the nodes with fresh state'
            ) from None
        except BaseException:
            self._conn.close()
            raise

    def _check_format(self) -> None:
        row = self._conn.execute("SELECT value FROM store_meta WHERE key = 'format'").fetchone()
        if row is None:
            self._conn.execute(
                "INSERT OR IGNORE INTO store_meta VALUES ('format', ?)", (str(FORMAT_VERSION),)
            )
        elif row[0] != str(FORMAT_VERSION):
            raise StateStoreError(
                f'checkpoint file {self.path} has format {row[0]!r}; this release reads {FORMAT_VERSION}'
            )

    def write(self, node: str, plugin: str, version: int, text: str, took_ms: float) -> int:
        """Replace `node`'s checkpoint by `text` (JSON) in one transaction; returns its seq."""
        size = len(text.encode('utf-8'))
        with self._lock:
            try:
                row = self._conn.execute(
                    'INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT(node) DO UPDATE SET'
                    ' plugin = excluded.plugin, version = excluded.version, state = excluded.state,'
                    ' bytes = excluded.bytes, seq = checkpoints.seq + 1,'
                    ' written_unix = excluded.written_unix, took_ms = excluded.took_ms RETURNING seq',
                    (node, plugin, int(version), text, size, time.time(), float(took_ms)),
                ).fetchone()
            except sqlite3.Error as exc:
                raise StateStoreError(f'checkpoint file {self.path}: write of {node} failed: {exc}') from None
        return int(row[0])

    def read(self, node: str, max_bytes: int = MAX_READ_BYTES) -> CheckpointRow | None:
        """`node`'s last checkpoint with its state, None when it has none."""
        with self._lock:
            try:
                head = self._conn.execute(
                    'SELECT plugin, version, bytes, seq, written_unix, took_ms, length(CAST(state AS BLOB))'
                    ' FROM checkpoints WHERE node = ?', (node,)).fetchone()
                if head is None:
                    return None
                size = head[6]
                if size > min(max_bytes, MAX_READ_BYTES):
                    raise StateStoreError(
                        f'checkpoint file {self.path}: state of {node} is {size} bytes, over the bound of '
                        f'{min(max_bytes, MAX_READ_BYTES)} (state.max_bytes)'
                    )
                text = self._conn.execute(
                    'SELECT state FROM checkpoints WHERE node = ?', (node,)
                ).fetchone()[0]
            except sqlite3.Error as exc:
                raise StateStoreError(f'checkpoint file {self.path}: read of {node} failed: {exc}') from None
        plugin, version, size, seq, written, took = head[:6]
        if not isinstance(text, str) or not isinstance(version, int) or not isinstance(plugin, str):
            raise StateStoreError(f'checkpoint file {self.path}: row of {node} is malformed')
        try:
            state = loads_json(text, f'checkpoint of {node}', json_text_limits(max(size, 2) + 16, 128))
        except ValueError as exc:
            raise StateStoreError(f'checkpoint file {self.path}: {exc}') from None
        return CheckpointRow(node, plugin, version, size, seq, float(written), float(took), state)

    def list(self) -> list[CheckpointRow]:
        """Every node's checkpoint, without the state (by node name)."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    'SELECT node, plugin, version, bytes, seq, written_unix, took_ms'
                    ' FROM checkpoints ORDER BY node'
                ).fetchall()
            except sqlite3.Error as exc:
                raise StateStoreError(f'checkpoint file {self.path}: cannot list: {exc}') from None
        return [CheckpointRow(str(n), str(p), int(v), int(b), int(s), float(w), float(t))
                for n, p, v, b, s, w, t in rows]

    def delete(self, nodes: list[str] | None = None) -> int:
        """Forget the checkpoints of `nodes` (None: all); returns how many rows went."""
        with self._lock:
            try:
                if nodes is None:
                    return self._conn.execute('DELETE FROM checkpoints').rowcount
                return sum(self._conn.execute('DELETE FROM checkpoints WHERE node = ?', (n,)).rowcount
                           for n in nodes)
            except sqlite3.Error as exc:
                raise StateStoreError(f'checkpoint file {self.path}: delete failed: {exc}') from None

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


_OPEN: dict[Path, CheckpointStore] = {}
_OPEN_LOCK = threading.Lock()


def shared_store(path: str | os.PathLike[str]) -> CheckpointStore:
    """The process' one open store of `path` (every node of a container shares the connection)."""
    key = Path(path).absolute()
    with _OPEN_LOCK:
        store = _OPEN.get(key)
        if store is None:
            store = _OPEN[key] = CheckpointStore(key)
        return store
