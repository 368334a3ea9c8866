"""The threads that run plugin code in live mode: one per input-draining node, one per source.

Why own threads rather than rclpy executor callbacks: a hand-off through an rclpy executor costs tens
of microseconds of Python per packet, a hand-off through a Mailbox about one; and a node on its own
thread can never hold up a source or another node (a slow detector backs up only its own inbox,
where its overflow policy decides). The rclpy executor keeps what it is good at: DDS subscriptions
from other processes, services, parameters.

Errors: a plugin exception is logged, counted (`node.<id>.errors_total`) and the node goes on with
the next packet — a site must not die of one bad packet (the deterministic mode aborts instead,
as upstream). An `error` overflow policy downstream is reported as fatal to the container.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.runtime.mailbox import Control, Mailbox
from schnitzel_stream_ros.runtime.plugin_host import DeliveryError, PluginError, PluginHost
from schnitzel_stream_ros.runtime.run_gate import RunGate

FatalHandler = Callable[[str], None]
#: A node's restart policy (runtime/node_restart.py): (error, caught on the node's worker thread?)
ErrorHandler = Callable[[PluginError, bool], None]
#: Log the first few plugin errors of a node, then every n-th (counted either way).
_LOG_FIRST_ERRORS = 5
_LOG_EVERY_NTH_ERROR = 100


class CostMeter:
    """How long a node's handle() takes (moving average): decides whether DDS callbacks may run it inline."""

    __slots__ = ('cheap', 'ewma_ns', 'inline', 'samples')

    #: a node is "cheap" below this (the executor thread may run it), after enough samples
    INLINE_MAX_NS = 200_000
    MIN_SAMPLES = 16
    #: one sample counts at most this much: a handle() measured in wall time also holds the time
    #: the thread was preempted or waited for the GIL (tens of ms on a busy machine); unclamped, one
    #: such sample made a 10 us node "expensive" for hundreds of packets, and every packet then
    #: paid a hand-over to its worker thread (more CPU, more waiting: it fed itself). A node that
    #: really costs more than INLINE_MAX_NS still averages above it.
    SAMPLE_MAX_NS = 10 * INLINE_MAX_NS

    def __init__(self, inline: bool = True) -> None:
        self.ewma_ns = 0.0
        self.samples = 0
        self.inline = inline  # False (component_container_isolated): never cheap enough to run inline
        self.cheap = False  # an attribute, not a property: read once per DDS message

    def reset(self) -> None:
        """Forget the measurements (a replaced plugin is measured afresh)."""
        self.samples = 0
        self.ewma_ns = 0.0
        self.cheap = False

    def add(self, ns: int) -> None:
        if ns > self.SAMPLE_MAX_NS:
            ns = self.SAMPLE_MAX_NS
        self.samples += 1
        self.ewma_ns += (ns - self.ewma_ns) * (0.5 if self.samples < self.MIN_SAMPLES else 0.05)
        self.cheap = self.inline and self.samples >= self.MIN_SAMPLES and self.ewma_ns < self.INLINE_MAX_NS


