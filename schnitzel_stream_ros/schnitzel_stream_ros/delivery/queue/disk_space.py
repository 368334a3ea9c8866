"""Disk space: the free-space reserve checked before a write, the WAL bound, and space given back.

Why a reserve: a queue that only stops at ENOSPC meets the full disk in the middle of a
transaction, and then even the deletes that would free room (acks need WAL space) can fail. So
before rows are added the queue asks how much room it could still use — the filesystem's free
bytes plus the pages SQLite already owns but no row uses (the freelist, reused before the file
grows) — and refuses early and cleanly (`_LowSpace`, nothing written) when the new rows would
leave less than `min_free_bytes`. Acks and dead-lettering are never refused: they are what frees
room. The reserve is what those writes, the WAL and the rest of the box live on.

The WAL is bounded by `journal_size_limit` (truncated to it after every checkpoint reset) and an
autocheckpoint at the same size; the checkpointer gives freed pages back to the filesystem once a
backlog has drained (incremental vacuum, then a TRUNCATE checkpoint), so a long outage's backlog
does not keep its disk after it was delivered. Both block writers, so they wait for a moment
without enqueues (housekeeping.py).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from schnitzel_stream_ros.delivery.group_commit import Txn
from schnitzel_stream_ros.delivery.queue.rows import _NoRoom
from schnitzel_stream_ros.delivery.queue.schema import is_disk_full

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')

#: Default free-space reserve on the queue's filesystem (bytes): room for acks, the WAL and the box.
DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024
#: Default WAL bound (bytes): journal_size_limit and the autocheckpoint threshold.
DEFAULT_WAL_LIMIT_BYTES = 4 * 1024 * 1024
#: Freed pages are given back once they are at least this many bytes and half of the file.
VACUUM_MIN_BYTES = 1024 * 1024
#: Pages given back per step, and steps per checkpoint round (about 256 MB a round at 4 kB pages).
VACUUM_STEP_PAGES = 256
VACUUM_MAX_STEPS = 256
#: A row costs more on disk than its payload+meta: the index entry, page slack, the WAL copy.
ROW_DISK_FACTOR = 3
ROW_DISK_OVERHEAD = 256


class _LowSpace(_NoRoom):
    """The rows would take the filesystem under the free-space reserve (nothing was written)."""


def filesystem_free_bytes(path: os.PathLike[str] | str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskSpace:
    """The reserve check (inside write ops), WAL pragmas and the give-back (checkpointer thread)."""

    def _space_pragmas(self, conn: sqlite3.Connection) -> None:
        """On the writer connection before the schema exists: incremental vacuum works only when
        set on an empty file (an older file keeps its freelist for reuse), and the WAL bound."""
        if conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 0:
            conn.execute('PRAGMA auto_vacuum=INCREMENTAL')
        page_size = int(conn.execute('PRAGMA page_size').fetchone()[0]) or 4096
        conn.execute(f'PRAGMA journal_size_limit={int(self.wal_limit_bytes)}')
        conn.execute(f'PRAGMA wal_autocheckpoint={max(100, int(self.wal_limit_bytes) // page_size)}')

    def _usable_bytes(self, conn: sqlite3.Connection) -> int:
        """Free bytes of the filesystem plus the file's own unused pages (reused before it grows)."""
        free_pages = int(conn.execute('PRAGMA freelist_count').fetchone()[0])
        page_size = int(conn.execute('PRAGMA page_size').fetchone()[0])
        return filesystem_free_bytes(self.path.parent) + free_pages * page_size

    def _check_reserve(self, txn: Txn, add_bytes: int, add_rows: int) -> None:
        """Raise _LowSpace when these rows would leave less than the reserve (once per transaction
        the filesystem is asked; later ops of the same transaction spend from that answer)."""
        if not self.min_free_bytes:
            return
        need = add_bytes * ROW_DISK_FACTOR + add_rows * ROW_DISK_OVERHEAD
        usable = txn.state.get('usable_bytes')
        if usable is None:
            usable = self._usable_bytes(txn.conn)
        if usable - need < self.min_free_bytes:
            txn.state['usable_bytes'] = usable
            raise _LowSpace(
                f'free space on the filesystem of {self.path} is {usable // 1024} kB, under the reserve '
                f'min_free_bytes={self.min_free_bytes} with {need // 1024} kB more'
            )
        txn.state['usable_bytes'] = usable - need

    def space(self) -> dict[str, Any]:
        """Gauges: file and WAL size, free bytes of the filesystem, unused pages inside the file."""
        wal = self.path.with_name(self.path.name + '-wal')
        with self._reader_lock:
            free_pages = int(self._reader.execute('PRAGMA freelist_count').fetchone()[0])
            page_size = int(self._reader.execute('PRAGMA page_size').fetchone()[0])
        try:
            fs_free = filesystem_free_bytes(self.path.parent)
        except OSError:
            fs_free = -1
        return {
            'file_bytes': _size(self.path),
            'wal_bytes': _size(wal),
            'fs_free_bytes': fs_free,
            'file_free_bytes': free_pages * page_size,
            'min_free_bytes': self.min_free_bytes,
        }

    def _make_room(self, conn: sqlite3.Connection, exc: sqlite3.Error) -> bool:
        """On the writer's connection, after a commit met a full disk (group_commit.py retries it
        once): truncate the WAL, whose frames a lagging checkpointer had not given back yet.
        True if the WAL shrank (worth a retry); counted in `disk_full_wal_truncated_total`."""
        if not is_disk_full(exc):
            return False
        wal = self.path.with_name(self.path.name + '-wal')
        before = _size(wal)
        conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchall()
        if _size(wal) >= before:
            return False
        self._count('disk_full_wal_truncated_total')
        return True

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        """On the checkpointer's connection, after its checkpoint: SQLite trims the WAL to
        journal_size_limit only when the next write restarts it; a WAL that grew past the bound
        (a burst, a long reader) and then went quiet is truncated here instead."""
        if _size(self.path.with_name(self.path.name + '-wal')) > self.wal_limit_bytes:
            conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchall()

    def _give_back_space(self, conn: sqlite3.Connection) -> bool:
        """On the checkpointer's connection: once most of the file is unused pages (a backlog was
        delivered), return them to the filesystem and shrink the WAL to nothing. True if it did."""
        free_pages = int(conn.execute('PRAGMA freelist_count').fetchone()[0])
        pages = int(conn.execute('PRAGMA page_count').fetchone()[0])
        page_size = int(conn.execute('PRAGMA page_size').fetchone()[0])
        if free_pages * page_size < VACUUM_MIN_BYTES or free_pages * 2 < pages:
            return False
        if int(conn.execute('PRAGMA auto_vacuum').fetchone()[0]) != 2:  # not incremental (older file)
            return False
        # In steps, the WAL truncated after each: one vacuum of the whole freelist would need WAL
        # room for all of it, on a disk that is short of room. executescript steps the pragma to
        # completion (execute() frees one page per call).
        left = free_pages
        for _ in range(VACUUM_MAX_STEPS):
            conn.executescript(f'PRAGMA incremental_vacuum({VACUUM_STEP_PAGES});')
            conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchall()
            before, left = left, int(conn.execute('PRAGMA freelist_count').fetchone()[0])
            if left == 0 or left >= before:
                break
        returned = free_pages - left
        if returned > 0:
            self._count('space_returned_bytes_total', returned * page_size)
            _LOG.info('node %s: gave %d kB of a drained backlog back to the filesystem',
                      self.node_id, returned * page_size // 1024)
        return True


def _size(path: os.PathLike[str] | str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
