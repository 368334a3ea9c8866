"""Live run mode: the graph's container groups run concurrently, as on a site.

Steps: start the containers paused (one in this process, or one process per group when the graph has
several) -> load every node with its load request (graph.wiring: the same request launch sends) ->
the start gate (runtime/start_gate.py: every node loaded, every cross-container topic matched over
DDS, so the first packets are not lost) -> start -> watch (progress line, fatal errors, dead
containers, duration, signals) -> at the end of the finite sources or on a stop: stop sources, let
in-flight packets drain, close every plugin, collect the final snapshots.

Backlog drain: when a finite run's sources end (or --max-events is spent), nodes that report a
backlog (Plugin.backlog(): a durable sink's undelivered events) keep running until it is 0, the
backlog timeout passes or --duration is reached; what is left is reported (it is delivered at the next
start). A stop signal ends the drain at once; the rows stay in the queue file, nothing is lost.

End of a run: every source has ended (exhausted, budget spent) and every container is idle, and the
counters have not moved for a few polls. Then, after the sources are stopped, the end waits until
every packet one container published has been taken in by its receivers in the others
(`packets_in_flight`: what the report would otherwise count as lost between processes — on a loaded
machine a receive thread can be starved for longer than a few polls). A lossy edge (best effort, a
keep-last history overrun) never catches up: after IN_FLIGHT_PATIENCE_SEC without progress the run
ends anyway and the report counts the loss.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from schnitzel_stream_ros.graph.model import NodeKind, ValidatedGraph
from schnitzel_stream_ros.graph.wiring import load_requests_by_container
from schnitzel_stream_ros.observability.health import DEFAULT_PERIOD_SEC
from schnitzel_stream_ros.observability.report import collect_metrics
from schnitzel_stream_ros.runtime.container import DEFAULT_DRAIN_TIMEOUT_SEC
from schnitzel_stream_ros.runtime.container_handles import (
    ContainerHandle,
    LocalContainerHandle,
    RemoteContainerHandle,
    init_context,
)
from schnitzel_stream_ros.runtime.deterministic import RunOutcome
from schnitzel_stream_ros.runtime.executors import DEFAULT_EXECUTOR, Spinner, make_executor
from schnitzel_stream_ros.runtime.reconciler import Reconciler
from schnitzel_stream_ros.runtime.start_gate import open_gate
from schnitzel_stream_ros.state.blackboard import start_of_graph

ENGINE_NAME = 'live'
POLL_SEC = 0.2
MATCH_TIMEOUT_SEC = 15.0
#: How long a finite run keeps delivering accepted work (durable sinks' backlog) after its sources end.
DEFAULT_BACKLOG_DRAIN_SEC = 30.0
#: How long the end of a run waits for packets in flight between containers while nothing moves.
IN_FLIGHT_PATIENCE_SEC = 3.0


def budget_shares(graph: ValidatedGraph, max_events: int | None) -> dict[str, int | None]:
    """--max-events split over container groups: each source gets its round-robin share.

    With one process the budget is simply shared by all its sources; across processes a shared
    counter would need a round trip per packet, so each group gets the sum of its sources' shares
    (source i of S in declaration order: N // S, plus one for the first N % S).
    """
    groups = [g.name for g in graph.containers]
    if max_events is None:
        return dict.fromkeys(groups)
    if len(groups) == 1:
        return {groups[0]: max_events}
    sources = [n for n in graph.nodes if n.kind is NodeKind.SOURCE]
    shares = dict.fromkeys(groups, 0)
    for index, node in enumerate(sources):
        shares[node.container] += max_events // len(sources) + (1 if index < max_events % len(sources) else 0)
    return shares


class LiveRun:
    """Runs a validated graph live; `run()` returns a RunOutcome like the deterministic engine."""

    def __init__(
        self,
        graph: ValidatedGraph,
        *,
        max_events: int | None = None,
        duration_sec: float | None = None,
        executor: str = DEFAULT_EXECUTOR,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_SEC,
        backlog_timeout: float = DEFAULT_BACKLOG_DRAIN_SEC,
        stop_event: threading.Event | None = None,
        on_progress: Callable[[list[dict[str, Any]]], None] | None = None,
        diagnostics_period_sec: float = DEFAULT_PERIOD_SEC,
        await_subscribers: Mapping[str, int] | None = None,
        container_restarts: int | None = None,
    ) -> None:
        self.graph = graph
        self.await_subscribers = dict(await_subscribers or {})
        self.diagnostics_period_sec = diagnostics_period_sec
        self.max_events = max_events
        self.duration_sec = duration_sec
        self.executor = executor
        self.drain_timeout = drain_timeout
        self.backlog_timeout = backlog_timeout
        self.stop_event = stop_event or threading.Event()
        self.stop_signal: int | None = None
        self.on_progress = on_progress
        self.handles: list[ContainerHandle] = []
        self.reconciler: Reconciler | None = None  # loads, supervises (restarts dead containers)
        self.container_restarts = container_restarts
        self.graph_service: Any = None  # `schnitzel-stream apply` reaches the reconciler through it
        self._client_context: Any = None
        self._client_node: Any = None
        self._client_spinner: Spinner | None = None

    # -- containers -----------------------------------------------------------------------------
    def _open_containers(self) -> None:
        groups = load_requests_by_container(self.graph)
        namespace = self.graph.spec.namespace
        shares = budget_shares(self.graph, self.max_events)
        if len(groups) == 1:
            (name,) = groups
            self.handles.append(
                LocalContainerHandle(
                    name,
                    namespace,
                    executor=self.executor,
                    max_events=shares[name],
                    drain_timeout=self.drain_timeout,
                    diagnostics_period_sec=self.diagnostics_period_sec,
                    pace_sources=self.graph.spec.pace_sources,
                )
            )
            return
        from rclpy.node import Node

        self._client_context = init_context()
        self._client_node = Node(f'schnitzel_stream_run_{os.getpid()}', context=self._client_context)
        client_executor = make_executor('single', self._client_context)
        client_executor.add_node(self._client_node)
        self._client_spinner = Spinner(client_executor, self._client_context, 'runner-executor').start()
        remotes = [
            RemoteContainerHandle(
                name,
                namespace,
                self._client_node,
                executor=self.executor,
                max_events=shares[name],
                drain_timeout=self.drain_timeout,
                diagnostics_period_sec=self.diagnostics_period_sec,
                pace_sources=self.graph.spec.pace_sources,
            )
            for name in groups
        ]
        self.handles.extend(remotes)
        for remote in remotes:
            remote.wait_ready()

    def _close_containers(self) -> None:
        for handle in self.handles:
            with contextlib.suppress(Exception):
                handle.close()
        if self._client_spinner is not None:
            self._client_spinner.stop()
        if self._client_node is not None:
            import rclpy

            self._client_node.destroy_node()
            with contextlib.suppress(Exception):
                rclpy.shutdown(context=self._client_context)

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        t0 = time.monotonic()
        errors: list[str] = []
        warnings: list[str] = []
        reason = 'error'
        snapshots: list[dict[str, Any]] = []
        try:
            board = self.graph.spec.blackboard
            if board is not None:  # a start of the graph, not a container restart
                start_of_graph(board.path, board.persist)
            self._open_containers()
            self.reconciler = Reconciler(self.graph, self.handles, max_restarts=self.container_restarts)
            errors += self.reconciler.load_all()
            if not errors:
                warnings += self._wait_wired()
                open_gate(self.handles)
                warnings += self._serve_edits()
                reason = self._watch(t0, errors)
                if reason in ('sources_done', 'max_events'):
                    reason = self._drain_backlog(t0, reason, errors, warnings)
        except Exception as exc:
            errors.append(f'runner: {type(exc).__name__}: {exc}')
        finally:
            if self.graph_service is not None:
                service, self.graph_service = self.graph_service, None  # no edit may wait on it now
                service.close()
            snapshots = self._finish(errors)
            self._close_containers()
            if self.reconciler is not None:
                warnings += self.reconciler.notes
        return RunOutcome(snapshots, reason, errors, warnings, time.monotonic() - t0)

    def _serve_edits(self) -> list[str]:
        """Offer `/<namespace>/_graph/apply` (runtime/graph_service.py); a warning if it cannot be."""
        from schnitzel_stream_ros.runtime.graph_service import GraphService

        try:
            self.graph_service = GraphService(self.graph.spec.namespace)
        except Exception as exc:
            return [f'live graph edits unavailable: {type(exc).__name__}: {exc}']
        return []

    def _apply(self, graph: ValidatedGraph, force: bool, dry_run: bool) -> tuple[bool, list[str]]:
        assert self.reconciler is not None
        host = getattr(self.graph, 'host', None)
        if host is not None:  # a host's part changes into the new version's part on this host
            from schnitzel_stream_ros.graph.placement import host_part

            try:
                graph = host_part(graph, host)
            except ValueError as exc:
                return False, [str(exc)]
        ok, lines = self.reconciler.apply(graph, force=force, dry_run=dry_run)
        if ok and not dry_run:
            self.graph = self.reconciler.graph
        return ok, lines

    def report_extra(self) -> dict[str, Any]:
        """What supervision did, for the run report (`supervision`)."""
        if self.reconciler is None:
            return {}
        return {'supervision': {'container_restarts': dict(self.reconciler.restarts),
                                'restarts_total': sum(self.reconciler.restarts.values())}}

    def _wait_wired(self) -> list[str]:
        """The start gate (runtime/start_gate.py), as launch opens it: every node listed by its
        container, every crossing topic matched. Loads here are synchronous, so only the DDS
        matching can take time; after MATCH_TIMEOUT_SEC the run starts anyway, with a warning."""
        assert self.reconciler is not None
        missing = self.reconciler.wait_wired(
            self.stop_event, MATCH_TIMEOUT_SEC, awaiting=self.await_subscribers
        )
        late = f'after {MATCH_TIMEOUT_SEC:.0f} s; its first packets may be lost'
        return [f'start gate: {m} {late}' for m in missing]

    def _watch(self, t0: float, errors: list[str]) -> str:
        deadline = None if self.duration_sec is None else t0 + self.duration_sec
        stable_needed = 2 if len(self.handles) == 1 else 4
        stable = 0
        last_counts: tuple[int, ...] | None = None
        while True:
            if self.stop_event.wait(POLL_SEC):
                return 'signal ' + signal.Signals(self.stop_signal).name if self.stop_signal else 'stopped'
            if deadline is not None and time.monotonic() >= deadline:
                return 'duration'
            assert self.reconciler is not None
            failure = self.reconciler.heal(self.stop_event)  # a dead container is restarted here
            if failure:
                errors.append(failure)
                return 'error'
            if self.graph_service is not None:
                self.graph_service.run_pending(self._apply)  # edits on the same thread as healing
                self.graph_service.publish_statuses(self.reconciler.statuses)
            try:
                snapshots = [h.snapshot() for h in self.handles]
            except RuntimeError:
                if any(h.failure() for h in self.handles):
                    continue  # it died just now: healed at the next poll
                raise
            if self.on_progress is not None:
                self.on_progress(snapshots)
            if any(s['state'].get('fatal') for s in snapshots):
                return 'error'
            # a host's part fed by other hosts (graph/placement.py) cannot see their end: runs until stopped
            done = not getattr(self.graph, 'remote_in', ()) and all(
                s['state'].get('sources_done') and s['state'].get('idle') for s in snapshots)
            counts = tuple(
                sum(v.get(key, 0) for s in snapshots for v in s['nodes'].values())
                for key in ('consumed', 'produced')
            ) + tuple(s['transport'].get('dds_received_total', 0) for s in snapshots)
            stable = stable + 1 if done and counts == last_counts else 0
            last_counts = counts
            if stable >= stable_needed:
                ends = {r for s in snapshots for r in s['state'].get('source_end', {}).values()}
                return 'max_events' if 'max_events' in ends else 'sources_done'

    def _drain_backlog(self, t0: float, reason: str, errors: list[str], warnings: list[str]) -> str:
        """Keep the containers running while nodes still deliver what they accepted (see the
        module docstring). Returns the stop reason (a signal during the drain says so)."""
        deadline = time.monotonic() + self.backlog_timeout
        if self.duration_sec is not None:
            deadline = min(deadline, t0 + self.duration_sec)
        backlog = self._backlog([h.snapshot() for h in self.handles])
        while backlog and time.monotonic() < deadline:
            if self.stop_event.wait(POLL_SEC):
                reason = 'signal ' + signal.Signals(self.stop_signal).name if self.stop_signal else 'stopped'
                break
            failure = next((f for h in self.handles if (f := h.failure())), None)
            if failure:
                errors.append(failure)
                return 'error'
            snapshots = [h.snapshot() for h in self.handles]
            if self.on_progress is not None:
                self.on_progress(snapshots)
            backlog = self._backlog(snapshots)
        for node, count in sorted(backlog.items()):
            warnings.append(
                f"node '{node}': {count} accepted events still undelivered when the run ended "
                f'(drain of {self.backlog_timeout:g} s after the sources ended); they stay queued '
                'and are delivered at the next start'
            )
        return reason

    @staticmethod
    def _backlog(snapshots: list[dict[str, Any]]) -> dict[str, int]:
        return {node: n for s in snapshots for node, n in s['state'].get('backlog', {}).items() if n}

    def _finish(self, errors: list[str]) -> list[dict[str, Any]]:
        """Stop sources everywhere, let packets drain across containers, then close all plugins."""
        snapshots: list[dict[str, Any]] = []
        alive = [h for h in self.handles if h.failure() is None]  # a dead container was reported already
        for handle in alive:
            try:
                handle.stop_sources()
            except Exception as exc:
                errors.append(f'container {handle.name!r}: stop failed: {exc}')
        if len(alive) > 1:
            self._settle(alive)
        for handle in alive:
            try:
                snapshots.append(handle.shutdown(self.drain_timeout))
            except Exception as exc:
                errors.append(f'container {handle.name!r}: final report failed: {exc}')
        return snapshots

    def packets_in_flight(self, snapshots: list[dict[str, Any]]) -> int:
        """Packets a container published that their receivers in other containers have not taken in
        yet (still in DDS, or a starved receive thread): the report's `transport_lost_total`, now."""
        metrics = collect_metrics(snapshots, self.graph)
        return sum(v for k, v in metrics.items() if k.endswith('.transport_lost_total'))

    def _settle(self, handles: list[ContainerHandle]) -> None:
        """Wait until no container works, the counters stop moving and nothing is in flight between
        containers: at most IN_FLIGHT_PATIENCE_SEC without progress (a lossy edge never catches up),
        and the run's drain timeout in all."""
        patience = min(self.drain_timeout, IN_FLIGHT_PATIENCE_SEC)
        cap = time.monotonic() + self.drain_timeout
        deadline = time.monotonic() + patience
        last = None
        while time.monotonic() < min(deadline, cap):
            try:
                snapshots = [h.snapshot() for h in handles]
            except Exception:
                return
            counts = tuple(s['transport'].get('dds_received_total', 0) for s in snapshots) + tuple(
                n.get('consumed', 0) for s in snapshots for n in s['nodes'].values())
            idle = all(s['state'].get('idle') for s in snapshots)
            if idle and counts == last and not self.packets_in_flight(snapshots):
                return
            if counts != last:
                deadline = time.monotonic() + patience  # still moving: a loaded machine, not a lost packet
            last = counts
            time.sleep(POLL_SEC)
