"""A live node's inboxes under one lock, in arrival order, drained by the node's one worker thread.

Producers (other nodes' threads, DDS callbacks) offer packets; the node's worker takes them in the
order they arrived across all its input ports (the same token trick as the deterministic engine:
one token per accepted packet). Control work — dynamic parameter changes — goes through the same
mailbox so the plugin is only ever called from its worker thread.

`block` is implemented here: a producer facing a full inbox waits until the worker makes room (or
the mailbox closes, in which case the packet is counted as discarded). That wait is for producers in
the same container only. A DDS callback thread serves every cross-process input of its container,
so it must never wait for one node: it uses `offer_nowait`, where a packet that finds a `block`
inbox full waits in the inbox's spill (as many again as the inbox holds) and moves into the inbox
as the worker makes room; beyond that it is dropped and counted (`dropped_new`). Notifications are only sent
when someone waits, so the common case — room in the inbox, worker busy — is one lock acquisition
and a few appends (`offer` inlines Inbox.offer's accepting branch for that reason; every other
case goes through Inbox.offer, the one place that applies policies).

Outputs of one call arrive together (docs/runtime.md): `put_many` / `put_many_nowait` put all
packets one plugin call returned for this inbox under one lock hold, applying the overflow policy
to each in order (so with drop_new and an inbox of m, exactly min(count, free room) of them get
in, as upstream's single-threaded runner), and wake the worker once after. `block` with a batch
larger than the free room: the packets that fit go in, the worker is woken, and the rest wait per
packet as with offer() — the batch is then not atomic, but nothing deadlocks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from schnitzel_stream_ros.graph.model import Overflow
from schnitzel_stream_ros.runtime.inbox import Inbox, InboxOverflowError, Item, Offer
from schnitzel_stream_ros.runtime.run_gate import RunGate

Control = Callable[[], None]
#: What a producer appends to the arrival order: (input port name, its inbox), built once per input.
Token = tuple[str, Inbox]


class Mailbox:
    """All inboxes of one node plus its control queue; thread-safe."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._lock = threading.Lock()  # also the node's RunGate's (try_claim)
        self._has_work = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._order: deque[Token] = deque()
        self._controls: deque[Control] = deque()
        self.inboxes: dict[str, Inbox] = {}
        self._worker_waiting = False
        self._producers_waiting = 0
        self._closed = False
        self.busy = False  # the worker holds an item it has not finished yet
        self._claimed = False  # another thread runs the plugin inline (try_claim), the worker waits

    def add_inbox(self, port: str, inbox: Inbox) -> Token:
        with self._lock:
            self.inboxes[port] = inbox
        return (port, inbox)

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing is being processed (a moment's view)."""
        return (
            not self._order
            and not self._controls
            and not self.busy
            and not self._claimed
            and not any(inbox.spill for inbox in self.inboxes.values())
        )

    def __len__(self) -> int:
        return len(self._order)

    def offer(self, token: Token, item: Item) -> None:
        """Deliver one packet under the inbox's policy (may wait for `block`, may raise for `error`)."""
        inbox = token[1]
        with self._lock:
            items = inbox.items
            if len(items) < inbox.maxsize and not self._closed:  # the common case, inlined
                items.append(item)
                item[2].packets += 1
                if len(items) > inbox.depth_max:
                    inbox.depth_max = len(items)
                self._order.append(token)
                if self._worker_waiting:
                    self._has_work.notify()
                return
            self._offer_under_policy(token, inbox, item)

    def offer_nowait(self, token: Token, item: Item) -> None:
        """Like offer(), but never waits (DDS callbacks): a full `block` inbox spills (see above)."""
        with self._lock:
            self._put_nowait(token, token[1], item)
            if self._worker_waiting and self._order:
                self._has_work.notify()

    def put_many(self, token: Token, items: list[Item]) -> None:
        """All outputs of one plugin call for this inbox, as one operation (module docstring)."""
        self._put_many(token, items, self._offer_under_policy)

    def put_many_nowait(self, token: Token, items: list[Item]) -> None:
        """put_many() for DDS callbacks: never waits (a full `block` inbox spills, see above)."""
        self._put_many(token, items, self._put_nowait)

    def _put_many(self, token: Token, items: list[Item], put: Callable[..., None]) -> None:
        inbox = token[1]
        with self._lock:
            done = 0
            try:
                for item in items:
                    put(token, inbox, item, notify=False)
                    done += 1
            except InboxOverflowError:  # policy `error`: the rest of the call's batch is counted too
                for item in items[done + 1:]:
                    self._discard(inbox, item)
                raise
            finally:  # also when policy `error` raised half-way: what got in is worked on
                if self._worker_waiting and self._order:
                    self._has_work.notify()

    def _put_nowait(self, token: Token, inbox: Inbox, item: Item, notify: bool = False) -> None:
        """One packet under the lock, never waiting; the caller wakes the worker."""
        if inbox.overflow is not Overflow.BLOCK or self._closed:
            self._offer_under_policy(token, inbox, item, notify=False)  # these policies never wait
            return
        items = inbox.items
        if len(items) < inbox.maxsize and not inbox.spill:
            items.append(item)
            item[2].packets += 1
            if len(items) > inbox.depth_max:
                inbox.depth_max = len(items)
            self._order.append(token)
            return
        item[2].packets += 1
        if len(inbox.spill) < inbox.maxsize:
            inbox.spill.append(item)
            return
        inbox.dropped_new += 1
        item[2].dropped += 1

    def _refill_from_spill(self, port: str, inbox: Inbox) -> None:
        """Move spilled packets into the room the worker just made (under the lock)."""
        while inbox.spill and len(inbox.items) < inbox.maxsize:
            inbox.items.append(inbox.spill.popleft())
            self._order.append((port, inbox))

    def _offer_under_policy(self, token: Token, inbox: Inbox, item: Item, notify: bool = True) -> None:
        if self._closed:
            self._discard(inbox, item)
            return
        result = inbox.offer(item)
        while result is Offer.FULL:
            if self._worker_waiting and self._order:  # a batch's first packets: the worker makes room
                self._has_work.notify()
            self._producers_waiting += 1
            self._has_room.wait(0.2)
            self._producers_waiting -= 1
            if self._closed:
                self._discard(inbox, item)
                return
            result = inbox.offer(item)
        if result is Offer.ACCEPTED:
            self._order.append(token)
            if notify and self._worker_waiting:
                self._has_work.notify()

    @staticmethod
    def _discard(inbox: Inbox, item: Item) -> None:
        item[2].packets += 1
        item[2].dropped += 1
        inbox.discarded += 1

    def post(self, control: Control) -> None:
        """Run `control` on the worker thread before the next packet."""
        with self._lock:
            self._controls.append(control)
            if self._worker_waiting:
                self._has_work.notify()

    def take(self) -> tuple[str, Item] | Control | None:
        """Next control or (port, item), waiting for one; None once closed and empty.

        Calling take() also ends the previous item (`busy` stays exact for idle detection).
        """
        with self._lock:
            self.busy = False
            while True:
                if self._claimed:  # the plugin runs inline elsewhere: wait for release()
                    self._worker_waiting = True
                    self._has_work.wait()
                    self._worker_waiting = False
                    continue
                if self._controls:
                    self.busy = True
                    return self._controls.popleft()
                order = self._order
                while order:
                    port, inbox = order.popleft()
                    if not inbox.items:
                        continue
                    item = inbox.items.popleft()
                    if inbox.spill:
                        self._refill_from_spill(port, inbox)
                    if self._producers_waiting:
                        self._has_room.notify()
                    self.busy = True
                    return port, item
                if self._closed:
                    return None
                self._worker_waiting = True
                self._has_work.wait()
                self._worker_waiting = False

    def take_more(self, port: str, limit: int) -> list[Item]:
        """Up to `limit` further items of `port` that arrived right after the one just taken, for
        a node that handles batches (Plugin.process_batch). Arrival order holds: it stops at the
        first packet of another port and before any pending control. The worker stays busy."""
        taken: list[Item] = []
        with self._lock:
            order = self._order
            while order and len(taken) < limit and not self._controls:
                token_port, inbox = order[0]
                if token_port != port:
                    break
                order.popleft()
                if inbox.items:
                    taken.append(inbox.items.popleft())
                    if inbox.spill:
                        self._refill_from_spill(port, inbox)
            if taken and self._producers_waiting:
                self._has_room.notify_all()
        return taken

    @property
    def lock(self) -> threading.Lock:
        """This mailbox's lock, for the node's RunGate to share (see try_claim)."""
        return self._lock

    def try_claim(self, gate: RunGate | None = None) -> bool:
        """Let the calling thread run the plugin now, inline, if the node is idle with nothing waiting.

        Used by DDS callbacks for cheap nodes (runtime/ros_node.py): handing a packet to the worker
        thread costs two GIL hand-overs, more than a cheap plugin's whole work. Mutual exclusion with
        the worker holds (the worker waits while claimed), and arrival order holds (only when nothing
        waits). Every claim must be followed by release() with the same `gate`.

        `gate`: the node's RunGate, built on this mailbox's lock (RunGate(mailbox.lock)): the claim
        then also enters the gate (refused unless the node is active), in the same lock round trip.
        """
        with self._lock:
            if self.busy or self._claimed or self._order or self._controls or self._closed:
                return False
            if gate is not None and not gate.enter_held():
                return False
            self._claimed = True
            return True

    def release(self, gate: RunGate | None = None) -> None:
        with self._lock:
            self._claimed = False
            if gate is not None:
                gate.leave_held()
            if self._worker_waiting and (self._order or self._controls):  # only wake it for work
                self._has_work.notify()

    def done(self) -> None:
        """The worker finished its item and takes no other now (take() implies this)."""
        self.busy = False

    def close(self, discard: bool = False) -> int:
        """No more packets are accepted; the worker drains what waits (or it is discarded)."""
        with self._lock:
            self._closed = True
            dropped = 0
            if discard:
                for inbox in self.inboxes.values():
                    dropped += inbox.discard_all()
                self._order.clear()
            self._has_work.notify_all()
            self._has_room.notify_all()
            return dropped
