"""Dropping at the queue's budget, when the graph chose it: drop oldest / drop newest, with a note.

A queue at its budget (`max_rows` / `max_bytes`, or the free-space reserve of its filesystem)
blocks by default: nothing is lost, the producer is held back. Some sites prefer the freshest
events over a complete history (a telemetry lane where an hour-old reading is worthless), or the
history over the newest (an audit lane where what happened first matters): `drop_oldest` deletes
the oldest queued rows that are not in flight until the new ones fit, `drop_newest` does not store
the new ones. Either way what was dropped is never silent:

- counters in the file's ledger (`dropped_oldest_total`, `dropped_newest_total`) and on the node;
- a *drop note* in the queue file (`drop_notes`): policy, reason, how many rows and bytes, the
  first/last seq, idempotency key and event time of what went. Notes of the same policy within
  `NOTE_MERGE_SEC` are merged into one row, and at most `NOTE_KEEP` notes are kept, so a queue
  that sheds for a month keeps a bounded summary, not a copy of what it shed (a dead-letter copy
  of every dropped event would take the very room the drop is meant to give).
  `schnitzel-stream deadletter drops FILE` lists them.

The drops run as write ops of the queue's group committer, so the deletes, the ledger and the
note commit in one transaction: a crash cannot leave rows gone without their note. Rows a consumer
has claimed (leased) are in flight and never dropped; a row claimed in the very instant of a drop
may still reach the backend — then it is counted as dropped and delivered, never lost unnoticed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schnitzel_stream_ros.delivery.group_commit import Txn
from schnitzel_stream_ros.delivery.queue.disk_space import ROW_DISK_FACTOR, ROW_DISK_OVERHEAD
from schnitzel_stream_ros.delivery.queue.rows import FullPolicy
from schnitzel_stream_ros.delivery.queue.schema import _iso_now

#: Notes of one policy closer together than this (seconds) are one note.
NOTE_MERGE_SEC = 60.0
#: Notes kept in a queue file (the oldest are deleted first).
NOTE_KEEP = 1000
#: Rows looked at per step while choosing the oldest rows to drop.
_SCAN_ROWS = 512

_CREATE_NOTES = """CREATE TABLE IF NOT EXISTS drop_notes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  first_at TEXT NOT NULL,
  last_at TEXT NOT NULL,
  last_epoch REAL NOT NULL,
  policy TEXT NOT NULL,
  reason TEXT NOT NULL,
  node_id TEXT NOT NULL,
  rows INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  first_seq INTEGER,
  last_seq INTEGER,
  first_key TEXT,
  last_key TEXT,
  first_ts TEXT,
  last_ts TEXT
)"""
_LEDGER_NAMES = ('dropped_oldest_total', 'dropped_newest_total')


class AtBudget(StrEnum):
    """What a durable sink does when its queue is at the budget (the graph's `full_policy`)."""

    BLOCK = 'block'  # hold the packets, take nothing from the inbox until there is room (default)
    REFUSE = 'refuse'  # refuse at once (counted, raised: the packet is lost, the run failed)
    DROP_OLDEST = 'drop_oldest'  # delete the oldest queued rows not in flight, counted, noted
    DROP_NEWEST = 'drop_newest'  # do not store the new packets, counted, noted

    @property
    def drops(self) -> bool:
        return self in (AtBudget.DROP_OLDEST, AtBudget.DROP_NEWEST)

    def queue_policy(self) -> FullPolicy:
        """The policy the queue itself runs with: a dropping sink wants to hear of no room at once."""
        return FullPolicy.BLOCK if self is AtBudget.BLOCK else FullPolicy.REFUSE


@dataclass(frozen=True, slots=True)
class Dropped:
    """What one drop took (rows = 0: nothing could be dropped, e.g. every row is in flight)."""

    rows: int
    bytes: int
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass(frozen=True, slots=True)
class DropNote:
    id: int
    first_at: str
    last_at: str
    policy: str
    reason: str
    node_id: str
    rows: int
    bytes: int
    first_seq: int | None
    last_seq: int | None
    first_key: str | None
    last_key: str | None
    first_ts: str | None
    last_ts: str | None


def row_bytes(queue: Any, packets: Sequence[Any]) -> list[int]:
    """The bytes each packet takes against `max_bytes` (payload + meta JSON, as the queue counts)."""
    now = time.time()
    return [queue._row_for(p, None, now, _iso_now(now))[9] for p in packets]


def drop_oldest(queue: Any, need_rows: int, need_bytes: int, *, reserve: bool, reason: str) -> Dropped:
    """Delete the oldest queued rows that are not in flight until `need_rows`/`need_bytes` more fit
    the row/byte limits (`reserve=False`), or until they free the disk room those rows take
    (`reserve=True`: the free-space reserve refused them; freed pages count as usable at once).
    One transaction with the ledger and the drop note. Returns what was dropped."""

    def op(txn: Txn) -> Dropped:
        conn = txn.conn
        with queue._lease_lock:  # rows a consumer holds now are in flight: never dropped
            in_flight = set(queue._leases)
        if reserve:
            want_rows, want_disk = 0, need_bytes * ROW_DISK_FACTOR + need_rows * ROW_DISK_OVERHEAD
            want_bytes = 0
        else:
            want_disk = 0
            want_rows = txn.state['rows'] + need_rows - queue.max_rows if queue.max_rows else 0
            want_bytes = txn.state['bytes'] + need_bytes - queue.max_bytes if queue.max_bytes else 0
        chosen: list[tuple[int, str, int, str]] = []
        rows = size = disk = 0
        after = 0
        while rows < want_rows or size < want_bytes or disk < want_disk:
            batch = conn.execute(
                'SELECT seq, idempotency_key, size_bytes, ts FROM packets WHERE seq > ? ORDER BY seq LIMIT ?',
                (after, _SCAN_ROWS),
            ).fetchall()
            if not batch:
                break
            for seq, key, nbytes, ts in batch:
                after = seq
                if seq in in_flight:
                    continue
                chosen.append((seq, key, nbytes, ts))
                rows += 1
                size += nbytes
                disk += nbytes * ROW_DISK_FACTOR + ROW_DISK_OVERHEAD
                if rows >= want_rows and size >= want_bytes and disk >= want_disk:
                    break
        if not chosen or rows < want_rows or size < want_bytes:
            return Dropped(0, 0)  # cannot make room this way (rows in flight): the caller holds
        conn.executemany('DELETE FROM packets WHERE seq = ?', [(c[0],) for c in chosen])
        txn.state['rows'] -= rows
        txn.state['bytes'] -= size
        queue._bump(txn, 'depth_rows', -rows)
        queue._bump(txn, 'depth_bytes', -size)
        _count(queue, txn, 'dropped_oldest_total', rows)
        _note(queue, conn, AtBudget.DROP_OLDEST, reason, rows, size, chosen[0], chosen[-1])
        return Dropped(rows, size, chosen[0][0], chosen[-1][0])

    return queue._committer.run(op)


def note_dropped_newest(queue: Any, packets: Sequence[Any], sizes: Sequence[int], reason: str) -> None:
    """Count and note packets a `drop_newest` sink did not store (they have no seq)."""
    if not packets:
        return
    first, last = packets[0], packets[-1]
    rows, size = len(packets), sum(sizes)

    def op(txn: Txn) -> None:
        _count(queue, txn, 'dropped_newest_total', rows)
        first_row = (None, _key(first), 0, first.ts)
        last_row = (None, _key(last), 0, last.ts)
        _note(queue, txn.conn, AtBudget.DROP_NEWEST, reason, rows, size, first_row, last_row)

    queue._committer.run(op)


def list_drop_notes(queue: Any, limit: int = 50) -> list[DropNote]:
    """The newest `limit` drop notes of the queue file, oldest first (none: an empty list)."""
    with queue._reader_lock:
        try:
            found = queue._reader.execute(
                'SELECT id, first_at, last_at, policy, reason, node_id, rows, bytes, first_seq, last_seq, '
                'first_key, last_key, first_ts, last_ts FROM drop_notes ORDER BY id DESC LIMIT ?',
                (limit,),
            ).fetchall()
        except sqlite3.OperationalError:  # no drop ever happened in this file: no table
            return []
    return [DropNote(*row) for row in reversed(found)]


def _key(packet: Any) -> str:
    from schnitzel_stream_ros.packet import MetaKey

    return str(packet.meta.get(MetaKey.IDEMPOTENCY_KEY) or packet.packet_id)


def _count(queue: Any, txn: Txn, name: str, n: int) -> None:
    """A ledger counter this module adds (the frame's UPDATE only touches names that exist)."""
    txn.conn.executemany(
        'INSERT OR IGNORE INTO queue_counters (name, value) VALUES (?, 0)', [(k,) for k in _LEDGER_NAMES]
    )
    queue._bump(txn, name, n)
    with queue._run_lock:
        queue._run[name] = queue._run.get(name, 0) + n


def _note(
    queue: Any,
    conn: sqlite3.Connection,
    policy: AtBudget,
    reason: str,
    rows: int,
    size: int,
    first: tuple[int | None, str, int, str],
    last: tuple[int | None, str, int, str],
) -> None:
    conn.execute(_CREATE_NOTES)
    now = queue._wall()
    now_iso = _iso_now(now)
    reason = reason[:500]
    recent = conn.execute(
        'SELECT id FROM drop_notes WHERE policy = ? AND node_id = ? AND last_epoch >= ? '
        'ORDER BY id DESC LIMIT 1',
        (policy.value, queue.node_id, now - NOTE_MERGE_SEC),
    ).fetchone()
    if recent is not None:
        conn.execute(
            'UPDATE drop_notes SET last_at = ?, last_epoch = ?, reason = ?, rows = rows + ?, '
            'bytes = bytes + ?, last_seq = ?, last_key = ?, last_ts = ? WHERE id = ?',
            (now_iso, now, reason, rows, size, last[0], last[1], last[3], recent[0]),
        )
        return
    conn.execute(
        'INSERT INTO drop_notes (first_at, last_at, last_epoch, policy, reason, node_id, rows, bytes, '
        'first_seq, last_seq, first_key, last_key, first_ts, last_ts) '
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (
            *(now_iso, now_iso, now, policy.value, reason, queue.node_id, rows, size),
            *(first[0], last[0], first[1], last[1], first[3], last[3]),
        ),
    )
    conn.execute(
        'DELETE FROM drop_notes WHERE id <= (SELECT MAX(id) FROM drop_notes) - ?', (NOTE_KEEP,)
    )
