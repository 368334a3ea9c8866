"""The consumer half of a DurableQueue, for a forwarder that runs in its own process.

Why: the forwarder's Python work (one HTTP request per event, thousands per second) shares the
GIL and the CPUs with the producer's commits when both run in one process; that, not SQLite, is
what stretched the producer's commit tail while delivering. In another process the forwarder has
its own interpreter and the kernel schedules it (niced) against the producer.

What stays where: claims read the file on this process's own reader connection, under the queue's
consumer lock (the flock other processes already respect); leases live here, in memory, as they
do in-process (a crash of this process ends them with it: the rows are due again). Every *write*
(settling outcomes, making waiting retries due, counting expired leases) is sent to the process
that owns the queue and committed there by its one group committer, so a settle still shares a
producer's commit and the producer never sleeps in SQLite's busy handler behind a second writer.
A row is removed only by such a commit: the loss argument of forwarder.py is unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.delivery.errors import QueueStorageError
from schnitzel_stream_ros.delivery.queue.leases import Leasing
from schnitzel_stream_ros.delivery.queue.rows import DeadLetter, Nack, SettleResult
from schnitzel_stream_ros.delivery.queue.schema import _connect

_LOG = logging.getLogger('schnitzel_stream.delivery.consumer_queue')

#: How often an idle consumer looks whether another process committed rows (PRAGMA data_version:
#: one cheap read; the owner's commits cannot wake this process directly).
ROWS_POLL_SEC = 0.01

#: call(message) -> the owner's answer (raises DeliveryError when it failed or is gone)
OwnerCall = Callable[[dict[str, Any]], Any]
#: send(message) without waiting for an answer
OwnerSend = Callable[[dict[str, Any]], None]


class ConsumerQueue(Leasing):
    """Claims, leases and settles of a queue file whose writes another process commits.

    The Forwarder uses it as it uses a DurableQueue (claim, release, settle, release_backoff,
    wait_for_rows, depth, in_flight)."""

    def __init__(
        self,
        path: str | Path,
        node_id: str,
        call: OwnerCall,
        send: OwnerSend,
        max_retry_delay_sec: float = 60.0,
        busy_timeout_sec: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.node_id = node_id
        self.max_retry_delay_sec = max_retry_delay_sec
        self._call = call
        self._send = send
        self._wall = time.time
        self._mono = time.monotonic
        self._closed = False
        self._init_leasing()
        self._counts = {'lease_expired_total': 0}
        self._counts_lock = threading.Lock()
        try:
            self._reader = _connect(self.path, busy_timeout_sec)
            self._reader.execute('PRAGMA query_only=1')
        except Exception as exc:
            raise QueueStorageError(f'node {node_id!r}: cannot open queue file {self.path}: {exc}') from exc
        self._reader_lock = threading.Lock()

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    # -- writes: committed by the owner ------------------------------------------------------
    def _record_expired(self, seqs: list[int]) -> None:
        self._send({'type': 'expired', 'seqs': seqs})

    def settle(
        self,
        acks: Iterable[int] = (),
        nacks: Iterable[Nack] = (),
        deads: Iterable[DeadLetter] = (),
        linger_sec: float = 0.0,
    ) -> SettleResult:
        """Outcomes committed by the owner (sharing a producer's commit); the leases end once it
        answered that they are on disk. Raises DeliveryError when it could not: the round then
        gives the rows back and they are sent again (a duplicate, never a loss)."""
        acks, nacks, deads = list(acks), list(nacks), list(deads)
        if not (acks or nacks or deads):
            return SettleResult(0, 0, 0)
        acked, nacked, dead = self._call(
            {
                'type': 'settle',
                'acks': acks,
                'nacks': [[n.seq, n.delay_sec, n.error] for n in nacks],
                'deads': [[d.seq, d.reason, d.http_status, d.count_attempt] for d in deads],
                'linger_sec': linger_sec,
            }
        )
        self.release_leases_quietly([*acks, *(n.seq for n in nacks), *(d.seq for d in deads)])
        return SettleResult(int(acked), int(nacked), int(dead))

    def release_backoff(self) -> int:
        count = int(self._call({'type': 'release_backoff'}))
        if count:
            with self._rows_cond:
                self._rows_generation += 1
                self._rows_cond.notify_all()
        return count

    # -- reads ---------------------------------------------------------------------------------
    def wait_for_rows(self, timeout: float) -> None:
        """Sleep until another process committed something, rows were given back here, or
        `timeout` passed."""
        deadline = time.monotonic() + timeout
        with self._rows_cond:
            generation = self._rows_generation
        version = self._data_version()
        while not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with self._rows_cond:
                if self._rows_cond.wait_for(
                    lambda: self._rows_generation != generation or self._closed, min(ROWS_POLL_SEC, left)
                ):
                    return
            if self._data_version() != version:
                return

    def _data_version(self) -> int:
        with self._reader_lock:
            return int(self._reader.execute('PRAGMA data_version').fetchone()[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._reader_lock, contextlib.suppress(Exception):
            self._reader.close()
        self._end_leasing()


def settle_request_parts(message: dict[str, Any]) -> tuple[list[int], list[Nack], list[DeadLetter], float]:
    """The owner's side: a settle request back into outcomes, checked field by field (it crosses
    a pipe; a malformed one is refused whole, never half-applied)."""
    acks = [_seq(s) for s in message.get('acks', [])]
    nacks = [
        Nack(_seq(seq), float(delay), str(error)[:500]) for seq, delay, error in message.get('nacks', [])
    ]
    deads = [
        DeadLetter(_seq(seq), str(reason)[:1000], None if status is None else int(status), bool(counted))
        for seq, reason, status, counted in message.get('deads', [])
    ]
    linger = min(max(0.0, float(message.get('linger_sec', 0.0))), 1.0)
    return acks, nacks, deads, linger


def _seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'not a row seq: {json.dumps(value)[:40]}')
    return value
