"""The start gate: a graph produces only once every node of it is loaded and every cross-process edge wired.

Why: containers load nodes one at a time (launch_ros' LoadComposableNodes, `ros2 component load`,
the runner), and a node that runs as soon as it is loaded emits into a graph that is not there yet —
a finite source's first packets go to an unloaded neighbour or to a DDS topic nobody matched. So
the rule for every way of starting a graph is the same (docs/wiring.md, "Start gate"):

1. containers start *paused* (`component_container --paused`): loaded nodes are set up and wired
   but their sources do not pull;
2. the gate waits until each container lists every node the graph puts in it, and every topic
   that crosses containers has as many matched subscriptions on its publisher as the graph has
   consumers of it in other containers;
3. with `config.pace_sources`, it also waits until the container publishing each crossing topic has
   heard a pace credit for it from every container that takes it in (runtime/pace_link.py): a source
   that started before its pace link worked would run unpaced;
4. then it calls `~/_schnitzel/start` on every container, once. Later loads start at once.

`schnitzel-stream run` opens the gate itself after its loads; a generated launch file starts the
`start_gate` executable next to its containers, which waits for launch_ros' loads and opens it;
by hand, `ros2 run schnitzel_stream_ros start_gate --graph FILE` does the same for containers
started with `--paused` and nodes loaded with `ros2 component load`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schnitzel_stream_ros.graph.model import ValidatedGraph
from schnitzel_stream_ros.graph.wiring import PACKAGE_NAME, LoadRequest, load_requests_by_container

#: Bounds of a plan handed over on a command line (it is input like any other).
MAX_PLAN_BYTES = 1 << 20
MAX_PLAN_ENTRIES = 10_000


def _join(namespace: str, name: str) -> str:
    return ('' if namespace == '/' else namespace.rstrip('/')) + '/' + name


def cross_topics(graph: ValidatedGraph) -> dict[str, int]:
    """topic -> subscriptions in other containers its publisher must have matched."""
    container_of = {n.id: n.container for n in graph.nodes}
    needed: dict[str, set[tuple[str, str]]] = {}
    for edge in graph.edges:
        if container_of[edge.src] != container_of[edge.dst]:
            needed.setdefault(edge.topic, set()).add((edge.dst, edge.dst_port))
    return {topic: len(ends) for topic, ends in sorted(needed.items())}


def pace_topics(graph: ValidatedGraph) -> dict[str, int]:
    """With config.pace_sources: topic -> containers (other than its publisher's) whose pace credit for
    it the publishing container must have heard before the graph starts. Empty when not paced."""
    if not graph.spec.pace_sources:
        return {}
    container_of = {n.id: n.container for n in graph.nodes}
    needed: dict[str, set[str]] = {}
    for edge in graph.edges:
        if container_of[edge.src] != container_of[edge.dst]:
            needed.setdefault(edge.topic, set()).add(container_of[edge.dst])
    return {topic: len(containers) for topic, containers in sorted(needed.items())}


@dataclass(frozen=True)
class GatePlan:
    """What must be there before a graph starts: nodes per container, subscriptions per crossing topic."""

    containers: Mapping[str, tuple[str, ...]]  # container node full name -> node full names in it
    cross_topics: Mapping[str, int]  # topic -> matched subscriptions its publisher needs
    # config.pace_sources: topic -> containers its publishing container must have heard credit it
    pace_topics: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_graph(cls, graph: ValidatedGraph) -> GatePlan:
        containers = {
            _join(graph.spec.namespace, group): tuple(_join(r.node_namespace, r.node_name) for r in requests)
            for group, requests in load_requests_by_container(graph).items()
        }
        # nodes that load unconfigured are wired when their manager configures them: it waits then
        auto = graph.spec.autostart
        return cls(containers, cross_topics(graph) if auto else {}, pace_topics(graph) if auto else {})

    def awaiting(self, subscribers: Mapping[str, int]) -> GatePlan:
        """This plan, also waiting for `n` more matched subscriptions on each topic — outside
        listeners that must see the first packet too (a recorder, a robot's consumer)."""
        topics = dict(self.cross_topics)
        for topic, n in subscribers.items():
            topics[topic] = topics.get(topic, 0) + n
        return GatePlan(self.containers, topics, self.pace_topics)

    def to_json(self) -> str:
        containers = {k: list(v) for k, v in self.containers.items()}
        plan = {'containers': containers, 'cross_topics': dict(self.cross_topics)}
        if self.pace_topics:  # only paced graphs carry it (plans of older launch files stay valid)
            plan['pace_topics'] = dict(self.pace_topics)
        return json.dumps(plan, separators=(',', ':'))

    @classmethod
    def from_json(cls, text: str) -> GatePlan:
        """Parse a plan; a malformed one raises ValueError with one line saying what is wrong."""
        if len(text) > MAX_PLAN_BYTES:
            raise ValueError(f'start gate plan: {len(text)} bytes, more than {MAX_PLAN_BYTES}')
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f'start gate plan: not JSON: {exc}') from None
        if not isinstance(data, dict) or not {'containers', 'cross_topics'} <= set(data) <= {
                'containers', 'cross_topics', 'pace_topics'}:
            raise ValueError("start gate plan: expected an object with 'containers' and 'cross_topics' "
                             "(and optionally 'pace_topics')")
        containers, topics, paced = data['containers'], data['cross_topics'], data.get('pace_topics', {})
        if not isinstance(containers, dict) or not all(
            isinstance(k, str) and k.startswith('/') and isinstance(v, list)
            and all(isinstance(n, str) and n.startswith('/') for n in v)
            for k, v in containers.items()
        ):
            raise ValueError("start gate plan: 'containers' must map container names to lists of node names")
        if not isinstance(topics, dict) or not all(
            isinstance(k, str) and k.startswith('/') and type(v) is int and v > 0 for k, v in topics.items()
        ):
            raise ValueError("start gate plan: 'cross_topics' must map topic names to positive counts")
        if not isinstance(paced, dict) or not all(
            isinstance(k, str) and k.startswith('/') and type(v) is int and v > 0 for k, v in paced.items()
        ):
            raise ValueError("start gate plan: 'pace_topics' must map topic names to positive counts")
        if sum(len(v) for v in containers.values()) + len(topics) + len(paced) > MAX_PLAN_ENTRIES:
            raise ValueError(f'start gate plan: more than {MAX_PLAN_ENTRIES} nodes and topics')
        return cls({k: tuple(v) for k, v in containers.items()}, dict(topics), dict(paced))

    def missing(self, loaded: Mapping[str, Iterable[str]], matched: Mapping[str, int],
                heard: Mapping[str, int] | None = None) -> list[str]:
        """What still keeps the gate closed, one phrase each; empty when the graph may start.

        `loaded`: container full name -> node full names it lists now; `matched`: topic -> matched
        subscriptions of its publisher outside its container, as the containers report them;
        `heard`: topic -> containers its publishing container has heard a pace credit for it from.
        """
        out = []
        for container, nodes in self.containers.items():
            have = set(loaded.get(container, ()))
            if container not in loaded:
                out.append(f'container {container} not reachable')
                continue
            out += [f'node {name} not loaded in {container}' for name in nodes if name not in have]
        for topic, needed in self.cross_topics.items():
            if matched.get(topic, 0) < needed:
                out.append(f'topic {topic}: {matched.get(topic, 0)}/{needed} subscriptions matched')
        heard = heard or {}
        for topic, needed in self.pace_topics.items():
            have = heard.get(topic, 0)
            if have < needed:
                out.append(f'topic {topic}: pace credits heard from {have}/{needed} containers')
        return out


def matched_subscriptions(snapshots: Iterable[Mapping]) -> dict[str, int]:
    """topic -> matched subscriptions outside the publishing container, from container snapshots."""
    matched: dict[str, int] = {}
    for snap in snapshots:
        for topic, row in snap.get('topics', {}).items():
            matched[topic] = max(matched.get(topic, 0), int(row.get('external_subscribers', 0)))
    return matched


def pace_reporters(snapshots: Iterable[Mapping]) -> dict[str, int]:
    """topic -> containers its publishing container heard a pace credit for it from (snapshots)."""
    heard: dict[str, int] = {}
    for snap in snapshots:
        for topic, row in snap.get('topics', {}).items():
            heard[topic] = max(heard.get(topic, 0), int(row.get('pace_reporters', 0)))
    return heard


class GateTarget(Protocol):
    """A container as the gate sees it (the runner's handles, or service clients of launched ones)."""

    full_name: str

    def ready(self) -> bool: ...  # can be asked now (services up) without waiting
    def list_nodes(self) -> list[str]: ...
    def snapshot(self) -> dict[str, Any]: ...
    def start(self) -> None: ...


def observe(
    targets: Sequence[GateTarget],
) -> tuple[dict[str, list[str]], dict[str, int], dict[str, int]]:
    """(loaded nodes per reachable container, matched subscriptions per topic, pace credits heard per
    topic). A container that does not answer yet is left out: the plan then reports it as not
    reachable."""
    loaded: dict[str, list[str]] = {}
    snapshots = []
    for target in targets:
        if not target.ready():
            continue  # its services are not up yet: not reachable
        try:
            loaded[target.full_name] = target.list_nodes()
            snapshots.append(target.snapshot())
        except Exception:  # not up yet, or busy: asked again at the next poll
            loaded.pop(target.full_name, None)
    return loaded, matched_subscriptions(snapshots), pace_reporters(snapshots)


def wait_until_wired(
    plan: GatePlan,
    targets: Sequence[GateTarget],
    *,
    stop: threading.Event,
    timeout: float | None = None,
    on_waiting: Callable[[list[str]], None] | None = None,
    poll_sec: float = 0.1,
) -> list[str]:
    """Block until the plan is met: [] then; else (timeout, stop) what was still missing.

    `on_waiting(missing)` is called every poll that finds something missing (the caller decides how
    often to log it).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        missing = plan.missing(*observe(targets))
        if not missing:
            return []
        if on_waiting is not None:
            on_waiting(missing)
        if (deadline is not None and time.monotonic() >= deadline) or stop.wait(poll_sec):
            return missing


def open_gate(targets: Sequence[GateTarget]) -> None:
    """Start every container's loaded nodes (sources begin to pull)."""
    for target in targets:
        target.start()


def parse_await(specs: Iterable[str] | None) -> dict[str, int]:
    """`TOPIC` or `TOPIC=N` (command-line form of GatePlan.awaiting); ValueError names a bad one."""
    out: dict[str, int] = {}
    for spec in specs or ():
        topic, _, count = spec.partition('=')
        if not topic.startswith('/') or (count and not count.isdigit()) or count == '0':
            raise ValueError(f'--await-subscribers {spec!r}: expected /topic or /topic=N (N >= 1)')
        out[topic] = out.get(topic, 0) + (int(count) if count else 1)
    return out


# -- what a launch supervisor reloads into a respawned container ----------------------------------------
def requests_to_json(graph: ValidatedGraph) -> str:
    """The load requests per container full name, as JSON (what `start_gate --requests` takes)."""
    out = {
        _join(graph.spec.namespace, group): [
            {
                'plugin_name': r.plugin_name,
                'node_name': r.node_name,
                'node_namespace': r.node_namespace,
                'remap_rules': list(r.remap_rules),
                'parameters': dict(r.parameters),
                **({'extra_arguments': dict(r.extra_arguments)} if r.extra_arguments else {}),
            }
            for r in requests
        ]
        for group, requests in load_requests_by_container(graph).items()
    }
    return json.dumps(out, separators=(',', ':'))


def _scalar_or_list(value: Any) -> bool:
    scalar = (bool, int, float, str)
    if isinstance(value, list):
        return all(isinstance(v, scalar) for v in value)
    return isinstance(value, scalar)


def requests_from_json(text: str) -> dict[str, tuple[LoadRequest, ...]]:
    """Parse `--requests`; a malformed one raises ValueError with one line saying what is wrong."""
    if len(text) > MAX_PLAN_BYTES:
        raise ValueError(f'load requests: {len(text)} bytes, more than {MAX_PLAN_BYTES}')
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f'load requests: not JSON: {exc}') from None
    if not isinstance(data, dict):
        raise ValueError('load requests: expected an object mapping container names to request lists')
    out: dict[str, tuple[LoadRequest, ...]] = {}
    entries = 0
    for container, items in data.items():
        if not isinstance(container, str) or not container.startswith('/') or not isinstance(items, list):
            raise ValueError(
                f'load requests: {container!r} must be a container name with a list of requests'
            )
        requests = []
        for i, item in enumerate(items):
            where = f'load requests: {container}[{i}]'
            if not isinstance(item, dict) or set(item) - {'extra_arguments'} != {
                'plugin_name', 'node_name', 'node_namespace', 'remap_rules', 'parameters'
            }:
                raise ValueError(
                    f'{where}: expected plugin_name, node_name, node_namespace, remap_rules, parameters '
                    '(and optionally extra_arguments)'
                )
            extra = item.get('extra_arguments', {})
            if not isinstance(extra, dict) or not all(
                isinstance(k, str) and isinstance(v, bool) for k, v in extra.items()
            ):
                raise ValueError(f'{where}: extra_arguments must map names to booleans')
            strings = [item['plugin_name'], item['node_name'], item['node_namespace'], *item['remap_rules']] \
                if isinstance(item['remap_rules'], list) else [None]
            params = item['parameters']
            if not all(isinstance(s, str) for s in strings) or not isinstance(params, dict) or not all(
                isinstance(k, str) and _scalar_or_list(v) for k, v in params.items()
            ):
                raise ValueError(f'{where}: names must be strings, parameters scalars or lists of scalars')
            entries += 1 + len(params)
            group = container.rsplit('/', 1)[1]
            requests.append(LoadRequest(PACKAGE_NAME, item['plugin_name'], item['node_name'],
                                        item['node_namespace'], tuple(item['remap_rules']), params, group,
                                        extra))
        out[container] = tuple(requests)
    if entries > MAX_PLAN_ENTRIES * 10:
        raise ValueError(f'load requests: more than {MAX_PLAN_ENTRIES * 10} entries')
    return out
