"""Bounded inbox of one input port: the only place where packets wait, and where they are dropped.

Every packet that waits for a node waits here, so this is where the overflow policy
(`drop_new` | `drop_oldest` | `block` | `error`, docs/wiring.md) is applied and where every drop is
counted — nothing is lost silently anywhere else in the runtime.

The inbox itself takes no lock: the deterministic engine is single-threaded, and the live mailbox
(runtime/mailbox.py) already holds one lock over all inboxes of a node. `block` therefore cannot wait
here; `offer()` reports FULL and the caller decides how to wait (the live mailbox waits for space,
the deterministic engine never needs to: it drains after every emission, see runtime/deterministic.py).
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Any

from schnitzel_stream_ros.graph.model import Overflow
from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.runtime.plugin_host import DeliveryError


class InboxOverflowError(DeliveryError):
    """A full inbox with policy `error` got one more packet; the message names node and port."""


class Offer(Enum):
    """What happened to an offered packet."""

    ACCEPTED = 'accepted'  # appended: one more item waits
    REPLACED = 'replaced'  # appended after evicting the oldest (drop_oldest): the count is unchanged
    DROPPED = 'dropped'  # the new packet was refused (drop_new)
    FULL = 'full'  # policy block and no space: nothing changed, the caller waits and offers again


#: A waiting packet: (packet, emission time from time.perf_counter_ns, the edge it came over).
#: A plain tuple, not a class: it is made once per packet per edge, on the hottest path there is.
Item = tuple[Any, int, EdgeMetrics]


class Inbox:
    """FIFO of at most `maxsize` items of one input port, with one overflow policy and drop counters."""

    __slots__ = (
        'depth_max',
        'discarded',
        'dropped_new',
        'dropped_oldest',
        'items',
        'label',
        'maxsize',
        'overflow',
        'spill',
    )

    def __init__(self, label: str, maxsize: int, overflow: Overflow | str = Overflow.DROP_NEW) -> None:
        if maxsize < 1:
            raise ValueError(f'{label}: inbox size must be >= 1, got {maxsize}')
        self.label = label  # 'node.port', named in errors
        self.maxsize = maxsize
        self.overflow = Overflow(overflow)
        self.items: deque[Item] = deque()  # read and written only under the owner's lock
        # `block` on the DDS input path: packets that found the inbox full wait here (at most
        # maxsize) instead of blocking the DDS callback thread (runtime/mailbox.py, offer_nowait)
        self.spill: deque[Item] = deque()
        self.dropped_new = 0
        self.dropped_oldest = 0
        self.discarded = 0  # still waiting when the run ended without a drain
        self.depth_max = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dropped_total(self) -> int:
        return self.dropped_new + self.dropped_oldest + self.discarded

    def offer(self, item: Item) -> Offer:
        """Apply the policy to one new item. Raises InboxOverflowError for policy `error`."""
        items = self.items
        edge = item[2]
        edge.packets += 1
        if len(items) < self.maxsize:
            items.append(item)
            if len(items) > self.depth_max:
                self.depth_max = len(items)
            return Offer.ACCEPTED
        policy = self.overflow
        if policy is Overflow.DROP_NEW:
            self.dropped_new += 1
            edge.dropped += 1
            return Offer.DROPPED
        if policy is Overflow.DROP_OLDEST:
            evicted = items.popleft()
            self.dropped_oldest += 1
            evicted[2].dropped += 1
            items.append(item)
            return Offer.REPLACED
        if policy is Overflow.BLOCK:
            edge.packets -= 1  # not offered yet: the caller offers it again when there is room
            return Offer.FULL
        self.dropped_new += 1
        edge.dropped += 1
        raise InboxOverflowError(
            f"inbox '{self.label}' is full ({self.maxsize} packets) and its overflow policy is 'error'"
        )

    def force(self, item: Item) -> None:
        """Append beyond maxsize (deterministic `block`: the drain that follows is the wait)."""
        item[2].packets += 1
        self.items.append(item)
        if len(self.items) > self.depth_max:
            self.depth_max = len(self.items)

    def pop(self) -> Item | None:
        """The oldest item, or None when empty."""
        return self.items.popleft() if self.items else None

    def discard_all(self) -> int:
        """Drop everything still waiting (end of a run that could not drain); counted as drops."""
        n = len(self.items) + len(self.spill)
        for item in (*self.items, *self.spill):
            item[2].dropped += 1
        self.items.clear()
        self.spill.clear()
        self.discarded += n
        return n
