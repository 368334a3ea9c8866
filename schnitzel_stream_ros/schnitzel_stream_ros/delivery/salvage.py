"""Read every row that can still be read out of a damaged queue file.

A damaged page (a dying SD card, a torn write) makes `PRAGMA quick_check` fail and the file is
moved aside (`quarantine.py`), but the accepted, undelivered events on all the other pages are
still there. This module gets them back: it copies the damaged file (with its -wal, so commits not
yet checkpointed count too) to a scratch directory, then walks the `packets` and `dead_letters`
tables in seq order with range reads; where a read hits a damaged page it steps over it with point
reads (`WHERE seq = ?`, which descend the B-tree from the root and so reach every page that is still
sound) until rows come back, and continues. A row whose values do not look like a queue row
(wrong types, payload/meta not JSON) is counted as unreadable, never copied.

The damaged file itself is never written: it stays where quarantine put it, for inspection.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Columns copied for a queued row (the order of the INSERT in DurableQueue.salvage).
PACKET_COLUMNS = (
    'seq',
    'enqueued_at',
    'enqueued_epoch',
    'idempotency_key',
    'packet_id',
    'ts',
    'kind',
    'source_id',
    'payload_json',
    'meta_json',
    'size_bytes',
    'attempts',
)
DEAD_COLUMNS = (
    'seq',
    'idempotency_key',
    'packet_id',
    'ts',
    'kind',
    'source_id',
    'payload_json',
    'meta_json',
    'enqueued_at',
    'enqueued_epoch',
    'size_bytes',
    'attempts',
    'reason',
    'http_status',
    'dead_at',
)
_TEXT = {'enqueued_at', 'idempotency_key', 'packet_id', 'ts', 'kind', 'source_id', 'dead_at', 'reason'}
_JSON = {'payload_json', 'meta_json'}
#: What a column an upstream (or older) file lacks reads as.
_DEFAULTS = {
    'enqueued_epoch': '0',
    'size_bytes': 'length(payload_json) + length(meta_json)',
    'attempts': '0',
    'idempotency_key': 'packet_id',
}
_RANGE = 256
#: Longest run of unreadable seqs stepped over one by one before the walk gives up on the table.
MAX_GAP = 1_000_000


@dataclass
class Salvaged:
    """What could be read: rows (as column tuples) and how many reads failed."""

    packets: list[tuple] = field(default_factory=list)
    dead_letters: list[tuple] = field(default_factory=list)
    unreadable: int = 0  # rows or seqs that could not be read or did not look like queue rows
    problems: list[str] = field(default_factory=list)  # first few errors, for the incident record


def _valid(columns: tuple[str, ...], row: tuple) -> bool:
    for name, value in zip(columns, row, strict=True):
        if name in _TEXT and not isinstance(value, str):
            return False
        if name in _JSON:
            if not isinstance(value, str):
                return False
            try:
                json.loads(value)
            except ValueError:
                return False
    return isinstance(row[0], int)


def _select_list(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> str | None:
    present = {row[1] for row in conn.execute(f'PRAGMA table_info({table})')}
    if not present:
        return None  # no such table (an upstream file has no dead_letters)
    parts = []
    for name in columns:
        if name in present:
            parts.append(name)
        elif name in _DEFAULTS:
            parts.append(f'{_DEFAULTS[name]} AS {name}')
        else:
            return None
    return ', '.join(parts)


def _walk(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], out: Salvaged) -> Iterator[tuple]:
    cols = _select_list(conn, table, columns)
    if cols is None:
        return
    try:
        top = conn.execute(f'SELECT MAX(seq) FROM {table}').fetchone()[0]
    except sqlite3.DatabaseError:
        top = None
    if top is None:  # the packets sequence bounds every seq of the file, dead letters' too
        with contextlib.suppress(sqlite3.DatabaseError):
            found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'packets'").fetchone()
            top = found[0] if found else None
    cursor = 0
    while True:
        try:
            rows = conn.execute(
                f'SELECT {cols} FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?', (cursor, _RANGE)
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            if len(out.problems) < 5:
                out.problems.append(f'{table} after seq {cursor}: {exc}')
            resumed = _step_over(conn, table, cols, columns, cursor, top, out)
            if resumed is None:
                return
            row = resumed
            cursor = row[0]
            yield row
            continue
        if not rows:
            return
        for row in rows:
            if _valid(columns, row):
                yield row
            else:
                out.unreadable += 1
        cursor = rows[-1][0]


def _step_over(
    conn: sqlite3.Connection,
    table: str,
    cols: str,
    columns: tuple[str, ...],
    cursor: int,
    top: int | None,
    out: Salvaged,
) -> tuple | None:
    """Point reads after `cursor` until one returns a sound row (None: nothing more to read)."""
    limit = cursor + MAX_GAP if top is None else top
    seq = cursor + 1
    while seq <= limit:
        try:
            row = conn.execute(f'SELECT {cols} FROM {table} WHERE seq = ?', (seq,)).fetchone()
        except sqlite3.DatabaseError:
            out.unreadable += 1
            seq += 1
            continue
        if row is not None:
            if _valid(columns, row):
                return row
            out.unreadable += 1
        seq += 1
    return None


def read_salvageable(path: Path) -> Salvaged:
    """Every readable queued row and dead letter of the (damaged) queue file at `path`."""
    out = Salvaged()
    with tempfile.TemporaryDirectory(prefix='queue-salvage-') as scratch:
        copy = Path(scratch) / 'salvage.db'
        shutil.copyfile(path, copy)
        wal = Path(f'{path}-wal')
        if wal.exists():
            shutil.copyfile(wal, Path(f'{copy}-wal'))
        try:
            conn = sqlite3.connect(str(copy), isolation_level=None)
        except sqlite3.DatabaseError as exc:
            out.problems.append(f'cannot open: {exc}')
            return out
        try:
            for table, columns, rows in (
                ('packets', PACKET_COLUMNS, out.packets),
                ('dead_letters', DEAD_COLUMNS, out.dead_letters),
            ):
                try:
                    rows.extend(_walk(conn, table, columns, out))
                except sqlite3.DatabaseError as exc:  # the schema itself is unreadable
                    out.problems.append(f'{table}: {exc}')
        finally:
            conn.close()
    return out
