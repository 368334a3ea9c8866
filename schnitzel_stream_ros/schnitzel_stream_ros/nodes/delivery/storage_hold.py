"""StorageHold: what a durable sink does when its queue cannot take the packets it was handed.

One module for every sink that commits into a DurableQueue (DurableForwarderSink,
SqliteQueueSink), so a full disk means the same thing in each of them:

- `block` (default) — back-pressure, never a drop: the sink keeps the packets it holds, retries the
  commit with backoff and takes nothing else from its inbox meanwhile, so the edge's own policy
  applies upstream (a blocking edge holds the producer back; a keep-freshest inbox sheds,
  counted). Gauges `storage_blocked_code` (why: limit / reserve / full disk, ERROR on
  /diagnostics and in the progress line) and `storage_held_packets`; counters
  `storage_blocked_total` (episodes, the run report's attention) and `storage_blocked_ms_total`.
  It resumes by itself when room returns; only a stop of the node ends the wait, and what it still
  held is then raised as refused.
- `refuse` — the queue refuses at once (counted by the sink as refused, raised).
- `drop_oldest` / `drop_newest` — at the budget (row/byte limits, the free-space reserve) the graph
  chose to lose events rather than hold the producer: see delivery/queue/budget_drops.py. Counted
  on the node (`budget_dropped_total`, `budget_dropped_oldest_total` / `..._newest_total`: WARN on
  /diagnostics, the run is degraded) and noted in the queue file. A truly full disk (ENOSPC)
  still holds: deleting needs room in the WAL, and the reserve exists so that this is rare.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.errors import (
    BatchTooLargeError,
    DiskFullError,
    LowDiskSpaceError,
    QueueFullError,
)
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.queue.budget_drops import (
    AtBudget,
    drop_oldest,
    note_dropped_newest,
    row_bytes,
)
from schnitzel_stream_ros.packet import StreamPacket

if TYPE_CHECKING:
    from schnitzel_stream_ros.plugin import Plugin

#: Retries of a commit the queue could not take: 0.1 s doubling to 2 s, ±20 % (many sinks on one
#: disk must not retry in lock-step, and a freed disk is noticed within 2 s).
STORAGE_RETRY_BACKOFF = dict(base_sec=0.1, factor=2.0, cap_sec=2.0, jitter='proportional', spread=0.2)
#: Longest wait inside one commit attempt for room under a row/byte limit (a stop is seen between).
ATTEMPT_WAIT_SEC = 0.5
#: Gauge `storage_blocked_code`: why the sink holds packets (0 = it does not).
BLOCKED_BY_LIMIT, BLOCKED_BY_RESERVE, BLOCKED_BY_DISK_FULL = 1, 2, 3
#: Attempts to make room by dropping before a drop_oldest sink holds like a blocking one.
_DROP_ROUNDS = 8


def _why(exc: QueueFullError) -> str:
    """The queue's reason without its verdict ('event refused, not accepted': a dropping sink decides)."""
    return str(exc).split('; event ', 1)[0]


def blocked_code(exc: QueueFullError) -> int:
    if isinstance(exc, LowDiskSpaceError):
        return BLOCKED_BY_RESERVE
    if isinstance(exc, DiskFullError):
        return BLOCKED_BY_DISK_FULL
    return BLOCKED_BY_LIMIT


