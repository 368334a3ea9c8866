"""Open a SQLite file only if it is sound; move a damaged one aside instead of crash-looping.

A queue file can be damaged by a dying SD card, a full disk at the wrong moment or a careless copy.
Refusing to start would stop a site from accepting new events; deleting the file would destroy
evidence and maybe recoverable rows. So a damaged file (and its -wal/-shm) is renamed to
`<name>.corrupt-<utc-ts>`, the incident is reported, and the caller starts a fresh file. The check
runs once per open: a fresh file that fails too is a storage problem and is raised, not looped on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from schnitzel_stream_ros.delivery.errors import QueueStorageError

_LOG = logging.getLogger('schnitzel_stream.delivery.quarantine')

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
#: Side files SQLite keeps next to a WAL database; they travel with the main file.
SIDE_SUFFIXES = ('-wal', '-shm')


@dataclass(frozen=True)
class Quarantined:
    """What was moved aside and why (the report a caller forwards to logs, counters, events)."""

    original: Path
    moved_to: Path
    reason: str
    at: str


def is_corruption(exc: BaseException) -> bool:
    """True for errors that mean 'this file is damaged', not 'busy' or 'no permission'."""
    code = getattr(exc, 'sqlite_errorcode', None)
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return 'malformed' in text or 'not a database' in text


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """None when `PRAGMA quick_check` says ok, else its first findings (one line)."""
    rows = conn.execute('PRAGMA quick_check(5)').fetchall()
    findings = [' '.join(str(r[0]).split()) for r in rows]  # one line for the log
    if findings == ['ok']:
        return None
    return '; '.join(findings)[:500]


def quarantine_files(path: Path, reason: str, now: Callable[[], datetime] | None = None) -> Quarantined:
    """Rename `path` and its side files to `<name>.corrupt-<utc-ts>[-wal|-shm]`."""
    stamp = (now or (lambda: datetime.now(UTC)))().strftime('%Y%m%dT%H%M%S%fZ')
    target = path.with_name(f'{path.name}.corrupt-{stamp}')
    try:
        os.replace(path, target)
        for suffix in SIDE_SUFFIXES:
            side = Path(f'{path}{suffix}')
            if side.exists():
                os.replace(side, Path(f'{target}{suffix}'))
    except OSError as exc:
        raise QueueStorageError(
            f'queue file {path} is damaged ({reason}) and could not be moved aside: {exc}'
        ) from exc
    _LOG.error('queue file %s is damaged (%s); moved to %s, starting a fresh queue', path, reason, target)
    return Quarantined(path, target, reason, datetime.now(UTC).isoformat())


def check_file(path: Path, connect: Callable[[Path], sqlite3.Connection]) -> str | None:
    """Open `path` with `connect`, run the integrity check, close. Returns the problem or None.

    Non-corruption errors (locked, permission, I/O) are raised as QueueStorageError: moving a
    healthy but busy file aside would split the queue in two.
    """
    if not path.exists():
        return None
    if path.stat().st_size == 0 and not Path(f'{path}-wal').exists():
        return None  # SQLite treats an empty file as a new database; nothing to lose
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        return integrity_problem(conn)
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return str(exc)
        raise QueueStorageError(f'queue file {path}: cannot open for the integrity check: {exc}') from exc
    finally:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
