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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.graph.diff import diff_graphs, union_inputs
from schnitzel_stream_ros.graph.model import ValidatedGraph
from schnitzel_stream_ros.graph.wiring import LoadRequest, load_requests, load_requests_by_container
from schnitzel_stream_ros.observability.health import ERROR, OK, WARN, Status
from schnitzel_stream_ros.runtime.start_gate import GatePlan, wait_until_wired

#: A container dying more often than this within the window is not restarted again.
CONTAINER_MAX_RESTARTS = 5
CONTAINER_RESTART_WINDOW_SEC = 60.0
#: Wait before a restart: none when the container ran CONTAINER_HEALTHY_SEC since its last start;
#: else (a crash loop) 0.5 s doubling to 10 s per quick death in a row.
CONTAINER_HEALTHY_SEC = 5.0
CONTAINER_RESTART_BACKOFF = dict(base_sec=0.5, factor=2.0, cap_sec=10.0, jitter='proportional', spread=0.2)
#: How long a restarted container may take to come up, load and get its crossing topics matched.
RESTART_READY_TIMEOUT_SEC = 20.0
RESTART_WIRED_TIMEOUT_SEC = 10.0
#: One service call to a restarted container: short, and retried (see Reconciler._reload). A load
#: may take long (a model): its timeout only makes us look (list) whether it happened meanwhile.
RETRY_CALL_SEC = 2.0
RETRY_LIST_SEC = 0.5
#: A restart shows as WARN on /diagnostics this long.
DIAGNOSTICS_HOLD_SEC = 10.0
#: Supervision notes kept for the run report (the rest is counted).
MAX_NOTES = 100


def supervision_status(container: str, level: int, message: str, restarts: int) -> Status:
    """A container as its supervisor sees it (the container's own status cannot tell: a restarted
    container starts counting afresh)."""
    return Status(f'supervisor: {container}', level, message, container, (('restarts_total', str(restarts)),))


class _ApplyFailed(RuntimeError):
    """A step of an apply was refused (the message says why); what was done is undone."""


