"""One frame lane: a writer in the producing container, readers in consuming containers (iceoryx2).

Why iceoryx2 (README, dependencies): it owns what makes shared memory safe between processes that
may die at any moment — a bounded pool per publisher whose samples are reused only once every
subscriber has released them, keep-freshest overflow that never blocks the publisher, and the
cleanup of a dead process's segments and ports. Our part is the frame layout (`layout.py`), the
leases and the counters.

Lifetime of a frame:
- the writer loans a sample from its pool (size from the edge's `pool`), writes the packet JSON and
  the pixels once, sends it and rings the lane's event; it never waits: with no reader it writes
  nothing, a full pool (`LoanError`) drops the frame and counts it;
- or the source wrote the frame straight into a sample it was lent (`loan_frame`, offered to plugins as
  `Plugin.frame_buffer`): then the writer only adds the JSON in front and sends it — no copy at all.
  A lent sample that is never sent goes back to the pool once its array is gone (`loans_returned_total`);
  at most `MAX_OPEN_LOANS` are out at once, past that (or with no reader, or a full pool) the source
  gets plain memory and the frame is copied as before. A sent frame's array turns read-only;
- a reader sleeps on the lane's event, except while frames come back to back or at a steady period:
  then it is awake (polling) when the next one comes (arrivals.py says when and why);
- each reader's queue holds `pool` samples; a slow reader loses the oldest (iceoryx2's safe
  overflow: keep-freshest), which it sees as a gap in `seq` and counts as `missed_total`;
- a reader turns a sample into a numpy view of the shared memory with a *lease*: the sample goes
  back to the pool when the last reference to the array is gone. A reader holds at most `pool - 1`
  leases; past that it copies the frame into its own memory and releases the sample at once
  (`copied_total`), so a plugin that hoards frames can never exhaust the producer's pool;
- a frame is never overwritten while a lease on it is held: iceoryx2 does not hand a borrowed
  sample to the publisher again (the integration test hashes every frame to check it).

A process killed with SIGKILL leaves its node, ports and segments behind; every writer and reader
removes the stale resources of dead nodes when it opens the lane and then once a second
(`Node.try_cleanup_dead_nodes`, 0.1-0.3 ms: after a frame was handled, never in front of one), so a
restarted container finds the lane clean and /dev/shm does not grow. Samples whose header does not
match their slice are refused and counted, never read
(`layout.check_header`); a restarted producer is a new epoch, so its seq numbers are not gaps.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from schnitzel_stream_ros.packet import EMPTY_META, FrozenMeta, StreamPacket
from schnitzel_stream_ros.shm_lane.arrivals import COARSE_MARGIN_NS, SLICE_NS, WAKE_AHEAD_NS, ArrivalClock
from schnitzel_stream_ros.shm_lane.layout import (
    DTYPE_CODES,
    DTYPES,
    LOAN_META_RESERVE,
    TYPESTRS,
    FrameHeader,
    check_header,
    decode_meta,
    encode_meta,
    frame_shape,
    pixel_offset,
    read_header,
    write_header,
)

DEFAULT_POOL = 4
MAX_POOL = 64
#: Consumers one lane serves. Each costs the producer 2 × pool samples of shared memory (a 4K lane with
#: pool 4 and 2 readers maps ~19 samples of 25 MB), so the bound is small; the validator refuses more.
DEFAULT_MAX_READERS = 2
#: How often writers and readers sweep the resources of dead processes.
CLEANUP_EVERY_SEC = 1.0
#: How long a reader waits for the lane's event before it looks again (stop, cleanup, releases).
READER_WAIT_MS = 100
#: How often a writer asks how many readers the lane has (when none: nothing is written).
READER_CHECK_NS = 20_000_000
#: Samples a writer lends to its source at once (`loan_frame`); one more stays for the copying path.
MAX_OPEN_LOANS = 2

#: The room in front of a lent frame, as a ctypes view (writing through it is no foreign call).
_META_AREA = ctypes.c_char * LOAN_META_RESERVE

_iox2: Any = None
_node: Any = None
_node_lock = threading.Lock()
#: Publisher.loan_slice_uninit and SampleMutUninit.assume_init as iceoryx2's native methods: its Python
#: wrappers of both check the payload type with typing.get_origin on every call (~1 µs of a frame on
#: the producer, measured: issue 23). iceoryx2 is pinned (requirements/python.txt); a version without
#: them gets the wrappers.
_loan_slice: Callable[[Any, int], Any] = None  # type: ignore[assignment]
_assume_init: Callable[[Any], Any] = None  # type: ignore[assignment]


def iceoryx2() -> Any:
    """The iceoryx2 module, imported on first use (only containers with a lane load it)."""
    global _iox2, _loan_slice, _assume_init
    if _iox2 is None:
        import iceoryx2

        iceoryx2.set_log_level_from_env_or(iceoryx2.LogLevel.Error)
        publisher, uninit = iceoryx2.Publisher, iceoryx2.SampleMutUninit
        _loan_slice = getattr(publisher, '__loan_slice_uninit', publisher.loan_slice_uninit)
        _assume_init = getattr(uninit, '__assume_init', uninit.assume_init)
        _iox2 = iceoryx2
    return _iox2


def process_node() -> Any:
    """The one iceoryx2 node of this process (ports of every lane hang on it)."""
    global _node
    with _node_lock:
        if _node is None:
            iox2 = iceoryx2()
            _node = iox2.NodeBuilder.new().name(iox2.NodeName.new(f'schnitzel_stream_{os.getpid()}')).create(
                iox2.ServiceType.Ipc)
        return _node


def cleanup_dead_nodes() -> None:
    """Remove what processes killed without a goodbye left behind (ports, segments in /dev/shm)."""
    with contextlib.suppress(Exception):  # a sweep that fails now is retried in a second
        process_node().try_cleanup_dead_nodes()


def lane_service_name(topic: str, domain: str | None = None) -> str:
    """iceoryx2 service of the lane of one ROS topic; the ROS domain keeps domains apart."""
    domain = domain if domain is not None else os.environ.get('ROS_DOMAIN_ID', '0')
    return f'schnitzel_stream/d{domain}{topic}'


@dataclass(frozen=True)
class LaneSettings:
    """What both ends of a lane must agree on (iceoryx2 refuses to open a service that differs)."""

    pool: int = DEFAULT_POOL
    max_readers: int = DEFAULT_MAX_READERS

    def __post_init__(self) -> None:
        if not 2 <= self.pool <= MAX_POOL:
            raise ValueError(f'lane pool must be 2..{MAX_POOL}, got {self.pool}')


def _open_services(name: str, settings: LaneSettings) -> tuple[Any, Any]:
    iox2 = iceoryx2()
    node = process_node()
    service_name = iox2.ServiceName.new(name)
    frames = (
        node.service_builder(service_name)
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .user_header(FrameHeader)
        .enable_safe_overflow(True)
        .subscriber_max_buffer_size(settings.pool)
        .subscriber_max_borrowed_samples(settings.pool)
        .max_subscribers(settings.max_readers)
        .max_publishers(2)  # a restarted producer may open before the dead one is swept
        .open_or_create()
    )
    events = node.service_builder(service_name).event().open_or_create()
    return frames, events


class _LoanSpec(NamedTuple):
    """What loan_frame works out once per shape and dtype a source asks for."""

    shape: tuple[int, ...]
    typestr: str
    nbytes: int
    total: int  # the sample: JSON room + pixels
    header: tuple[int, int, int, int]  # dtype code, height, width, channels (0: a 2-D frame)


def _loan_spec(shape: Any, dtype: Any) -> _LoanSpec | None:
    """The spec of a frame of `shape` × `dtype`, or None when the lane does not carry such frames."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if dtype not in DTYPE_CODES or len(shape) not in (2, 3) or min(shape) < 1:
        return None
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    return _LoanSpec(shape, dtype.str, nbytes, LOAN_META_RESERVE + nbytes,
                     (DTYPE_CODES[dtype], shape[0], shape[1], shape[2] if len(shape) == 3 else 0))


