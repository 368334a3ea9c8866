"""Producing: turning packets into rows and committing them (enqueue, enqueue_many), within the
row/byte limits and their full policy; duplicates of a queued key are no-ops."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

from schnitzel_stream_ros.delivery.errors import (
    BatchTooLargeError,
    LowDiskSpaceError,
    QueueClosedError,
    QueueFullError,
    QueueStorageError,
)
from schnitzel_stream_ros.delivery.group_commit import Txn
from schnitzel_stream_ros.delivery.idempotency_key import wire_key
from schnitzel_stream_ros.delivery.queue.disk_space import _LowSpace
from schnitzel_stream_ros.delivery.queue.rows import (
    FullPolicy,
    _NoRoom,
)
from schnitzel_stream_ros.delivery.queue.schema import (
    _INSERT,
    _MULTI_INSERT_ROWS,
    _iso_now,
    _multi_insert_sql,
)
from schnitzel_stream_ros.delivery.strict_json import to_json_text
from schnitzel_stream_ros.packet import MetaKey, StreamPacket

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')


class Producing:
    """Producing: turning packets into rows and committing them (enqueue, enqueue_many), within the"""

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
        (policy 'refuse', or 'block' past `timeout`/block_timeout_sec), LowDiskSpaceError when the
        free-space reserve does (same policy), DiskFullError on SQLITE_FULL.
        When it returns, the event is accepted: nothing short of losing the disk loses it.
        """
        return self.enqueue_many([packet], [idempotency_key], timeout=timeout)[0]

    def enqueue_many(
        self,
        packets: Sequence[StreamPacket],
        keys: Sequence[str | None] | None = None,
        timeout: float | None = None,
        count_refused: bool = True,
    ) -> list[int]:
        """Store several packets in one transaction (all or none); returns their seqs in order.

        `count_refused=False`: the caller keeps the packets and tries again (a sink holding them
        while the disk is full), so a refusal is no lost event and not counted as `refused_total`."""
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
                low_space = isinstance(full, _LowSpace)
                if self.full_policy is FullPolicy.REFUSE or self._mono() >= deadline:
                    if count_refused:
                        self._count('refused_total', len(rows))
                    if low_space:
                        self._count('low_space_total')
                    how = (
                        'refused'
                        if self.full_policy is FullPolicy.REFUSE
                        else f'blocked {wait:g} s, then refused'
                    )
                    if count_refused:
                        _LOG.warning('node %s: queue full: %s (%s)', self.node_id, full, how)
                    error = LowDiskSpaceError if low_space else QueueFullError
                    raise error(
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
        self._check_reserve(txn, size, len(rows))
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