def _full(request: LoadRequest) -> str:
    return ('' if request.node_namespace == '/' else request.node_namespace) + '/' + request.node_name


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
        self._quick_deaths: dict[str, int] = {h.name: 0 for h in self.handles}
        self._backoff = Backoff(**CONTAINER_RESTART_BACKOFF)
        self.notes: list[str] = []  # for the run report (warnings: a restart degrades a run)
        self.last_restart: dict[str, tuple[float, str]] = {}  # group -> (monotonic time, why)
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

    def wait_wired(
        self, stop: threading.Event, timeout: float | None, awaiting: Mapping[str, int] | None = None
    ) -> list[str]:
        """The start gate (runtime/start_gate.py) over this graph's containers; `awaiting`: outside
        subscribers that must be matched too (topic -> count)."""
        plan = self.plan().awaiting(awaiting) if awaiting else self.plan()
        return wait_until_wired(plan, self.handles, stop=stop, timeout=timeout)

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
            quick = bool(recent) and now - recent[-1] < CONTAINER_HEALTHY_SEC
            self._quick_deaths[name] = self._quick_deaths[name] + 1 if quick else 0
            if quick and stop.wait(self._backoff.delay(self._quick_deaths[name])):
                return None  # the run is stopping anyway
            recent.append(time.monotonic())
            self.restarts[name] += 1
            self.last_restart[name] = (time.monotonic(), failure)
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
            while True:  # cheap and answered at once by a live container: ask often
                try:
                    return set(handle.list_nodes(timeout=RETRY_LIST_SEC))
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
                if not result.success and 'is already loaded' not in result.error_message:
                    raise RuntimeError(result.error_message)  # (already loaded: an answer we lost)
                have.add(full)

    # -- live graph edits ----------------------------------------------------------------------------
    def apply(
        self, new: ValidatedGraph, *, force: bool = False, dry_run: bool = False, drain_wait_sec: float = 2.0
    ) -> tuple[bool, list[str]]:
        """Change the running graph into `new` (graph/diff.py), in place; (success, lines).

        Order, so that no packet is lost on an edge the edit does not touch, and none on an edge it
        touches inside a container (at worst a packet in flight at a switch arrives twice): 1. add
        nodes; 2. kept nodes whose inputs change subscribe to the new topics, then leave the old ones
        — except when an old one is fed by a node about to be removed: then they read both; 3. set
        dynamic parameters, hot-replace instances; 4. unload removed nodes (each drains its inbox
        into its consumers first); 5. the nodes that read both leave the old topics. A step before
        4 that fails undoes what was done, so a refused edit changes nothing.
        """
        diff = diff_graphs(self.graph, new)
        if diff.problems:
            return False, list(diff.problems)
        if diff.empty:
            return True, ['no changes']
        lines = diff.lines()
        if dry_run:
            return True, lines
        handles = {h.name: h for h in self.handles}
        before = {r.node_name: r for r in load_requests(self.graph)}
        after = {r.node_name: r for r in load_requests(new)}
        problems = self._check_removable([before[n] for n in (*diff.removed, *diff.reloaded)], force,
                                         drain_wait_sec)
        if problems:
            return False, problems
        undo: list[Callable[[], object]] = []
        leaving = {*diff.removed, *diff.reloaded}
        leaving_topics = {e.topic for e in self.graph.edges if e.src in leaving}
        via_leaving = [
            name for name in (*diff.rewired, *diff.replaced)
            if any(e.dst == name and e.topic in leaving_topics for e in self.graph.edges)
        ]

        def step(ok: bool, message: str) -> None:
            if not ok:
                raise _ApplyFailed(message)

        try:
            for name in reversed(diff.added):  # declaration order is mostly producers first
                request = after[name]
                result = handles[request.container_group].load(request)
                step(result.success, result.error_message)
                undo.append(lambda r=request: handles[r.container_group].unload_node(_full(r)))
            for name in (*diff.rewired, *diff.replaced):
                # fed by a node about to go: read old and new topics until it has drained into us
                request = union_inputs(before[name], after[name]) if name in via_leaving else after[name]
                result = handles[request.container_group].replace(request)
                step(result.success, result.error_message)
                undo.append(lambda r=before[name]: handles[r.container_group].replace(r))
            for name in diff.reparameterised:
                request = after[name]
                result = handles[request.container_group].replace(request)
                step(result.success, result.error_message)
                undo.append(lambda r=before[name]: handles[r.container_group].replace(r))
        except _ApplyFailed as exc:
            for action in reversed(undo):
                try:
                    action()
                except Exception as undo_exc:  # say so: the graph may now differ from both versions
                    lines.append(f'undo failed: {undo_exc}')
            return False, [f'refused: {exc}; nothing changed', *lines[len(diff.lines()):]]
        for name in (*diff.removed, *diff.reloaded):  # past the point of no return: report, go on
            request = before[name]
            ok, message = handles[request.container_group].unload_node(_full(request))
            if not ok or message:
                lines.append(f'unload {name}: {message}')
        for name in diff.reloaded:
            request = after[name]
            result = handles[request.container_group].load(request)
            if not result.success:
                lines.append(f'reload {name} failed: {result.error_message}')
        for name in via_leaving:
            request = after[name]
            result = handles[request.container_group].replace(request)
            if not result.success:
                lines.append(f'rewire {name} failed: {result.error_message}')
        self.graph = new
        self._note(f'applied: {"; ".join(diff.lines())}')
        return True, lines

    def _check_removable(self, requests: Sequence[LoadRequest], force: bool, wait_sec: float) -> list[str]:
        """Nodes to unload must not hold packets their unload could not drain: they get `wait_sec`
        to work their inbox off (they keep running); then refuse, unless forced."""
        if force or not requests:
            return []
        handles = {h.name: h for h in self.handles}
        deadline = time.monotonic() + wait_sec
        while True:
            waiting = {}
            for request in requests:
                snap = handles[request.container_group].snapshot()
                rows = [row for row in snap.get('edges', []) if row['dst'] == request.node_name]
                depth = sum(row['inbox_depth'] for row in rows)
                if depth:
                    waiting[request.node_name] = depth
            if not waiting:
                return []
            if time.monotonic() > deadline:
                return [f"node '{n}' still holds {d} packets in its inbox after {wait_sec:.0f} s; "
                        'apply with --force to drop them' for n, d in waiting.items()]
            time.sleep(0.05)

    def statuses(self, now: float) -> list[Status]:
        """One /diagnostics status per container: WARN for a while after a restart, ERROR while dead."""
        out = []
        for handle in self.handles:
            name = handle.name
            last = self.last_restart.get(name)
            failure = handle.failure()
            level, message = OK, 'running'
            if failure:
                level, message = ERROR, failure
            elif last is not None and now - last[0] <= DIAGNOSTICS_HOLD_SEC:
                level, message = WARN, f'restarted {now - last[0]:.0f} s ago: {last[1]}'
            out.append(supervision_status(handle.full_name, level, message, self.restarts[name]))
        return out

    def report_metrics(self) -> dict[str, int]:
        """Counters for the run report: restarts per container."""
        out = {f'container.{name}.restarts_total': n for name, n in self.restarts.items()}
        out['containers.restarts_total'] = sum(self.restarts.values())
        return out


