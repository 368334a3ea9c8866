"""Bounded inbox of one input port: the only place where packets wait, and where they are dropped.

Every packet that waits for a node waits here, so this is where the overflow policy
(`drop_new` | `drop_oldest` | `weighted_drop` | `block` | `error`, docs/wiring.md) is applied and
where every drop is counted — nothing is lost silently anywhere else in the runtime.

`weighted_drop` (upstream's fairness policy) evicts the waiting packet of lowest weight — the
oldest of those on ties — and takes the new one, whatever the new one weighs (as upstream: the
new packet is only refused when nothing waits). Finding it is a scan of the inbox, paid only on
overflow; inboxes are small and bounded.

The inbox itself takes no lock: the deterministic engine is single-threaded, and the live mailbox
(runtime/mailbox.py) already holds one lock over all inboxes of a node. `block` therefore cannot wait
here; `offer()` reports FULL and the caller decides how to wait (the live mailbox waits for space,
the deterministic engine never needs to: it drains after every emission, see runtime/deterministic.py).
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Any

from schnitzel_stream_ros.graph.model import DropWeights, Overflow
from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.runtime.plugin_host import DeliveryError


class InboxOverflowError(DeliveryError):
    """A full inbox with policy `error` got one more packet; the message names node and port."""


class Offer(Enum):
    """What happened to an offered packet."""

    ACCEPTED = 'accepted'  # appended: one more item waits
    REPLACED = 'replaced'  # appended after evicting one (drop_oldest, weighted_drop): count unchanged
    DROPPED = 'dropped'  # the new packet was refused (drop_new)
    FULL = 'full'  # policy block and no space: nothing changed, the caller waits and offers again


#: A waiting packet: (packet, emission time from time.perf_counter_ns, the edge it came over).
#: A plain tuple, not a class: it is made once per packet per edge, on the hottest path there is.
Item = tuple[Any, int, EdgeMetrics]


class Inbox:
    """FIFO of at most `maxsize` items of one input port, with one overflow policy and drop counters."""

    __slots__ = (
        'default_weight',
        'depth_max',
        'discarded',
        'dropped_new',
        'dropped_oldest',
        'dropped_weighted',
        'items',
        'key',
        'label',
        'maxsize',
        'overflow',
        'spill',
        'weights',
    )

    def __init__(self, label: str, maxsize: int, overflow: Overflow | str = Overflow.DROP_NEW,
                 drop_weights: DropWeights | None = None) -> None:
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
        self.dropped_weighted = 0  # evicted by weighted_drop
        ranks = drop_weights or DropWeights()
        self.key = ranks.key
        self.weights = ranks.table()
        self.default_weight = ranks.default
        self.discarded = 0  # still waiting when the run ended without a drain
        self.depth_max = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dropped_total(self) -> int:
        return self.dropped_new + self.dropped_oldest + self.dropped_weighted + self.discarded

    def weight_of(self, packet: Any) -> float:
        """weighted_drop rank of a packet: meta[key], else payload[key], looked up as text."""
        value = packet.meta.get(self.key)
        if value is None and isinstance(packet.payload, dict):
            value = packet.payload.get(self.key)
        return self.weights.get(str(value), self.default_weight)

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
        if policy is Overflow.WEIGHTED_DROP:
            lowest, at = None, 0
            for index, waiting in enumerate(items):
                weight = self.weight_of(waiting[0])
                if lowest is None or weight < lowest:  # strict: the oldest wins a tie
                    lowest, at = weight, index
            evicted = items[at]
            del items[at]
            self.dropped_weighted += 1
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
