"""Dead letters: list, re-drive (within the limits), bury (a synchronous sink gave up), purge."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from schnitzel_stream_ros.delivery.group_commit import Txn
from schnitzel_stream_ros.delivery.queue.rows import (
    DeadRow,
    RedriveResult,
)
from schnitzel_stream_ros.delivery.queue.schema import (
    _DEAD_COPY,
    _INSERT,
    _iso_now,
)
from schnitzel_stream_ros.packet import StreamPacket

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')


class DeadLetterOps:
    """Dead letters: list, re-drive (within the limits), bury (a synchronous sink gave up), purge."""

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