class LaunchSupervisor:
    """Supervision of a graph that `ros2 launch` started (runtime/start_gate_main.py --supervise).

    launch restarts a dead container itself (`respawn=True` in the generated file), but launch_ros
    does not load its composable nodes again: a respawned container comes back empty. This brings it
    back: a container that answers but lacks nodes it should have gets them loaded (with their
    parameters and wiring, from the load requests the launch file carries), waits until its inputs
    from other containers are matched, and is started. A node unloaded by hand is loaded again too:
    the desired graph owns what runs.
    """

    def __init__(
        self,
        requests: Mapping[str, Sequence[LoadRequest]],
        cross_topics: Sequence[str],
        targets: Sequence[Any],
        *,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        self.requests = requests
        self.targets = list(targets)
        self.cross_topics = set(cross_topics)
        self.log = log
        self.reloads: dict[str, int] = {t.full_name: 0 for t in self.targets}
        self.last_reload: dict[str, float] = {}

    def statuses(self, now: float) -> list[Status]:
        """One /diagnostics status per container: WARN for a while after it was reloaded."""
        out = []
        for target in self.targets:
            at = self.last_reload.get(target.full_name)
            recent = at is not None and now - at <= DIAGNOSTICS_HOLD_SEC
            message = f'respawned and reloaded {now - at:.0f} s ago' if recent else 'running'
            out.append(supervision_status(target.full_name, WARN if recent else OK, message,
                                          self.reloads[target.full_name]))
        return out

    def _inputs_from_elsewhere(self, full_name: str) -> list[str]:
        topics = set()
        for request in self.requests.get(full_name, ()):
            for key, value in request.parameters.items():
                if key.startswith('inputs.'):
                    topics.update(value if isinstance(value, list) else [value])
        return sorted(topics & self.cross_topics)

    def check(self, stop: threading.Event) -> None:
        """One pass: reload every reachable container that lacks desired nodes."""
        for target in self.targets:
            if stop.is_set() or not target.ready():
                continue
            try:
                have = set(target.list_nodes(timeout=RETRY_LIST_SEC))
            except RuntimeError:
                continue  # dead, or not up yet: launch is respawning it
            missing = [r for r in self.requests.get(target.full_name, ()) if _full(r) not in have]
            if not missing:
                continue
            t0 = time.monotonic()
            self.log(f'container {target.full_name} lacks {len(missing)} of its nodes '
                     f'({"respawned" if not have else "unloaded"}): loading them again')
            try:
                Reconciler._reload(target, missing, time.monotonic() + RESTART_READY_TIMEOUT_SEC)
            except RuntimeError as exc:
                self.log(f'container {target.full_name}: reload failed, retrying: {exc}')
                continue
            topics = self._inputs_from_elsewhere(target.full_name)
            deadline = time.monotonic() + RESTART_WIRED_TIMEOUT_SEC
            while topics and not stop.is_set() and time.monotonic() < deadline:
                try:
                    matched = target.snapshot()['state'].get('inputs_matched', {})
                except Exception:
                    matched = {}
                topics = [t for t in topics if matched.get(t, 0) < 1]
                if topics:
                    stop.wait(0.05)
            target.start()
            self.reloads[target.full_name] += 1
            self.last_reload[target.full_name] = time.monotonic()
            self.log(f'container {target.full_name} is back: {len(missing)} nodes reloaded and wired in '
                     f'{time.monotonic() - t0:.2f} s (reload {self.reloads[target.full_name]})')
