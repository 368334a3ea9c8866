"""The reconciler: what should run (a validated graph) against what runs (its containers), in one place.

The runner (runtime/live_run.py), the launch supervisor (runtime/start_gate_main.py) and
`schnitzel-stream apply` all go through this class; nothing else loads, reloads, replaces or
unloads graph nodes. Desired state: per container group, the load requests of graph/wiring.py (the
same requests launch sends). Observed state: what each container lists and reports.

Supervision: a container whose process died (crash, kill -9, OOM, a segfault in an extension) is
started again with the same command — by us (the runner's child processes) or by launch
(`respawn=True`) — then its desired nodes are loaded with their parameters and wiring, the start
gate is waited for (every crossing topic matched again, runtime/start_gate.py), and the container
is started. Other containers never stop. A durable sink's backlog resumes because its node opens
the same queue file again. Restarts are counted and logged; a container that keeps dying (more
than `max_restarts` (default CONTAINER_MAX_RESTARTS) within CONTAINER_RESTART_WINDOW_SEC) is given
up, and the run fails; `max_restarts=0` turns supervision off (a dead container fails the run).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.graph.model import ValidatedGraph
from schnitzel_stream_ros.graph.wiring import LoadRequest, load_requests_by_container
from schnitzel_stream_ros.runtime.start_gate import GatePlan, wait_until_wired

#: A container dying more often than this within the window is not restarted again.
CONTAINER_MAX_RESTARTS = 5
CONTAINER_RESTART_WINDOW_SEC = 60.0
#: Wait between restarts of one container in a row: none for the first, then 0.5 s doubling to 10 s.
CONTAINER_RESTART_BACKOFF = dict(base_sec=0.5, factor=2.0, cap_sec=10.0, jitter='proportional', spread=0.2)
#: How long a restarted container may take to come up, load and get its crossing topics matched.
RESTART_READY_TIMEOUT_SEC = 20.0
RESTART_WIRED_TIMEOUT_SEC = 10.0
#: One service call to a restarted container: short, and retried (see Reconciler._reload).
RETRY_CALL_SEC = 2.0
#: Supervision notes kept for the run report (the rest is counted).
MAX_NOTES = 100


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Reconciler:
    """Desired graph + the handles of its containers (runtime/container_handles.py)."""

    def __init__(
        self,
        graph: ValidatedGraph,
        handles: Sequence[Any],
        *,
        log: Callable[[str], None] = _stderr,
        max_restarts: int | None = None,
    ) -> None:
        self.graph = graph
        self.max_restarts = CONTAINER_MAX_RESTARTS if max_restarts is None else max_restarts
        self.handles = list(handles)
        self.log = log
        self.restarts: dict[str, int] = {h.name: 0 for h in self.handles}
        self._recent: dict[str, deque[float]] = {h.name: deque() for h in self.handles}
        self._backoff = Backoff(**CONTAINER_RESTART_BACKOFF)
        self.notes: list[str] = []  # for the run report (warnings: a restart degrades a run)
        self.notes_dropped = 0

    # -- desired state ----------------------------------------------------------------------------
    def requests(self) -> dict[str, tuple[LoadRequest, ...]]:
        return load_requests_by_container(self.graph)

    def plan(self) -> GatePlan:
        return GatePlan.from_graph(self.graph)

    def load_all(self) -> list[str]:
        """Load every desired node into its container; one error line per refused load."""
        errors = []
        requests = self.requests()
        for handle in self.handles:
            errors += self._load_group(handle, requests.get(handle.name, ()))
        return errors

    @staticmethod
    def _load_group(handle: Any, requests: Sequence[LoadRequest]) -> list[str]:
        errors = []
        for request in requests:
            result = handle.load(request)
            if not result.success:
                errors.append(result.error_message)
        return errors

    def wait_wired(self, stop: threading.Event, timeout: float | None) -> list[str]:
        return wait_until_wired(self.plan(), self.handles, stop=stop, timeout=timeout)

    # -- supervision ------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        self.log(f'supervisor: {text}')
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.notes_dropped += 1

    def heal(self, stop: threading.Event) -> str | None:
        """Restart every container whose process died and bring its nodes back.

        Returns an error line when a container cannot be (or may no longer be) restarted; None
        when everything runs (again).
        """
        for handle in self.handles:
            failure = handle.failure()
            if not failure:
                continue
            if not getattr(handle, 'restartable', False) or self.max_restarts == 0:
                return failure
            problem = self._restart(handle, failure, stop)
            if problem:
                return problem
        return None

    def _restart(self, handle: Any, failure: str, stop: threading.Event) -> str | None:
        name = handle.name
        recent = self._recent[name]
        while True:
            now = time.monotonic()
            while recent and now - recent[0] > CONTAINER_RESTART_WINDOW_SEC:
                recent.popleft()
            if len(recent) >= self.max_restarts:
                return (
                    f'{failure}; it died {len(recent) + 1} times within '
                    f'{CONTAINER_RESTART_WINDOW_SEC:.0f} s and is not restarted again'
                )
            if recent and stop.wait(self._backoff.delay(len(recent))):
                return None  # the run is stopping anyway
            recent.append(time.monotonic())
            self.restarts[name] += 1
            t0 = time.monotonic()
            self._note(f'{failure}; restarting it (restart {self.restarts[name]})')
            try:
                self._bring_back(handle, stop)
            except Exception as exc:  # came up badly: count it as another death and try again
                failure = f'container {name!r}: restart failed: {exc}'
                handle.kill()
                if stop.is_set():
                    return None
                continue
            nodes = len(self.requests().get(name, ()))
            took = time.monotonic() - t0
            self._note(f'container {name!r} is back: {nodes} nodes reloaded and wired in {took:.2f} s')
            return None

    def _bring_back(self, handle: Any, stop: threading.Event) -> None:
        handle.restart()
        handle.wait_ready(RESTART_READY_TIMEOUT_SEC)
        deadline = time.monotonic() + RESTART_READY_TIMEOUT_SEC
        self._reload(handle, self.requests().get(handle.name, ()), deadline)
        missing = self.wait_wired(stop, RESTART_WIRED_TIMEOUT_SEC)
        missing += self._wait_inputs_matched(handle, stop, RESTART_WIRED_TIMEOUT_SEC)
        if missing and not stop.is_set():
            self._note(f'container {handle.name!r} restarted with {"; ".join(missing)} after '
                       f'{RESTART_WIRED_TIMEOUT_SEC:.0f} s; starting it anyway')
        handle.start()

    def _wait_inputs_matched(self, handle: Any, stop: threading.Event, timeout: float) -> list[str]:
        """Wait until the restarted container's subscriptions of topics from other containers have
        matched their publishers. The gate's usual check (matched subscriptions on the publisher's
        side) is not enough after a kill: the publisher still counts the dead process' subscription
        until DDS notices it is gone, so packets sent before the new one matched would be lost."""
        group = {n.id for n in self.graph.nodes if n.container == handle.name}
        container_of = {n.id: n.container for n in self.graph.nodes}
        topics = sorted({e.topic for e in self.graph.edges
                         if e.dst in group and container_of[e.src] != handle.name})
        deadline = time.monotonic() + timeout
        while topics:
            try:
                matched = handle.snapshot()['state'].get('inputs_matched', {})
            except Exception:
                matched = {}
            missing = [f'topic {t}: its publisher not matched yet' for t in topics if matched.get(t, 0) < 1]
            if not missing:
                return []
            if time.monotonic() > deadline or stop.wait(0.05):
                return missing
        return []

    @staticmethod
    def _reload(handle: Any, requests: Sequence[LoadRequest], deadline: float) -> None:
        """Load `requests` into a freshly started container, robust against the service race.

        Until DDS notices that the dead process is gone (its lease), its services still count as
        available, so a request sent at once may reach no live server and be lost. Hence: short
        calls, retried, and the container's own list as the truth of what is loaded.
        """

        def listed() -> set[str]:
            while True:
                try:
                    return set(handle.list_nodes(timeout=RETRY_CALL_SEC))
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise

        have = listed()
        for request in requests:
            full = ('' if request.node_namespace == '/' else request.node_namespace) + '/' + request.node_name
            while full not in have:
                try:
                    result = handle.load(request, timeout=RETRY_CALL_SEC)
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    have = listed()  # the load may have happened; its answer was lost
                    continue
                if not result.success:
                    raise RuntimeError(result.error_message)
                have.add(full)

    def report_metrics(self) -> dict[str, int]:
        """Counters for the run report: restarts per container."""
        out = {f'container.{name}.restarts_total': n for name, n in self.restarts.items()}
        out['containers.restarts_total'] = sum(self.restarts.values())
        return out
