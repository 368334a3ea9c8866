"""Deterministic run mode: upstream schnitzel-stream semantics, one thread, no DDS.

For tests and replays the order of work must be a function of the graph alone. The rules are the
upstream engine's (shared/reference/upstream-contract.md):
- sources are pulled round-robin in declaration order, one packet per pull;
- after each pull the whole downstream work is drained FIFO before the next pull;
- every output goes to every outgoing edge of its port, in edge declaration order;
- `max_events` is one budget for the emissions of all sources together;
- each input has a bounded inbox with its overflow policy (drop_new, drop_oldest, error; `block`
  never drops here — the drain after each emission is the wait);
- close() always runs, in declaration order, also after errors.

FIFO across nodes: every accepted packet appends one token naming its inbox to one global queue;
a token pops the oldest packet of its inbox. A drop_oldest eviction replaces a packet without a new
token, so tokens and waiting packets always match and the drain is breadth-first, as upstream.

A plugin exception or an `error` overflow ends the run with status error (upstream raised); the
live mode (runtime/container.py) survives plugin exceptions instead.

Cycles (through Delay/InitialValue nodes, graph/validate.py): after setup every non-source node's
on_start() runs in declaration order (an InitialValue emits its seed) and that work is drained
before the first pull. A Delay holds packets back, so one pull's work ends; a cycle whose packets
keep circulating anyway (a pass-through InitialValue around a node that always answers) ends the
run with an error after CYCLE_HANDOFF_LIMIT hand-offs in one drain instead of spinning for ever.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.graph.model import NodeKind, ValidatedGraph
from schnitzel_stream_ros.graph.state_config import node_state
from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.observability.snapshot import runtime_snapshot
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Role
from schnitzel_stream_ros.runtime.inbox import Inbox, Offer
from schnitzel_stream_ros.runtime.local_parameters import LocalParameters
from schnitzel_stream_ros.runtime.plugin_host import DeliveryError, PluginError, PluginHost
from schnitzel_stream_ros.state.blackboard import start_of_graph

ENGINE_NAME = 'deterministic'
#: Most hand-offs one drain may take in a graph with cycles (see the module docstring).
CYCLE_HANDOFF_LIMIT = 1_000_000


@dataclass
class RunOutcome:
    """How a run ended: snapshots to report, fatal errors, degrading warnings, why it stopped."""

    snapshots: list[dict[str, Any]]
    stop_reason: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration_sec: float = 0.0


class _Input:
    """One inbox and the node that drains it; `token` is what goes into the global FIFO."""

    __slots__ = ('host', 'inbox', 'port', 'token')

    def __init__(self, host: PluginHost, port: str, inbox: Inbox) -> None:
        self.host = host
        self.port = port
        self.inbox = inbox
        self.token = self


def _is_source(kind: NodeKind, role: Role) -> bool:
    return kind is NodeKind.SOURCE or role is Role.SOURCE


class DeterministicEngine:
    """Runs a validated graph in one thread with upstream ordering and budgets."""

    def __init__(
        self,
        graph: ValidatedGraph,
        *,
        max_events: int | None = None,
        duration_sec: float | None = None,
        stop_event: threading.Event | None = None,
        on_progress: Callable[[DeterministicEngine], None] | None = None,
    ) -> None:
        if max_events is not None and max_events < 0:
            raise ValueError(f'max_events must be >= 0, got {max_events}')
        self.graph = graph
        self.max_events = max_events
        self.duration_sec = duration_sec
        self.stop_event = stop_event or threading.Event()
        self.on_progress = on_progress
        self.stop_signal: int | None = None
        self.hosts: dict[str, PluginHost] = {}
        self.inputs: dict[tuple[str, str], _Input] = {}
        self.edges: list[tuple[EdgeMetrics, _Input]] = []
        self._fifo: deque[_Input] = deque()
        self.emitted = 0
        spec = graph.spec.blackboard
        board = None if spec is None else (spec, graph.spec.namespace)
        start_of_graph(spec and spec.path, spec is None or spec.persist)
        self.cyclic = any(node.kind.breaks_cycles for node in graph.nodes)
        for node in graph.nodes:
            role = Role(node.plugin_cls.ROLE)
            self.hosts[node.id] = PluginHost(
                node.id,
                node.plugin_cls,
                node.params,
                is_source=_is_source(node.kind, role),
                is_sink=node.kind is NodeKind.SINK,
                stop_event=self.stop_event,
                # checkpoints as in a live run: same file, same row per node (runtime/checkpoints.py)
                state=node_state(graph.spec.state, node.spec.state),
                state_node=('' if node.namespace == '/' else node.namespace) + '/' + node.id,
                blackboard=board,
            )
        parameters = LocalParameters(self.hosts)  # a controller's knobs (plugin.RemoteParameters)
        for host in self.hosts.values():
            host.parameters = parameters
        for spec in (s for node in graph.nodes for s in graph.inputs_of(node.id)):
            self.inputs[(spec.node, spec.port)] = _Input(
                self.hosts[spec.node],
                spec.port,
                Inbox(f'{spec.node}.{spec.port}', spec.inbox_max, spec.overflow, spec.drop_weights),
            )
        targets: dict[tuple[str, str], list[tuple[EdgeMetrics, _Input]]] = {}
        for edge in graph.edges:
            dst = self.inputs[(edge.dst, edge.dst_port)]
            metrics = EdgeMetrics(edge.topic, edge.dst, edge.dst_port)
            self.edges.append((metrics, dst))
            targets.setdefault((edge.src, edge.src_port), []).append((metrics, dst))
        for (src, port), dsts in targets.items():
            self.hosts[src].connect(port, self._router(tuple(dsts)))

    # -- routing --------------------------------------------------------------------------------
    def _router(self, dsts: tuple[tuple[EdgeMetrics, _Input], ...]) -> Callable[[StreamPacket], None]:
        fifo = self._fifo
        clock = time.perf_counter_ns

        def route(packet: StreamPacket) -> None:
            t = clock()
            for metrics, dst in dsts:
                item = (packet, t, metrics)
                result = dst.inbox.offer(item)  # InboxOverflowError (policy error) ends the run
                if result is Offer.ACCEPTED:
                    fifo.append(dst.token)
                elif result is Offer.FULL:  # block: wait = the drain that follows
                    dst.inbox.force(item)
                    fifo.append(dst.token)

        return route

    def _drain(self) -> None:
        fifo = self._fifo
        clock = time.perf_counter_ns
        budget = CYCLE_HANDOFF_LIMIT if self.cyclic else -1
        while fifo:
            if self.stop_event.is_set():
                return
            budget -= 1
            if budget == -1:  # never reached without cycles (the budget starts below zero)
                raise DeliveryError(
                    f'packets keep circulating in a cycle: over {CYCLE_HANDOFF_LIMIT} hand-offs in one '
                    f"drain, last into '{fifo[0].inbox.label}' (does the cycle pass a Delay?)"
                )
            dst = fifo.popleft()
            item = dst.inbox.pop()
            if item is None:
                continue
            packet, t_emit, edge = item
            edge.latency.record(clock() - t_emit)
            dst.host.handle(packet, dst.port)

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        """Set up, pull and drain until sources end, the budget is spent, time is up or stop is set."""
        t0 = time.monotonic()
        errors: list[str] = []
        warnings: list[str] = []
        stop_reason = 'error'
        started: list[PluginHost] = []
        try:
            for host in self.hosts.values():
                started.append(host)
                host.setup()
            for host in self.hosts.values():
                if not host.is_source:
                    host.start()
            self._drain()
            stop_reason = self._pull_loop(t0)
        except (PluginError, DeliveryError) as exc:
            errors.append(str(exc))
        finally:
            for inp in self.inputs.values():
                if inp.inbox.discard_all():
                    warnings.append(
                        f"inbox '{inp.inbox.label}': packets still waiting at the end were dropped"
                    )
            for host in started:
                try:
                    host.close()
                except PluginError as exc:
                    warnings.append(str(exc))
        return RunOutcome([self.snapshot()], stop_reason, errors, warnings, time.monotonic() - t0)

    def _pull_loop(self, t0: float) -> str:
        active = [h for h in self.hosts.values() if h.is_source]
        deadline = None if self.duration_sec is None else t0 + self.duration_sec
        last_progress = t0
        while active:
            for host in list(active):
                if self.stop_event.is_set():
                    return (
                        'signal ' + signal.Signals(self.stop_signal).name if self.stop_signal else 'stopped'
                    )
                if deadline is not None and time.monotonic() >= deadline:
                    return 'duration'
                if self.max_events is not None and self.emitted >= self.max_events:
                    return 'max_events'
                before = host.metrics.produced
                alive = host.pull()
                self.emitted += host.metrics.produced - before
                if not alive:
                    active.remove(host)
                    continue
                self._drain()
            if self.on_progress is not None and time.monotonic() - last_progress >= 0.5:
                last_progress = time.monotonic()
                self.on_progress(self)
        return 'sources_done'

    def snapshot(self) -> dict[str, Any]:
        drops: dict[str, int] = {}
        for host in self.hosts.values():
            host.refresh_state()
        for (node_id, _port), inp in self.inputs.items():
            drops[node_id] = drops.get(node_id, 0) + inp.inbox.dropped_total
        return runtime_snapshot(
            ENGINE_NAME,
            ((h.metrics, drops.get(node_id, 0)) for node_id, h in self.hosts.items()),
            ((m, len(inp.inbox), inp.inbox.depth_max) for m, inp in self.edges),
            state={
                'started': True,
                'sources_done': True,
                'idle': not self._fifo,
                'fatal': [],
                'warnings': [],
            },
        )
