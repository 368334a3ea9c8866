"""DurableQueue: the SQLite store-and-forward queue where an event becomes *accepted*.

An event is accepted when its row is committed (WAL, `synchronous=FULL`): from then on a crash, a
kill -9 or a power cut cannot lose it, and it stays in the file until the backend answered 2xx
(ack) or it was moved to the dead-letter table. `enqueue()` returns only after that commit; the
group committer lets concurrent callers share one fsync so the promise stays cheap.

Upstream-compatible: same table (`packets`) and columns, idempotency key explicit ->
meta.idempotency_key -> packet_id, re-enqueue of a present key is a no-op returning its seq, drain in
seq order, ack deletes. A queue file written by schnitzel-stream-platform opens here and drains.
Beyond upstream: leases for in-flight rows, attempt counts and next-attempt times, a dead-letter
table, row/byte limits with an explicit full policy, integrity check with quarantine, and a
counters ledger updated in the same transaction as the rows it counts.

Time: leases use the monotonic clock (a wall-clock jump neither expires nor freezes them). Retry
times must survive restarts, so they are wall-clock, but a row whose next attempt lies further in
the future than the largest delay we ever set (`max_retry_delay_sec`) is due now: a backwards
clock jump can park a row for at most that long.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.delivery import quarantine
from schnitzel_stream_ros.delivery.errors import QueueStorageError
from schnitzel_stream_ros.delivery.group_commit import GroupCommitter
from schnitzel_stream_ros.delivery.queue.commit_frame import CommitFrame
from schnitzel_stream_ros.delivery.queue.dead_letters import DeadLetterOps
from schnitzel_stream_ros.delivery.queue.disk_space import (
    DEFAULT_MIN_FREE_BYTES,
    DEFAULT_WAL_LIMIT_BYTES,
    DiskSpace,
)
from schnitzel_stream_ros.delivery.queue.housekeeping import Housekeeping
from schnitzel_stream_ros.delivery.queue.leases import Leasing
from schnitzel_stream_ros.delivery.queue.producing import Producing
from schnitzel_stream_ros.delivery.queue.rows import (
    DeadLetter,
    DeadRow,
    FullPolicy,
    Nack,
    QueuedRow,
    RedriveResult,
    SettleResult,
)
from schnitzel_stream_ros.delivery.queue.schema import LEDGER, SCHEMA_VERSION, _connect

_LOG = logging.getLogger('schnitzel_stream.delivery.queue')

__all__ = [
    'DEFAULT_MIN_FREE_BYTES',
    'DEFAULT_WAL_LIMIT_BYTES',
    'LEDGER',
    'SCHEMA_VERSION',
    'DeadLetter',
    'DeadRow',
    'DurableQueue',
    'FullPolicy',
    'Nack',
    'QueuedRow',
    'RedriveResult',
    'SettleResult',
]


class DurableQueue(Producing, Leasing, DeadLetterOps, Housekeeping, DiskSpace, CommitFrame):
    """A durable, idempotent, leased queue of StreamPackets in one SQLite file.

    Thread-safe. One process may hold the consumer role (claim) per file at a time (an flock on
    `<path>-consumer.lock`, released by the kernel when the process dies); any number of threads
    and processes may enqueue, ack or manage dead letters.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        node_id: str = 'queue',
        max_rows: int | None = None,
        max_bytes: int | None = None,
        full_policy: FullPolicy | str = FullPolicy.BLOCK,
        block_timeout_sec: float = 10.0,
        max_retry_delay_sec: float = 60.0,
        max_page_count: int | None = None,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        wal_limit_bytes: int = DEFAULT_WAL_LIMIT_BYTES,
        busy_timeout_sec: float = 10.0,
        checkpoint_interval_sec: float = 0.5,
        max_batch_rows: int = 4096,
        on_corrupt: str = 'quarantine',
        on_incident: Callable[[str, dict[str, Any]], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.node_id = node_id
        self.max_rows = max_rows if max_rows and max_rows > 0 else None
        self.max_bytes = max_bytes if max_bytes and max_bytes > 0 else None
        try:
            self.full_policy = FullPolicy(full_policy)
        except ValueError:
            raise ValueError(
                f'node {node_id!r}: full_policy must be one of {[p.value for p in FullPolicy]}, '
                f'got {full_policy!r}'
            ) from None
        if on_corrupt not in ('quarantine', 'raise'):
            raise ValueError(
                f"node {node_id!r}: on_corrupt must be 'quarantine' or 'raise', got {on_corrupt!r}"
            )
        self.block_timeout_sec = block_timeout_sec
        self.max_retry_delay_sec = max_retry_delay_sec
        self._max_page_count = max_page_count
        self.min_free_bytes = max(0, int(min_free_bytes))  # 0 = no reserve (ENOSPC still refuses cleanly)
        self.wal_limit_bytes = max(64 * 1024, int(wal_limit_bytes))
        self._busy_timeout_sec = busy_timeout_sec
        self._on_incident = on_incident
        self._wall = wall_clock
        self._mono = mono_clock
        self._closed = False

        # per-process counters (the run's view; the file's lifetime view is the ledger)
        self._run: dict[str, int] = dict.fromkeys(
            (
                'enqueued_total',
                'duplicate_total',
                'acked_total',
                'nacked_total',
                'dead_letter_total',
                'refused_total',
                'disk_full_total',
                'disk_full_wal_truncated_total',
                'low_space_total',
                'space_returned_bytes_total',
                'quarantined_total',
                'salvaged_total',
                'lease_expired_total',
                'redriven_total',
                'purged_total',
                'checkpoints_total',
                'housekeeping_blocked_writers_total',
                'wal_bounded_between_commits_total',
            ),
            0,
        )
        self._run_lock = threading.Lock()

        self._init_leasing()
        self._space_cond = threading.Condition()
        self._space_generation = 0
        self.quarantined: list[quarantine.Quarantined] = []

        self.path.parent.mkdir(parents=True, exist_ok=True)
        incident = self._check_or_quarantine(on_corrupt)
        try:
            self._writer = self._open_writer()
            self._reader = _connect(self.path, busy_timeout_sec)
            self._reader_lock = threading.Lock()
        except sqlite3.Error as exc:
            raise QueueStorageError(f'node {node_id!r}: cannot open queue file {self.path}: {exc}') from exc
        if incident is not None:
            self._record_incident(incident, self._salvage_at_open(incident))

        self._committer = GroupCommitter(
            self._writer,
            self._begin_txn,
            self._finish_txn,
            name=f'{node_id}-committer',
            max_batch_weight=max_batch_rows,
            map_error=self._map_sqlite_error,
            make_room=self._make_room,
        )
        self._checkpoint_stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_interval_sec,),
            name=f'{node_id}-checkpoint',
            daemon=True,
        )
        self._checkpointer.start()

    def close(self) -> None:
        """Commit pending writes, checkpoint, close. Leased rows stay in the file (due on next open)."""
        if self._closed:
            return
        self._closed = True
        self._committer.close()
        self._checkpoint_stop.set()
        self._checkpointer.join(5.0)
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchall()
        with self._reader_lock:
            self._reader.close()
        self._writer.close()
        self._end_leasing()

    def __enter__(self) -> DurableQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
