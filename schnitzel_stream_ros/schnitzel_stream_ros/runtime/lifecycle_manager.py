"""Bringing a graph of managed nodes up in dependency order, as nav2's lifecycle manager does.

For graphs whose nodes load `unconfigured` (docs/runtime.md, "Managed nodes"): `configure` every
node, wait until every topic crossing containers is matched (the nodes create their topics when
configured), then `activate` every node. Both in the same order: consumers before producers, so
that a source starts last, into a graph that is there — launch ≡ run, as with the start gate. A
failed transition stops the bring-up with one line naming the node and the reason the container
kept for it (report `state.lifecycle_errors`); a failed `configure` leaves the graph not started
(no node was activated).

This module is ROS-free (the plan and the sequence against a LifecycleTarget); the executable with
its service clients is runtime/lifecycle_manager_main.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from schnitzel_stream_ros.graph.model import ValidatedGraph
from schnitzel_stream_ros.graph.wiring import load_requests
from schnitzel_stream_ros.runtime.start_gate import MAX_PLAN_ENTRIES, GatePlan, cross_topics


def _join(namespace: str, name: str) -> str:
    return ('' if namespace == '/' else namespace.rstrip('/')) + '/' + name


def bring_up_order(graph: ValidatedGraph) -> tuple[str, ...]:
    """Node ids, consumers before producers (sinks first, sources last).

    Producers-first topological order (declaration order among equals), reversed. Nodes on a cycle
    (allowed through delay/initial nodes) follow in declaration order before that reversal.
    """
    ids = [n.id for n in graph.nodes]
    into = {i: 0 for i in ids}
    out: dict[str, list[str]] = {i: [] for i in ids}
    for edge in graph.edges:
        if edge.dst not in out[edge.src]:
            out[edge.src].append(edge.dst)
            into[edge.dst] += 1
    ready = [i for i in ids if into[i] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for dst in out[node]:
            into[dst] -= 1
            if into[dst] == 0:
                ready.append(dst)
    order += [i for i in ids if i not in order]
    return tuple(reversed(order))


@dataclass(frozen=True)
class BringUpPlan:
    """Which nodes, in which order; which containers hold them; which topics must be matched."""

    gate: GatePlan  # containers -> their nodes; crossing topics to match before activating
    order: tuple[str, ...]  # node full names, consumers before producers

    @classmethod
    def from_graph(cls, graph: ValidatedGraph) -> BringUpPlan:
        full = {r.node_name: _join(r.node_namespace, r.node_name) for r in load_requests(graph)}
        loaded = GatePlan.from_graph(graph)
        gate = GatePlan(loaded.containers, cross_topics(graph))
        return cls(gate, tuple(full[i] for i in bring_up_order(graph)))

    def container_of(self, node: str) -> str:
        return next(c for c, nodes in self.gate.containers.items() if node in nodes)

    def to_json(self) -> str:
        gate = json.loads(self.gate.to_json())
        return json.dumps({**gate, 'order': list(self.order)}, separators=(',', ':'))

    @classmethod
    def from_json(cls, text: str) -> BringUpPlan:
        """Parse a plan; a malformed one raises ValueError with one line saying what is wrong."""
        try:
            data = json.loads(text) if len(text) <= 1 << 20 else None
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f'lifecycle plan: not JSON: {exc}') from None
        if not isinstance(data, dict) or 'order' not in data:
            raise ValueError("lifecycle plan: expected an object with 'containers', 'cross_topics', 'order'")
        order = data.pop('order')
        gate = GatePlan.from_json(json.dumps(data))
        held = {n for nodes in gate.containers.values() for n in nodes}
        if (
            not isinstance(order, list)
            or len(order) > MAX_PLAN_ENTRIES
            or sorted(order) != sorted(held)
        ):
            raise ValueError("lifecycle plan: 'order' must list every node of 'containers' once")
        return cls(gate, tuple(order))


class LifecycleTarget(Protocol):
    """The nodes as the manager reaches them (lifecycle services, the containers' reports)."""

    def state(self, node: str) -> str: ...
    def change(self, node: str, label: str) -> bool: ...
    def reason(self, node: str) -> str: ...  # why its last transition failed (the container's word)


def bring_up(
    plan: BringUpPlan,
    target: LifecycleTarget,
    wait_wired: Callable[[], Sequence[str]],
    log: Callable[[str], None] = lambda _line: None,
    only: Collection[str] | None = None,
) -> str | None:
    """configure all, wait until wired, activate all; None when the graph is up, else one line
    naming the node and the reason. Nodes already configured or active are left as they are.
    `only`: just these nodes (still in the plan's order; supervision brings back respawned ones)."""
    nodes = [n for n in plan.order if only is None or n in only]
    for node in nodes:
        state = target.state(node)
        if state == 'unconfigured':
            if not target.change(node, 'configure'):
                why = target.reason(node) or 'no reason given'
                return f'configure of {node} failed: {why}; graph not started'
            log(f'{node}: configured')
        elif state not in ('inactive', 'active'):
            return f'{node} is {state}: it cannot be brought up; graph not started'
    missing = wait_wired()
    if missing:
        return f'not wired after configure: {"; ".join(missing)}; graph not started'
    for node in nodes:
        if target.state(node) == 'inactive':
            if not target.change(node, 'activate'):
                return f'activate of {node} failed: {target.reason(node) or "no reason given"}'
            log(f'{node}: active')
    return None


#: How often supervision looks at the containers' reports.
SUPERVISE_POLL_SEC = 0.5


def supervise(
    plan: BringUpPlan,
    target: LifecycleTarget,
    states: Callable[[], Mapping[str, str]],
    wait_wired: Callable[[], Sequence[str]],
    stop: threading.Event,
    log: Callable[[str], None],
) -> None:
    """Until `stop`: nodes found `unconfigured` again — a respawned container's, loaded again by
    the start gate's supervisor — are brought up again (only those: a node deactivated on purpose
    stays inactive). `states`: node full name -> lifecycle state, from the containers' reports."""
    reported = ''
    while not stop.wait(SUPERVISE_POLL_SEC):
        try:
            current = states()
            down = [n for n in plan.order if current.get(n) == 'unconfigured']
            if not down:
                continue
            log(f'unconfigured again: {", ".join(down)}; bringing them up')
            failure = bring_up(plan, target, wait_wired, log, only=set(down))
        except RuntimeError as exc:  # a container or node not reachable yet (respawning)
            failure = str(exc)
        if failure is not None and failure != reported:
            log(failure)  # once per distinct failure: it is tried again at every poll
        reported = failure or ''
