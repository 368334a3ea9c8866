"""The difference between a running graph and a new version of it, node by node, as load requests.

What `schnitzel-stream apply` changes is decided here, on the load requests both graphs produce
(graph/wiring.py) — the requests are exactly what a container gets, so comparing them compares what
runs. Per node id:

- **added** / **removed**: only in the new / only in the old graph;
- **reparameterised**: same plugin and wiring, only parameters the plugin declares `dynamic` differ —
  changed in place, like `ros2 param set` (no new instance);
- **replaced**: another plugin class or a non-dynamic parameter (a hot-replace, runtime/hot_replace.py;
  the node keeps its inboxes and topics), possibly together with new input topics;
- **rewired**: only the topics feeding its inputs differ (an edge added or removed around it): the
  node subscribes and unsubscribes in place, its instance and state stay;
- **reloaded**: what cannot change in place — another container group, output QoS, inbox sizes or
  policies, remaps, the set of ports: unloaded and loaded again (its inbox drained first).

Edges are not a separate thing to apply: an edge is an `inputs.<port>` topic of its consumer, so edge
changes show up as rewired (or replaced) consumers. They are listed for the operator anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.graph.model import ValidatedGraph
from schnitzel_stream_ros.graph.wiring import LoadRequest, is_reserved_param, load_requests


@dataclass(frozen=True)
class GraphDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    rewired: tuple[str, ...] = ()
    reparameterised: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reloaded: tuple[str, ...] = ()
    edges_added: tuple[str, ...] = ()
    edges_removed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # why the diff cannot be applied (nothing is changed then)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.replaced or self.rewired or self.reparameterised
                    or self.reloaded)

    def lines(self) -> list[str]:
        """One line per change, for the operator."""
        out = [f'add node {n}' for n in self.added]
        out += [f'remove node {n}' for n in self.removed]
        out += [f'replace node {n}' for n in self.replaced]
        out += [f'rewire node {n}' for n in self.rewired]
        out += [f'set {n}: ' + ', '.join(f'{k}={v!r}' for k, v in p.items())
                for n, p in self.reparameterised.items()]
        out += [f'reload node {n}' for n in self.reloaded]
        out += [f'add edge {e}' for e in self.edges_added]
        out += [f'remove edge {e}' for e in self.edges_removed]
        return out


def _split(request: LoadRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plugin parameters, wiring parameters without input topics and the informational group)."""
    plugin = {k: v for k, v in request.parameters.items() if not is_reserved_param(k)}
    wiring = {k: v for k, v in request.parameters.items()
              if is_reserved_param(k) and not k.startswith('inputs.') and k != 'container.group'}
    return plugin, wiring


def _inputs(request: LoadRequest) -> dict[str, Any]:
    return {k: list(v) for k, v in request.parameters.items() if k.startswith('inputs.')}


def diff_graphs(old: ValidatedGraph, new: ValidatedGraph) -> GraphDiff:
    """What changes from `old` (running) to `new`."""
    problems = []
    if old.spec.namespace != new.spec.namespace:
        problems.append(
            f'the graph namespace changes ({old.spec.namespace} -> {new.spec.namespace}): '
            'stop the graph and start the new one'
        )
    old_groups = {g.name for g in old.containers}
    for group in new.containers:
        if group.name not in old_groups:
            problems.append(
                f"container group '{group.name}' is new: apply changes running containers only "
                '(restart the graph to add a container)'
            )
    before = {r.node_name: r for r in load_requests(old)}
    after = {r.node_name: r for r in load_requests(new)}
    added = tuple(n for n in after if n not in before)
    removed = tuple(n for n in before if n not in after)
    replaced, rewired, reloaded = [], [], []
    reparameterised: dict[str, dict[str, Any]] = {}
    for name in (n for n in after if n in before):
        a, b = before[name], after[name]
        if a == b:
            continue
        a_plugin, a_wiring = _split(a)
        b_plugin, b_wiring = _split(b)
        inputs_changed = _inputs(a) != _inputs(b)
        same_ports = {k.split('.', 1)[1] for k in _inputs(a)} == {k.split('.', 1)[1] for k in _inputs(b)}
        if a.container_group != b.container_group or a_wiring != b_wiring or a.remap_rules != b.remap_rules \
                or not same_ports:
            reloaded.append(name)
        elif a.plugin_name != b.plugin_name:
            replaced.append(name)
        elif a_plugin != b_plugin:
            schema = new.node(name).plugin_cls.param_schema()
            changed = {k for k in set(a_plugin) | set(b_plugin) if a_plugin.get(k) != b_plugin.get(k)}
            dynamic = all(k in schema and schema[k].dynamic and k in b_plugin for k in changed)
            if dynamic and not inputs_changed:
                reparameterised[name] = {k: b_plugin[k] for k in sorted(changed)}
            else:
                replaced.append(name)
        elif inputs_changed:
            rewired.append(name)
    old_edges = {e.label for e in old.edges}
    new_edges = {e.label for e in new.edges}
    return GraphDiff(
        added=added,
        removed=removed,
        replaced=tuple(replaced),
        rewired=tuple(rewired),
        reparameterised=reparameterised,
        reloaded=tuple(reloaded),
        edges_added=tuple(e.label for e in new.edges if e.label not in old_edges),
        edges_removed=tuple(e.label for e in old.edges if e.label not in new_edges),
        problems=tuple(problems),
    )


def union_inputs(old: LoadRequest, new: LoadRequest) -> LoadRequest:
    """`new` subscribing to the topics of both: the first step of a loss-free rewiring."""
    params = dict(new.parameters)
    for key, topics in _inputs(old).items():
        if key in params:
            params[key] = list(dict.fromkeys([*params[key], *topics]))
    return dataclasses.replace(new, parameters=params)

