"""Outputs of one call arrive together, across containers too: the batch mark and its reassembly.

In one container an output port puts all packets one plugin call returned into each downstream inbox
with one Mailbox.put_many. Over DDS the packets travel one message each, so the sending port marks
them (`meta['__batch__'] = [stream, seq, index, count]`: the port's random stream id, the call's
number on that port, the packet's place, the batch size) and the receiving container's DDS input
holds the packets of a batch until all `count` have arrived, then puts them in with one put_many.

Marks come from other processes: hostile input. A mark that does not parse (wrong shape or types,
index outside the batch, count outside 2..MAX_BATCH_COUNT, stream id over MAX_STREAM_CHARS) or that
contradicts the batch held for its stream (another count, an index seen already) is counted
(`transport.batch_marks_invalid_total`) and its packet goes in on its own. Holding is bounded: at
most MAX_STREAMS batches (one per sending port) and MAX_HELD_PACKETS packets; a batch whose next
packet does not come within TIMEOUT_SEC (time the whole process stood still does not count), pushed
out by those bounds, or followed by the next batch of its stream (a packet was lost) goes in with
what arrived and is counted (`transport.batches_incomplete_total`); packets of it that come later go
in at once, each on its own (its stream remembers the batch), as does a packet of an older call than
the one held. Nothing that arrived is dropped here; only the inbox's overflow policy drops. The mark
is removed before a plugin sees the packet. Packets without a mark pay one dict lookup.
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from schnitzel_stream_ros.packet import FrozenMeta, StreamPacket

META_KEY = '__batch__'
#: the most packets one mark may announce (PluginHost delivers larger outputs in chunks of this size)
MAX_BATCH_COUNT = 1024
MAX_STREAM_CHARS = 64
MAX_SEQ = 2**53
#: batches held at once (one per sending port), and packets held in them together
MAX_STREAMS = 64
MAX_HELD_PACKETS = 4096
#: how long an incomplete batch is held after its last packet came (the packets of one call are
#: published back to back; on a loaded machine a thread may still stall for tens of ms between two)
TIMEOUT_SEC = 0.1
#: a reaper that wakes this much later than it meant to saw the process stalled (descheduled on a
#: loaded machine): packets could not be received meanwhile, so the hold starts afresh
STALL_SEC = 0.02

#: (stream, seq, index, count) of a valid mark
Mark = tuple[str, int, int, int]


def _is_int(value: Any) -> bool:
    return type(value) is int


def parse_mark(value: Any) -> Mark | None:
    """The mark as (stream, seq, index, count), or None when it is not a valid one."""
    if type(value) not in (list, tuple) or len(value) != 4:
        return None
    stream, seq, index, count = value
    if type(stream) is not str or not 0 < len(stream) <= MAX_STREAM_CHARS:
        return None
    if not (_is_int(seq) and _is_int(index) and _is_int(count)):
        return None
    if not (0 <= seq <= MAX_SEQ and 2 <= count <= MAX_BATCH_COUNT and 0 <= index < count):
        return None
    return stream, seq, index, count


def strip_mark(packet: StreamPacket) -> StreamPacket:
    """The packet without its mark (same packet id)."""
    meta = FrozenMeta({k: v for k, v in packet.meta.items() if k != META_KEY})
    return dataclasses.replace(packet, meta=meta)


class BatchMarker:
    """The sending side, one per output port: marks the packets of one call."""

    def __init__(self) -> None:
        self.stream = uuid.uuid4().hex[:16]
        self._seq = itertools.count(1)

    def mark(self, packets: list[StreamPacket]) -> list[StreamPacket]:
        out: list[StreamPacket] = []
        for start in range(0, len(packets), MAX_BATCH_COUNT):
            chunk = packets[start:start + MAX_BATCH_COUNT]
            if len(chunk) < 2:
                out.extend(chunk)
                continue
            seq = next(self._seq) % MAX_SEQ
            n = len(chunk)
            out.extend(p.with_meta(**{META_KEY: [self.stream, seq, i, n]}) for i, p in enumerate(chunk))
        return out


class _Held:
    __slots__ = ('count', 'deadline', 'got', 'seq', 'slots')

    def __init__(self, seq: int, count: int, deadline: float) -> None:
        self.seq = seq
        self.count = count
        self.deadline = deadline
        self.got = 0
        self.slots: list[Any] = [None] * count


class BatchAssembler:
    """The receiving side, one per DDS input: holds marked packets until their batch is complete.

    `deliver(items)` puts items into the inbox as one operation (Mailbox.put_many_nowait); it is
    called under this assembler's lock, so batches go in in the order they were decided. A daemon
    thread, started at the first held batch, puts in batches that time out; tests may pass
    `reaper=False` and call expire() with their own clock.
    """

    def __init__(self, deliver: Callable[[list[Any]], None], counters: Any, *,
                 timeout_sec: float = TIMEOUT_SEC, clock: Callable[[], float] = time.monotonic,
                 reaper: bool = True) -> None:
        self.deliver = deliver
        self.counters = counters  # batches_incomplete_total, batch_marks_invalid_total
        self.timeout_sec = timeout_sec
        self.clock = clock
        self._held: dict[str, _Held] = {}  # stream -> its batch, oldest first
        self._gone: dict[str, int] = {}  # stream -> seq of its last batch put in incomplete (bounded)
        self._held_packets = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._use_reaper = reaper
        self._reaper: threading.Thread | None = None
        self._closed = False

    @property
    def held_packets(self) -> int:
        return self._held_packets

    def add(self, item: Any, mark: Mark) -> None:
        """One marked packet (item = (packet without mark, t_emit, edge))."""
        stream, seq, index, count = mark
        with self._lock:
            if self._closed:
                self.deliver([item])
                return
            held = self._held.get(stream)
            if held is not None and held.seq < seq:  # the stream's next call: the held one is short
                self._put_in(stream, complete=False)
                held = None
            late = self._gone.get(stream, -1) >= seq if held is None else seq < held.seq
            if late:  # a packet of a batch already put in (or hostile order): it goes in on its own
                self.deliver([item])
                return
            if held is None:
                while self._held and (len(self._held) >= MAX_STREAMS
                                      or self._held_packets + count > MAX_HELD_PACKETS):
                    self._put_in(next(iter(self._held)), complete=False)
                held = self._held[stream] = _Held(seq, count, self.clock() + self.timeout_sec)
                self._start_reaper()
            elif held.count != count or held.slots[index] is not None:
                self.counters.batch_marks_invalid_total += 1
                self.deliver([item])
                return
            held.slots[index] = item
            held.got += 1
            held.deadline = self.clock() + self.timeout_sec  # held while its packets keep coming
            self._held_packets += 1
            if held.got == held.count:
                self._put_in(stream, complete=True)

    def expire(self) -> float | None:
        """Put in the batches whose time is up; seconds until the next one is due (None: none held)."""
        with self._lock:
            return self._expire()

    def _expire(self) -> float | None:
        now = self.clock()
        for stream in [s for s, held in self._held.items() if held.deadline <= now]:
            self._put_in(stream, complete=False)
        if not self._held:
            return None
        return min(held.deadline for held in self._held.values()) - now

    def flush(self) -> None:
        """Put in everything held now (the input is switched off or closes)."""
        with self._lock:
            while self._held:
                self._put_in(next(iter(self._held)), complete=False)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._closed = True
            self._wake.notify_all()

    def _put_in(self, stream: str, complete: bool) -> None:
        held = self._held.pop(stream)
        self._held_packets -= held.got
        if not complete:
            self.counters.batches_incomplete_total += 1
            self._gone.pop(stream, None)
            if len(self._gone) >= MAX_STREAMS:
                del self._gone[next(iter(self._gone))]
            self._gone[stream] = held.seq
        self.deliver([item for item in held.slots if item is not None])

    def _start_reaper(self) -> None:
        if not self._use_reaper:
            return
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name='batch-reaper', daemon=True)
            self._reaper.start()
        else:
            self._wake.notify()

    def wake(self, planned: float | None) -> float | None:
        """One look of the reaper, which meant to wake at `planned`: after a stall of the whole process
        (it woke over STALL_SEC late) the held batches get their hold afresh — their packets may be
        waiting in DDS for the receiving thread, which stalled too — then expire(). Under the lock."""
        if planned is not None:
            now = self.clock()
            if now - planned > STALL_SEC:  # the hold starts again now that the process runs again
                for held in self._held.values():
                    held.deadline = max(held.deadline, now + self.timeout_sec)
        return self._expire()

    def _reap(self) -> None:
        with self._lock:
            planned = None
            while not self._closed:
                try:
                    due = self.wake(planned)
                except Exception:  # deliver() failed (reported by it): the next batch is tried anew
                    due = self.timeout_sec
                planned = None if due is None else self.clock() + due
                self._wake.wait(due)