#: Specs a writer keeps (a source asks for one or two shapes; a bound all the same).
MAX_LOAN_SPECS = 16


class _Loan:
    """One sample lent to a source: a writable numpy array over its pixel area (`loan_frame`).

    The array's base is this object, so it lives as long as the array or any view of it. Sent, it
    hands the sample to iceoryx2 (`take`); dropped unsent, it queues the sample for the writer to
    return to the pool — on the writer's own thread, the one that uses the publisher.
    """

    __slots__ = ('__array_interface__', '__weakref__', '_returned', '_sample', 'address', 'array', 'capacity',
                 'spec')

    def __init__(self, sample: Any, address: int, spec: _LoanSpec, returned: collections.deque) -> None:
        self._sample = sample
        self._returned = returned
        self.address = address
        self.spec = spec
        self.capacity = spec.nbytes
        self.array: weakref.ref[np.ndarray] | None = None  # the array lent (set by loan_frame)
        self.__array_interface__ = {'version': 3, 'shape': spec.shape, 'typestr': spec.typestr,
                                    'data': (address, False)}

    def take(self) -> Any:
        sample, self._sample = self._sample, None
        return sample

    def __del__(self) -> None:
        if self._sample is not None:
            self._returned.append(self._sample)


class FrameLaneWriter:
    """The producing end: frames of one output port into shared memory."""

    def __init__(self, topic: str, settings: LaneSettings = LaneSettings(), *,
                 domain: str | None = None) -> None:
        cleanup_dead_nodes()
        self.name = lane_service_name(topic, domain)
        self.settings = settings
        self._frames, self._events = _open_services(self.name, settings)
        self._publisher: Any = None
        self._max_len = 0
        self._notifier = self._events.notifier_builder().create()
        self._epoch = int.from_bytes(os.urandom(8), 'little') or 1
        self._seq = 0
        self._readers = 0
        self._next_reader_check = 0
        self._next_cleanup = time.monotonic() + CLEANUP_EVERY_SEC
        self._loans: dict[int, weakref.ref[_Loan]] = {}  # pixel address -> a sample lent to the source
        self._specs: dict[tuple[Any, Any], _LoanSpec | None] = {}  # (shape, dtype) asked -> its spec
        self._returned: collections.deque = collections.deque()  # lent samples dropped unsent
        self.written_total = 0
        self.no_reader_total = 0  # frames not written: nobody was reading
        self.loan_failed_total = 0  # frames dropped: the pool was exhausted
        self.refused_total = 0  # packets that are no frame (payload not an array)
        self.loaned_total = 0  # samples lent to the source to write a frame into (loan_frame)
        self.zero_copy_total = 0  # frames sent from such a sample: no copy
        self.loans_returned_total = 0  # lent samples dropped unsent, back in the pool
        self.loan_declined_total = 0  # loan_frame answered None (no reader, loans or pool exhausted)

    def readers(self, refresh: bool = False) -> int:
        """Readers attached to the lane (asked of iceoryx2 at most every READER_CHECK_NS)."""
        now = time.perf_counter_ns()
        if refresh or now >= self._next_reader_check:
            self._readers = self._frames.dynamic_config.number_of_subscribers
            self._next_reader_check = now + READER_CHECK_NS
        return self._readers

    def _publisher_for(self, size: int) -> Any:
        if self._publisher is None or size > self._max_len:
            if self._publisher is not None and self._loans:
                # samples are lent out of this publisher: it stays, and grows its memory by itself
                # (AllocationStrategy.PowerOfTwo)
                return self._publisher
            iox2 = iceoryx2()
            if self._publisher is not None:
                self._publisher.delete()
            self._max_len = max(size, self._max_len)
            self._publisher = (
                self._frames.publisher_builder()
                .initial_max_slice_len(self._max_len)
                .allocation_strategy(iox2.AllocationStrategy.PowerOfTwo)
                .max_loaned_samples(MAX_OPEN_LOANS + 1)
                .create()
            )
        return self._publisher

    def _return_loans(self) -> None:
        returned = self._returned
        if not returned:
            return
        while returned:
            returned.popleft().delete()
            self.loans_returned_total += 1
        # forget the addresses of the loans that were dropped (sent ones are removed at once)
        self._loans = {address: ref for address, ref in self._loans.items() if ref() is not None}

    @property
    def loans_open(self) -> int:
        """Samples lent now (read by snapshots on another thread: a tuple taken at once)."""
        return sum(1 for ref in tuple(self._loans.values()) if ref() is not None)

    def loan_frame(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray | None:
        """A writable array of `shape` × `dtype` in a sample of this lane, for a source to write one
        frame into and emit; None when it cannot be lent (no reader, a dtype or shape the lane does
        not carry, MAX_OPEN_LOANS out, pool exhausted): the caller then uses plain memory."""
        if self._returned:
            self._return_loans()
        try:
            key = (shape, dtype)
            spec = self._specs[key]
        except (KeyError, TypeError):  # a new request, or a shape given as a list
            spec = _loan_spec(shape, dtype)
            if len(self._specs) < MAX_LOAN_SPECS:
                with contextlib.suppress(TypeError):
                    self._specs[key] = spec
        if spec is None or len(self._loans) >= MAX_OPEN_LOANS or not self.readers():
            self.loan_declined_total += 1
            return None
        total = spec.total
        try:
            sample = _loan_slice(self._publisher_for(total), total)
        except Exception:
            sample = None
        if sample is None:
            self.loan_declined_total += 1
            return None
        address = sample.payload_ptr + LOAN_META_RESERVE
        loan = _Loan(sample, address, spec, self._returned)
        self._loans[address] = weakref.ref(loan)
        self.loaned_total += 1
        array = np.asarray(loan)
        loan.array = weakref.ref(array)
        return array

    def is_lent(self, payload: Any) -> bool:
        """True when `payload` is an array written into a sample this writer lent (not sent yet)."""
        return bool(self._loans) and isinstance(payload, np.ndarray) and self._lent(payload) is not None

    def _lent(self, frame: np.ndarray) -> _Loan | None:
        """The loan `frame` was written into, when it starts at one and fits it (C-contiguous)."""
        if not self._loans:
            return None
        loan = frame.base
        if type(loan) is _Loan and loan.array is not None and loan.array() is frame:
            # the very array lent (the usual case): it starts at the loan and fits it; lent still
            # unless it was sent already (then its address may belong to a newer loan)
            ref = self._loans.get(loan.address)
            return loan if ref is not None and ref() is loan else None
        ref = self._loans.get(frame.__array_interface__['data'][0])
        loan = ref() if ref is not None else None
        if loan is None or not frame.flags.c_contiguous or frame.nbytes > loan.capacity:
            return None
        return loan

    def write(self, packet: Any) -> bool:
        """Put one frame packet on the lane; False when it was not written (counted why)."""
        if self._returned:
            self._return_loans()
        frame = packet.payload
        loan = self._lent(frame) if self._loans and type(frame) is np.ndarray else None
        if loan is None and not self.readers():  # a lent frame had a reader when it was lent: not asked again
            self.no_reader_total += 1
            return False
        whole_loan = loan is not None and loan.array() is frame  # type: ignore[misc]  # the very array lent
        if not whole_loan and (not isinstance(frame, np.ndarray) or frame.dtype not in DTYPE_CODES):
            self.refused_total += 1
            return False
        try:
            meta = encode_meta(packet)
            header = loan.spec.header if whole_loan else (DTYPE_CODES[frame.dtype], *frame_shape(frame))
        except (TypeError, ValueError):
            self.refused_total += 1
            raise
        meta_len = len(meta)
        zero_copy = loan is not None and meta_len <= LOAN_META_RESERVE
        if zero_copy:
            # written in place by the source: only the JSON goes in front of it
            sample = loan.take()  # type: ignore[union-attr]
            del self._loans[loan.address]  # type: ignore[union-attr]
            offset = LOAN_META_RESERVE
            _META_AREA.from_address(sample.payload_ptr).raw = meta  # a copy that keeps the GIL held
            self.zero_copy_total += 1
        else:
            offset = pixel_offset(meta_len)
            total = offset + frame.nbytes
            publisher = self._publisher_for(total)
            try:
                sample = _loan_slice(publisher, total)
            except Exception:
                self.loan_failed_total += 1
                return False
            dst = np.frombuffer((ctypes.c_uint8 * total).from_address(sample.payload_ptr), np.uint8)
            dst[:meta_len] = np.frombuffer(meta, np.uint8)
            # the one copy of the pixels: into the shared sample
            dst[offset:].view(frame.dtype).reshape(frame.shape)[...] = frame
        write_header(sample.user_header_ptr, *header, meta_len, offset, frame.nbytes, self._seq, self._epoch,
                     time.perf_counter_ns())
        _assume_init(sample).send()
        self._notifier.notify()
        if zero_copy:
            frame.flags.writeable = False  # sent: the source must not write into it any more
        self._seq += 1
        self.written_total += 1
        if time.monotonic() >= self._next_cleanup:  # after the send: the frame never waits for it
            self._next_cleanup = time.monotonic() + CLEANUP_EVERY_SEC
            cleanup_dead_nodes()
        return True

    def counters(self) -> dict[str, int]:
        return {'written_total': self.written_total, 'no_reader_total': self.no_reader_total,
                'loan_failed_total': self.loan_failed_total, 'refused_total': self.refused_total,
                'loaned_total': self.loaned_total, 'zero_copy_total': self.zero_copy_total,
                'loans_returned_total': self.loans_returned_total, 'loans_open': self.loans_open,
                'loan_declined_total': self.loan_declined_total}

    def close(self) -> None:
        self._return_loans()
        # a sample still lent now stays valid for its array (it keeps the shared memory mapped) and
        # goes back when that array is gone
        self._loans.clear()
        for port in (self._publisher, self._notifier):
            if port is not None:
                port.delete()
        self._publisher = self._notifier = None


class _Lease:
    """Keeps one sample borrowed while a numpy array (or a view of it) refers to its pixels."""

    __slots__ = ('__array_interface__', '_released', '_sample')

    def __init__(self, sample: Any, address: int, shape: tuple[int, ...], typestr: str,
                 released: collections.deque) -> None:
        self._sample = sample
        self._released = released
        self.__array_interface__ = {'version': 3, 'shape': shape, 'typestr': typestr,
                                    'data': (address, True)}  # read-only: a frame is shared

    def __del__(self) -> None:
        self._released.append(self._sample)  # returned by the reader thread (one owner of the port)


PacketSink = Callable[[Any, int], None]


class FrameLaneReader:
    """The consuming end: a thread that turns samples into packets (numpy views under a lease)."""

    def __init__(self, topic: str, on_packet: PacketSink, settings: LaneSettings = LaneSettings(), *,
                 domain: str | None = None, on_refused: Callable[[str], None] | None = None,
                 on_missed: Callable[[int], None] | None = None,
                 on_copied: Callable[[], None] | None = None, name: str = '') -> None:
        self.name = lane_service_name(topic, domain)
        self.settings = settings
        self.on_packet = on_packet
        self.on_refused = on_refused
        self.on_missed = on_missed
        self.on_copied = on_copied
        self._released: collections.deque = collections.deque()
        self._held = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.received_total = 0
        self.missed_total = 0  # frames the lane overwrote before this reader took them (keep-freshest)
        self.refused_total = 0  # samples whose header or JSON failed the checks: never read
        self.copied_total = 0  # frames copied out because the lease limit was reached
        self.polled_total = 0  # frames of a steady stream found by polling in their window (arrivals.py)
        self._arrivals = ArrivalClock()
        self._epoch = 0
        self._last_seq = -1
        self._thread = threading.Thread(target=self._run, name=f'frame-lane {name or topic}', daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    @property
    def held(self) -> int:
        return self._held

    def publishers(self) -> int:
        """Producers attached to the lane now (the supervisor waits for one after a restart)."""
        frames = getattr(self, '_frames', None)
        return frames.dynamic_config.number_of_publishers if frames is not None else 0

    def _run(self) -> None:
        iox2 = iceoryx2()
        try:
            cleanup_dead_nodes()
            frames, events = _open_services(self.name, self.settings)
            self._frames = frames
            subscriber = frames.subscriber_builder().create()
            listener = events.listener_builder().create()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        wait = iox2.Duration.from_millis(READER_WAIT_MS)
        next_cleanup = time.monotonic() + CLEANUP_EVERY_SEC
        stop, released, receive, take = self._stop, self._released, subscriber.receive, self._take
        clock, arrivals = time.perf_counter_ns, self._arrivals
        try:
            while not stop.is_set():
                if released:
                    self._return_leases()
                self._await_frame(listener, subscriber.has_samples, wait)
                # take what is there; while frames come back to back, poll on (arrivals.py)
                while not stop.is_set():
                    if released:
                        self._return_leases()
                    sample = receive()
                    if sample is not None:
                        arrivals.arrived(clock())
                        take(sample)
                    elif arrivals.back_to_back(clock()):
                        os.sched_yield()  # lets go of the GIL
                    else:
                        break
                if time.monotonic() >= next_cleanup:  # after the frames: none waits for the sweep
                    next_cleanup = time.monotonic() + CLEANUP_EVERY_SEC
                    cleanup_dead_nodes()
        finally:
            self._return_leases()

    def _await_frame(self, listener: Any, has_samples: Callable[[], bool], wait: Any) -> None:
        """Return when a frame may be there: on the event, or — for a steady stream — after polling
        through the window its next frame is due in (arrivals.py)."""
        clock, stop = time.perf_counter_ns, self._stop
        due = self._arrivals.due(clock())
        if not due:
            with contextlib.suppress(Exception):  # an interrupted wait: look again
                listener.timed_wait(wait)
            return
        window, polling = due - WAKE_AHEAD_NS, False
        while not has_samples() and not stop.is_set():
            now = clock()
            if now >= due + WAKE_AHEAD_NS:  # no frame in its window: wait on the event as for any other
                with contextlib.suppress(Exception):
                    listener.timed_wait(wait)
                return
            if now >= window:
                polling = True
                os.sched_yield()  # lets go of the GIL
            elif window - now > COARSE_MARGIN_NS:  # far: the event's wait (an early frame rings it)
                with contextlib.suppress(Exception):
                    listener.timed_wait(iceoryx2().Duration.from_nanos(window - now - COARSE_MARGIN_NS))
            else:
                time.sleep(min(window - now, SLICE_NS) / 1e9)
        self.polled_total += polling

    def _return_leases(self) -> None:
        released = self._released
        while released:
            released.popleft().delete()
            self._held -= 1

    def _refuse(self, sample: Any, why: str) -> None:
        sample.delete()
        self.refused_total += 1
        if self.on_refused is not None and self.refused_total == 1:
            self.on_refused(f'frame lane {self.name}: sample refused: {why}')

    def _take(self, sample: Any) -> None:
        header = read_header(sample.user_header_ptr)
        slice_len = sample.header.number_of_elements
        why = check_header(header, slice_len)
        if why:
            self._refuse(sample, why)
            return
        base = sample.payload_ptr
        try:
            # .raw copies without a foreign call (ctypes.string_at would let go of the GIL and wait for it)
            meta = decode_meta((ctypes.c_char * header.meta_len).from_address(base).raw)
        except ValueError as exc:
            self._refuse(sample, str(exc))
            return
        if header.epoch != self._epoch:  # a new producer (first, or restarted): a new sequence
            self._epoch, self._last_seq = header.epoch, header.seq - 1
        if header.seq > self._last_seq + 1:
            missed = header.seq - self._last_seq - 1
            self.missed_total += missed
            if self.on_missed is not None:
                self.on_missed(missed)
        self._last_seq = max(self._last_seq, header.seq)
        shape = (header.height, header.width) if header.channels == 0 else (
            header.height, header.width, header.channels)
        address = base + header.pixel_off
        t_send = header.t_send_ns
        if self._held >= self.settings.pool - 1:
            pixels = np.ctypeslib.as_array((ctypes.c_uint8 * header.pixel_len).from_address(address))
            frame = pixels.view(DTYPES[header.dtype]).reshape(shape).copy()
            sample.delete()
            self.copied_total += 1
            if self.on_copied is not None:
                self.on_copied()
        else:
            self._held += 1
            frame = np.asarray(_Lease(sample, address, shape, TYPESTRS[header.dtype], self._released))
        self.received_total += 1
        fields = meta.get('meta')  # decode_meta checked it is a dict: frozen here, not looked at again
        packet = StreamPacket(meta['packet_id'], meta['ts'], meta['kind'], meta['source_id'], frame,
                              FrozenMeta(fields) if fields else EMPTY_META)
        self.on_packet(packet, t_send)

    def counters(self) -> dict[str, int]:
        return {'received_total': self.received_total, 'missed_total': self.missed_total,
                'refused_total': self.refused_total, 'copied_total': self.copied_total, 'held': self._held,
                'polled_total': self.polled_total}

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