class EmissionBudget:
    """`--max-events`: one budget for the emissions of all sources of a process (None = unlimited)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self.limit is None:
            return True
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give_back(self) -> None:
        if self.limit is not None:
            with self._lock:
                self.used -= 1

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.used >= self.limit


def _report_plugin_error(host: PluginHost, exc: PluginError) -> None:
    host.metrics.errors += 1
    n = host.metrics.errors
    if n <= _LOG_FIRST_ERRORS or n % _LOG_EVERY_NTH_ERROR == 0:
        suffix = (
            f' (error {n}; logging every {_LOG_EVERY_NTH_ERROR}th from now)' if n == _LOG_FIRST_ERRORS else ''
        )
        host.ctx.logger.error(f'{exc}{suffix}')


_clock = time.perf_counter_ns

#: Most packets one process_batch() call gets (bounds the time and memory of one call).
MAX_BATCH = 1024


class InputWorker:
    """Drains one node's mailbox into its plugin, in arrival order, until the mailbox closes.

    A plugin that overrides Plugin.process_batch gets everything that waits on the port at once
    (up to MAX_BATCH): while it commits one batch, the next one gathers in its inbox.
    """

    def __init__(
        self,
        host: PluginHost,
        mailbox: Mailbox,
        on_fatal: FatalHandler,
        cost: CostMeter | None = None,
        on_error: ErrorHandler | None = None,
        gate: RunGate | None = None,
    ) -> None:
        self.host = host
        self.mailbox = mailbox
        self.on_fatal = on_fatal
        self.on_error = on_error
        self.cost = cost or CostMeter()
        self.gate = gate  # lifecycle: plugin code runs only while it is open (runtime/run_gate.py)
        self.thread = threading.Thread(target=self._run, name=f'node:{host.node_id}', daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        clock = time.perf_counter_ns
        host = self.host
        take = self.mailbox.take
        take_more = self.mailbox.take_more
        handle = host.handle
        cost = self.cost
        gate = self.gate
        while True:
            job = take()  # also marks the previous item done
            if job is None:
                return
            if gate is not None and not gate.enter():  # released while inactive: nothing more runs
                if type(job) is tuple:
                    job[1][2].dropped += 1
                self.mailbox.done()
                return
            try:
                if type(job) is tuple:
                    port, (packet, t_emit, edge) = job
                    # read per packet: a hot-replace may swap in a class that batches (or not)
                    more = take_more(port, MAX_BATCH - 1) if host.handles_batches else None
                    t_start = clock()
                    edge.latency.record(t_start - t_emit)
                    if more:
                        for _, t_more, edge_more in more:
                            edge_more.latency.record(t_start - t_more)
                        host.handle_batch([packet, *(item[0] for item in more)], port)
                        cost.add((clock() - t_start) // (1 + len(more)))  # per packet, as inline
                    else:
                        handle(packet, port)
                        cost.add(clock() - t_start)
                else:
                    job()
            except PluginError as exc:
                _report_plugin_error(host, exc)
                if self.on_error is not None:
                    self.on_error(exc, True)
            except DeliveryError as exc:
                self.on_fatal(str(exc))
            finally:
                if gate is not None:
                    gate.leave()


def run_inline(
    host: PluginHost,
    cost: CostMeter,
    packet: Any,
    port: str,
    t_emit: int,
    edge: Any,
    on_fatal: FatalHandler,
    on_error: ErrorHandler | None = None,
) -> None:
    """One packet through a claimed node on the caller's thread (see Mailbox.try_claim)."""
    t_start = _clock()
    edge.packets += 1
    edge.latency.record(t_start - t_emit)
    try:
        host.handle(packet, port)
    except PluginError as exc:
        _report_plugin_error(host, exc)
        if on_error is not None:
            on_error(exc, False)  # posts the restart to the worker: claims are refused until it ran
    except DeliveryError as exc:
        on_fatal(str(exc))
    cost.add(_clock() - t_start)


class DrainPacer:
    """`config.pace_sources`: a source pulls its next packet only once every node is idle — upstream's
    in-process pacing (drain the graph after every emission), so a live run sees the load upstream's
    runner sees. One container: hand-offs between its nodes are synchronous (a packet is in the next
    inbox before the emitting worker goes idle), so "every node idle, and no packet offered to any
    inbox while looking" means drained. `nodes()` gives the container's nodes, each with `idle` and
    `subscribers` (whose edge counters grow with every packet offered, dropped ones included).
    """

    #: between two looks at a busy graph (the pace costs a source at most this much per packet)
    POLL_SEC = 0.0002

    def __init__(self, nodes: Callable[[], list[Any]]) -> None:
        self.nodes = nodes

    def _offered(self, nodes: list[Any]) -> int:
        return sum(sub.edge.packets for node in nodes for sub in node.subscribers)

    def wait(self, stop: threading.Event) -> bool:
        """Until the graph is drained (True) or `stop` is set (False)."""
        while not stop.is_set():
            nodes = self.nodes()
            before = self._offered(nodes)
            if all(node.idle for node in nodes) and self._offered(nodes) == before:
                return True
            stop.wait(self.POLL_SEC)
        return False