class StorageHold:
    """Commits packets into `queue` for `plugin` under the graph's full policy (see the module)."""

    def __init__(self, plugin: Plugin, queue: DurableQueue, policy: AtBudget | str) -> None:
        self.plugin = plugin
        self.queue = queue
        self.policy = AtBudget(policy)
        self.blocked_since: float | None = None
        self._warned_drop: set[str] = set()  # one warning per kind of drop (the counters say the rest)
        plugin.gauge('storage_blocked_code', 0)
        plugin.gauge('storage_held_packets', 0)

    def commit(self, packets: Sequence[StreamPacket]) -> list[int | None]:
        """Commit `packets` (all or none); their seqs, or None for each packet a `drop_newest` sink
        did not store. Raises QueueFullError only for what waiting cannot fix (a batch larger than
        the limits: BatchTooLargeError), under `refuse`, or when the node was stopped while holding."""
        if self.policy is AtBudget.REFUSE:
            return list(self.queue.enqueue_many(packets))
        backoff = Backoff(**STORAGE_RETRY_BACKOFF)
        attempt = drop_rounds = 0
        wait = 0.0 if self.policy.drops else min(self.plugin.params['block_timeout_sec'], ATTEMPT_WAIT_SEC)
        while True:
            try:
                seqs = self.queue.enqueue_many(packets, timeout=wait, count_refused=False)
            except BatchTooLargeError:
                raise  # never fits, however long we wait: the caller offers them one by one
            except QueueFullError as exc:
                code = blocked_code(exc)
                if self.policy.drops and code != BLOCKED_BY_DISK_FULL and drop_rounds < _DROP_ROUNDS:
                    drop_rounds += 1
                    if self.policy is AtBudget.DROP_NEWEST:
                        self._drop_newest(packets, exc)
                        self._resume(len(packets), attempt)
                        return [None] * len(packets)
                    if self._drop_oldest(packets, exc, code):
                        continue  # room made: commit again at once
                attempt += 1
                self._hold(exc, code, len(packets), attempt)
                if self.plugin.wait_for_stop(backoff.delay(attempt)):
                    raise type(exc)(
                        f'{exc}; the node was stopped while it held {len(packets)} packets for room'
                    ) from None
                drop_rounds = 0
                continue
            self._resume(len(packets), attempt)
            return list(seqs)

    # -- dropping (the graph's choice) ---------------------------------------------------------
    def _drop_newest(self, packets: Sequence[StreamPacket], exc: QueueFullError) -> None:
        sizes = row_bytes(self.queue, packets)
        note_dropped_newest(self.queue, packets, sizes, reason=_why(exc))
        self._count_dropped('newest', len(packets), exc)

    def _drop_oldest(self, packets: Sequence[StreamPacket], exc: QueueFullError, code: int) -> bool:
        sizes = row_bytes(self.queue, packets)
        dropped = drop_oldest(
            self.queue, len(packets), sum(sizes), reserve=code == BLOCKED_BY_RESERVE, reason=_why(exc)
        )
        if dropped.rows:
            self._count_dropped('oldest', dropped.rows, exc)
        return dropped.rows > 0

    def _count_dropped(self, which: str, n: int, exc: QueueFullError) -> None:
        plugin = self.plugin
        first = which not in self._warned_drop
        self._warned_drop.add(which)
        plugin.count('budget_dropped_total', n)
        plugin.count(f'budget_dropped_{which}_total', n)
        if first:
            plugin.log.warning(
                f'{_why(exc)}; full_policy drop_{which}: dropping the {which} events '
                '(counted as budget_dropped_total, noted in the queue file: '
                '`schnitzel-stream deadletter drops`)'
            )

    # -- holding (block) ---------------------------------------------------------------------------
    def _hold(self, exc: QueueFullError, code: int, held: int, attempt: int) -> None:
        plugin = self.plugin
        plugin.gauge('storage_blocked_code', code)
        plugin.gauge('storage_held_packets', held)
        if self.blocked_since is None:
            self.blocked_since = time.monotonic()
            plugin.count('storage_blocked_total')
            plugin.log.error(
                f'{exc}; holding {held} packets and taking no more from the inbox until there is room '
                '(retrying with backoff; the edge policy applies upstream)'
            )
        elif attempt % 30 == 0:
            plugin.log.warning(
                f"node '{plugin.node_id}': still no room in the queue after "
                f'{time.monotonic() - self.blocked_since:.0f} s: {exc}'
            )

    def _resume(self, held: int, attempt: int) -> None:
        if not attempt:
            return
        since, self.blocked_since = self.blocked_since, None
        self.plugin.gauge('storage_blocked_code', 0)
        self.plugin.gauge('storage_held_packets', 0)
        if since is not None:
            waited = time.monotonic() - since
            self.plugin.count('storage_blocked_ms_total', int(waited * 1000))
            self.plugin.log.warning(
                f"node '{self.plugin.node_id}': the queue has room again after {waited:.1f} s; "
                f'the {held} held packets are handled, the inbox drains'
            )

