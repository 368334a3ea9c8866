"""Group commit: many threads' writes share one SQLite transaction and one fsync.

With `synchronous=FULL` every commit waits for the disk (about 0.2-5 ms here), so one transaction per
event caps a queue at a few hundred to a thousand events per second. A single committer thread takes
every write that arrived while the previous commit was on disk, runs them all in one transaction,
commits once and then wakes each caller. A caller still returns only after *its* row is committed —
the durability promise per call is unchanged — but concurrent callers share the fsync.

Writes are small functions `op(txn) -> result` run on the committer thread. An op that refuses
(raises a non-SQLite error) must do so before it writes anything: only SQLite errors roll back. If the shared
transaction fails at the SQLite level (SQLITE_FULL, I/O error), it is rolled back and every op is
retried alone, so one op that cannot fit does not take its neighbours down with it. Before that
retry the owner may make room (`make_room`: on a full disk, the queue truncates its WAL, which a
long reader had kept from restarting or the checkpointer had not yet given back): an ack, which
frees room, must not keep failing until the checkpointer's next round.

A *background* write (nobody waits for it urgently: the forwarder recording delivery outcomes) may
*linger*: it waits up to `linger_sec` for another write to share its commit instead of starting one
of its own.
Without that, a producer's enqueue that arrives while a settle-only commit is on disk waits for
that commit and then for its own: two fsyncs, the p99 of acceptance doubled while delivering.
A write lingers only while other writes are arriving (one within the last `ACTIVE_WINDOW_SEC`):
with no producer at work there is nobody to wait for, and delivery alone is not slowed down.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from schnitzel_stream_ros.delivery.errors import QueueClosedError

_LOG = logging.getLogger('schnitzel_stream.delivery.group_commit')

#: Writers count as active (worth lingering for) this long after their last write.
ACTIVE_WINDOW_SEC = 0.05


class Txn:
    """One open write transaction as the ops see it.

    `state` is scratch space the owner fills in `begin` (e.g. counters read inside the
    transaction); `after_commit` callbacks run only once the commit is on disk.
    """

    __slots__ = ('after_commit', 'conn', 'state')

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.state: dict[str, Any] = {}
        self.after_commit: list[Callable[[], None]] = []


class WriteOp:
    """A write waiting for its commit. `weight` is how many rows it writes (batch size limit).

    The caller blocks on a plain lock used as a one-shot latch: cheaper than an Event, and the
    wake-up cost matters when hundreds of callers share each commit.
    """

    __slots__ = ('_latch', 'background', 'commit_by', 'error', 'finished', 'fn', 'result', 'weight')

    def __init__(
        self, fn: Callable[[Txn], Any], weight: int = 1, background: bool = False, linger_sec: float = 0.0
    ) -> None:
        self.fn = fn
        self.weight = weight
        self.background = background  # nobody waits for it urgently (a settle, not an enqueue)
        # monotonic time by which the committer starts a commit for this op even if it is alone
        self.commit_by = time.monotonic() + linger_sec if background and linger_sec > 0 else 0.0
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self._latch = threading.Lock()
        self._latch.acquire()

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.finished:
            return
        self.result = result
        self.error = error
        self.finished = True
        self._latch.release()

    def wait(self) -> Any:
        self._latch.acquire()
        self._latch.release()  # let a second wait() (or a late finish()) pass too
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommitter:
    """The single writer thread of one SQLite connection."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        begin: Callable[[Txn], None],
        finish: Callable[[Txn], None],
        name: str = 'queue-committer',
        max_batch_weight: int = 4096,
        map_error: Callable[[sqlite3.Error], BaseException] | None = None,
        active_window_sec: float = ACTIVE_WINDOW_SEC,
        make_room: Callable[[sqlite3.Connection, sqlite3.Error], bool] | None = None,
    ) -> None:
        self._conn = conn
        self._active_window_sec = active_window_sec
        self._begin = begin
        self._finish = finish
        self._map_error = map_error or (lambda exc: exc)
        self._make_room = make_room
        self._max_batch_weight = max_batch_weight
        self._cond = threading.Condition()
        self._pending: list[WriteOp] = []
        self._maintenance: list[Callable[[sqlite3.Connection], None]] = []
        self._closing = False
        self._last_urgent = float('-inf')  # monotonic time of the last write that does not linger
        self._in_background_commit = False
        self.commits_total = 0
        self.ops_total = 0
        # how often an urgent write (an enqueue) arrived while a commit made only of background
        # writes (settles) was on its way to disk and had to wait for it: the wait lingering
        # exists to avoid. A count, so a loaded machine does not blur it as it blurs a p99.
        self.background_only_commits_total = 0
        self.urgent_behind_background_total = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- callers ---------------------------------------------------------------------------
    def seconds_since_urgent_write(self) -> float:
        """How long ago a write that somebody waits for (an enqueue) was submitted (inf: never).
        Housekeeping that would block writers waits for a quiet moment by it."""
        return time.monotonic() - self._last_urgent

    def submit(self, op: WriteOp) -> WriteOp:
        with self._cond:
            if self._closing:
                raise QueueClosedError('queue is closed')
            self._pending.append(op)
            if not op.background:
                self._last_urgent = time.monotonic()
                if self._in_background_commit:
                    self.urgent_behind_background_total += 1
                self._cond.notify()  # ends a linger
            elif len(self._pending) == 1 or not op.commit_by:
                self._cond.notify()
        return op

    def request_maintenance(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Run `fn(conn)` on the committer thread after the commit in progress, outside any
        transaction (e.g. a checkpoint that must block writers: done here, the writers simply wait
        for it, instead of sleeping in SQLite's busy handler while another connection holds the
        lock). Nobody waits for it; errors are logged."""
        with self._cond:
            if fn not in self._maintenance:
                self._maintenance.append(fn)
            self._cond.notify()

    def run(
        self, fn: Callable[[Txn], Any], weight: int = 1, background: bool = False, linger_sec: float = 0.0
    ) -> Any:
        """Submit `fn` and wait for its commit; returns its result or raises its error.
        `background`: nobody waits for it urgently; with `linger_sec` > 0 its commit may then wait
        that long for other writes to share it."""
        return self.submit(WriteOp(fn, weight, background, linger_sec)).wait()

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is pending, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the committer thread --------------------------------------------------------------
    def _take_batch(self) -> list[WriteOp] | None:
        with self._cond:
            self._in_background_commit = False  # the previous commit is done
            while True:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return None
                if self._closing:
                    break
                # every pending op lingers: wait for company (if any is coming) until the
                # earliest one is due
                commit_by = min(op.commit_by for op in self._pending)
                now = time.monotonic()
                if not commit_by or commit_by <= now or now - self._last_urgent > self._active_window_sec:
                    break
                self._cond.wait(commit_by - now)
            cut = 0
            weight = 0
            while cut < len(self._pending):
                op_weight = self._pending[cut].weight
                if cut and weight + op_weight > self._max_batch_weight:
                    break
                weight += op_weight
                cut += 1
            batch = self._pending[:cut]
            del self._pending[:cut]
            self._in_background_commit = all(op.background for op in batch)
            if self._in_background_commit:
                self.background_only_commits_total += 1
            return batch

    def _run(self) -> None:
        last_size = 0
        while True:
            if last_size > 1:
                # Callers woken by the last commit are about to submit their next write: yield
                # the GIL once (sleep(0)) so they join this batch instead of waiting a whole
                # commit for the next one. Measured: ~1.5x throughput at 16 callers, lower p99.
                time.sleep(0)
            self._run_maintenance()
            batch = self._take_batch()
            last_size = len(batch) if batch else 0
            if batch is None:
                return
            try:
                self._commit_together(batch)
            except sqlite3.Error as exc:
                made_room = self._made_room(exc)
                if len(batch) == 1 and not made_room:
                    batch[0].finish(error=self._map_error(exc))
                    continue
                _LOG.warning('group commit of %d writes failed (%s); retrying each alone', len(batch), exc)
                for op in batch:
                    try:
                        self._commit_together([op])
                    except sqlite3.Error as single_exc:
                        op.finish(error=self._map_error(single_exc))
            except BaseException as exc:  # a bug in an op must not kill the only writer thread
                _LOG.exception('group commit crashed')
                for op in batch:
                    op.finish(error=exc)

    def _made_room(self, exc: sqlite3.Error) -> bool:
        """Ask the owner to make room after a failed commit (see the module docstring)."""
        if self._make_room is None:
            return False
        try:
            return bool(self._make_room(self._conn, exc))
        except sqlite3.Error as room_exc:
            _LOG.debug('making room after %s failed: %s', exc, room_exc)
            return False

    def _run_maintenance(self) -> None:
        with self._cond:
            jobs, self._maintenance = self._maintenance, []
        for fn in jobs:
            try:
                fn(self._conn)
            except Exception:
                _LOG.exception('maintenance on the writer connection failed')

    def _commit_together(self, batch: list[WriteOp]) -> None:
        conn = self._conn
        txn = Txn(conn)
        conn.execute('BEGIN IMMEDIATE')
        try:
            self._begin(txn)
            results: list[tuple[WriteOp, Any, BaseException | None]] = []
            for op in batch:
                try:
                    results.append((op, op.fn(txn), None))
                except sqlite3.Error:
                    raise
                except Exception as exc:  # an op's own refusal (e.g. queue full): only that op fails
                    results.append((op, None, exc))
            self._finish(txn)
            conn.execute('COMMIT')
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute('ROLLBACK')
            raise
        self.commits_total += 1
        self.ops_total += len(batch)
        for callback in txn.after_commit:
            try:
                callback()
            except Exception:
                _LOG.exception('after-commit callback failed')
        for op, result, error in results:
            op.finish(result, error)