class Ticker:
    """Posts a node's on_tick() to its own worker every period (Plugin.TICK_SEC), until it stops.

    A thread of its own, not an rclpy timer: the tick must run on the node's worker thread (never
    beside process()), and the mailbox's control queue is how work gets there. At most one tick
    waits at a time, so a node stuck in a slow packet gets one tick after it, not a backlog.
    """

    def __init__(self, host: PluginHost, post: Callable[[Control], None], period_sec: float) -> None:
        self.host = host
        self.post = post
        self.period = period_sec
        self._pending = False
        self.thread = threading.Thread(target=self._run, name=f'tick:{host.node_id}', daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        stop = self.host.stop_event
        next_at = time.monotonic() + self.period
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            now = time.monotonic()
            next_at = max(next_at + self.period, now)  # after a stall: no burst of catch-up ticks
            if self._pending:
                self.host.metrics.count('ticks_skipped_total')
                continue
            self._pending = True
            self.post(self._tick)

    def _tick(self) -> None:
        self._pending = False
        self.host.tick()


#: How a source whose produce() raised is restarted: 0.5 s doubling to 30 s, ±20 % jitter. The step
#: goes back to the first delay once a restarted source has run this long without raising.
SOURCE_RESTART_BACKOFF = dict(base_sec=0.5, factor=2.0, cap_sec=30.0, jitter='proportional', spread=0.2)
SOURCE_HEALTHY_SEC = 30.0


class SourceWorker:
    """Pulls one source until it ends, the budget is spent, or the node is asked to stop.

    A source that *returns* is finished; a source whose produce() *raises* is not: a transient
    fault (a camera library throwing, a device error the plugin did not expect) must never end a
    camera for good. The error is counted and logged, and produce() is called afresh after a
    backoff (`node.<id>.source_restarts_total`). Only a stop, the budget or a return end a source.
    """

    def __init__(
        self,
        host: PluginHost,
        budget: EmissionBudget,
        on_fatal: FatalHandler,
        on_done: Callable[[SourceWorker], None] | None = None,
        restart: Backoff | None = None,
        gate: RunGate | None = None,
        pacer: DrainPacer | None = None,
    ) -> None:
        self.host = host
        self.gate = gate  # lifecycle: pulls only while it is open; a pause keeps produce() where it is
        self.budget = budget
        self.pacer = pacer
        self.on_fatal = on_fatal
        self.on_done = on_done
        self.restart = restart or Backoff(**SOURCE_RESTART_BACKOFF)
        self.controls: deque[Control] = deque()
        self.done = threading.Event()
        self.end_reason = ''
        self.thread = threading.Thread(target=self._run, name=f'source:{host.node_id}', daemon=True)

    def start(self) -> None:
        self.thread.start()

    def post(self, control: Control) -> None:
        """Run `control` on the source thread before its next pull."""
        self.controls.append(control)

    def _run(self) -> None:
        host = self.host
        metrics = host.metrics
        stop = host.stop_event
        failures = 0  # restarts since the source last ran SOURCE_HEALTHY_SEC without raising
        started = time.monotonic()
        gate, pacer = self.gate, self.pacer
        controls, pull, budget = self.controls, host.pull, self.budget
        limited = budget.limit is not None  # without --max-events no budget call per packet
        try:
            while True:
                # the pace is waited outside the gate: a pause never waits for the graph to drain
                if pacer is not None and not pacer.wait(stop):
                    self.end_reason = 'stopped'
                    return
                if gate is not None and not gate.enter(stop):
                    self.end_reason = 'stopped'
                    return
                error: PluginError | None = None
                try:
                    # pulls in a row while the gate stays open: a pause still takes effect between two
                    # packets (the loop leaves the gate as soon as it sees it closing), and the gate's
                    # lock is not taken twice per packet (measured, issue 17)
                    while True:
                        while controls:
                            try:
                                controls.popleft()()
                            except PluginError as exc:
                                _report_plugin_error(host, exc)
                        if stop.is_set():
                            self.end_reason = 'stopped'
                            return
                        if limited and not budget.take():
                            self.end_reason = 'max_events'
                            return
                        before = metrics.produced
                        try:
                            alive = pull()
                        except PluginError as exc:
                            error = exc
                            break
                        if metrics.produced == before:
                            budget.give_back()
                        if not alive:
                            self.end_reason = 'exhausted'
                            return
                        if pacer is not None or (gate is not None and not gate.is_open):
                            break
                finally:
                    if gate is not None:
                        gate.leave()
                if error is not None:  # the backoff is waited outside the gate: a pause never waits for it
                    budget.give_back()
                    _report_plugin_error(host, error)
                    if time.monotonic() - started >= SOURCE_HEALTHY_SEC:
                        failures = 0
                    failures += 1
                    if not self._restart(failures):
                        self.end_reason = 'stopped'
                        return
                    started = time.monotonic()
        except PluginError as exc:  # closing the failed generator raised too
            _report_plugin_error(host, exc)
            self.end_reason = 'failed'
        except DeliveryError as exc:
            self.end_reason = 'failed'
            self.on_fatal(str(exc))
        finally:
            self.done.set()
            if self.on_done is not None:
                self.on_done(self)

    def _restart(self, attempt: int) -> bool:
        """Wait the backoff, then let the next pull call produce() afresh. False when stopped meanwhile."""
        host = self.host
        delay = self.restart.delay(attempt)
        host.metrics.count('source_restarts_total')
        if attempt <= _LOG_FIRST_ERRORS or attempt % _LOG_EVERY_NTH_ERROR == 0:  # a source failing for days
            host.ctx.logger.warning(
                f"node '{host.node_id}': source restarts in {delay:.1f} s (restart {attempt} in a row)"
            )
        host.discard_source()
        return not host.stop_event.wait(delay)
