"""Placement across hosts: which host runs each container group, and what may cross between hosts.

A graph names hosts per node (`host: cameras`), and every node of a container group lives where its
group lives: the nodes of one group that name a host must name the same one, the others follow;
a group that names none runs on `local`. Edges between two hosts are DDS topics like edges between
containers, but a host can disappear from the network for minutes, so the rules are stricter
(docs/hosts.md):

- a frame (or bytes, audio) crosses hosts only from an output port that declares its wire encoding
  (`Port.wire_encoding`: compressed_image or blob_ref) — a raw 900 KiB frame never goes over a link
  by accident;
- process-local payloads (profile inproc_any, not frames) never cross hosts;
- events cross hosts only through a durable edge: a DurableEdgeSender on the producing host (its own
  durable queue, at-least-once, idempotency keys) into a DurableEdgeReceiver on the consuming host.
  The graph says so explicitly (no node is inserted behind the author's back): an event edge that
  crosses hosts any other way is an error naming the edge and the two plugins to use.

`host_part(graph, host)` is the part one host runs (`schnitzel-stream compile|run --host H`): its
nodes, the edges among them, and the edges that arrive from other hosts (their topics are wired
into this host's inputs; the remote publishers are not this host's to wait for).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from schnitzel_stream_ros.graph.errors import GraphError, node_subject
from schnitzel_stream_ros.graph.model import (
    DEFAULT_HOST,
    EdgeSpec,
    GraphSpec,
    InputSpec,
    ResolvedEdge,
    ValidatedGraph,
)
from schnitzel_stream_ros.packet import NON_PORTABLE_KINDS, Kind, PayloadProfile
from schnitzel_stream_ros.plugin import STREAM_PACKET_MSG, Plugin, Port

#: Wire encodings that let a frame cross hosts (Port.wire_encoding).
WIRE_ENCODINGS = frozenset({'compressed_image', 'blob_ref'})
#: Plugin class attribute marking the two ends of a durable edge.
DURABLE_EDGE_ATTR = 'DURABLE_EDGE'
SENDER, RECEIVER = 'sender', 'receiver'
#: Plugin class attribute: the parameter naming the topic a link's receiver answers on (both ends
#: declare it; the validator checks that both ends name the same topic).
PEER_TOPIC_ATTR = 'PEER_TOPIC_PARAM'
_HOST_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z')


def host_problem(name: str) -> str | None:
    """Why `name` is not a host name (letters, digits, `_.-`, up to 63 characters), or None."""
    if _HOST_NAME.match(name):
        return None
    return 'is not a host name (letters, digits, _ . -, starting with a letter or digit, at most 63)'


def container_hosts(spec: GraphSpec) -> tuple[dict[str, str], list[GraphError]]:
    """Container group -> host, and one error per node that places its group elsewhere than an
    earlier node of the same group (or names a malformed host)."""
    named: dict[str, tuple[str, str]] = {}  # container -> (host, node id that named it)
    errors: list[GraphError] = []
    for node in spec.nodes:
        if node.host is None:
            continue
        problem = host_problem(node.host)
        if problem:
            errors.append(
                GraphError(node.position, f'host {node.host!r} {problem}', node_subject(node.id), 'host-name')
            )
            continue
        first = named.get(node.container)
        if first is None:
            named[node.container] = (node.host, node.id)
        elif first[0] != node.host:
            errors.append(
                GraphError(
                    node.position,
                    f'host {node.host!r}, but node {first[1]!r} places container {node.container!r} '
                    f'on host {first[0]!r} (a container group runs on one host)',
                    node_subject(node.id),
                    'host-conflict',
                )
            )
    hosts = {group.name: named.get(group.name, (DEFAULT_HOST, ''))[0] for group in spec.containers}
    return hosts, errors


def hosts_of(spec: GraphSpec) -> tuple[str, ...]:
    """The graph's hosts in order of first appearance."""
    return tuple(dict.fromkeys(container_hosts(spec)[0].values()))


def _durable_end(cls: type[Plugin] | None) -> str:
    return str(getattr(cls, DURABLE_EDGE_ATTR, '') or '') if cls is not None else ''


def crossing_problem(
    edge: EdgeSpec,
    src_port: Port,
    out_kinds: frozenset[str],
    out_profile: PayloadProfile,
    src_cls: type[Plugin] | None,
    dst_cls: type[Plugin] | None,
    hosts: tuple[str, str],
    params: tuple[Mapping[str, Any], Mapping[str, Any]] = ({}, {}),
) -> GraphError | None:
    """The error of one edge from host hosts[0] to host hosts[1] (None: it may cross). `params`:
    the two nodes' parameters (the two ends of a link must name the same way back)."""

    def error(message: str) -> GraphError:
        return GraphError(edge.position, message, f'edge {edge.label}', 'host-boundary')

    back = getattr(src_cls, PEER_TOPIC_ATTR, '')
    if back and back == getattr(dst_cls, PEER_TOPIC_ATTR, '') and params[0].get(back) != params[1].get(back):
        return error(f'{back} {params[0].get(back)!r} of {edge.src} differs from {back} '
                     f'{params[1].get(back)!r} of {edge.dst}: what {edge.dst} sends back would never reach '
                     f'{edge.src}')
    if hosts[0] == hosts[1] or src_port.msg_type != STREAM_PACKET_MSG:
        return None  # typed ROS messages are portable by construction
    crossing = f'crosses from host {hosts[0]!r} to {hosts[1]!r}'

    raw = sorted(out_kinds & NON_PORTABLE_KINDS) if '*' not in out_kinds else []
    if raw and src_port.wire_encoding not in WIRE_ENCODINGS:
        return error(
            f'kind {raw[0]!r} {crossing} unencoded: only an output that declares a wire encoding '
            f'({" or ".join(sorted(WIRE_ENCODINGS))}, e.g. FrameLinkSender, BytesToFileRefNode) '
            'may carry it between hosts'
        )
    if not raw and out_profile is PayloadProfile.INPROC_ANY and not src_port.wire_encoding:
        return error(
            f'payload profile inproc_any of {edge.src} {crossing}: process-local payloads never '
            'leave their host'
        )
    if Kind.EVENT in out_kinds:
        if _durable_end(src_cls) != SENDER:
            return error(
                f'events {crossing} only through a durable edge: {edge.src} -> DurableEdgeSender '
                f'(on {hosts[0]!r}) -> DurableEdgeReceiver (on {hosts[1]!r}) (docs/hosts.md)'
            )
        if _durable_end(dst_cls) != RECEIVER:
            return error(
                f'a DurableEdgeSender {crossing} into {edge.dst}, which is not a DurableEdgeReceiver '
                '(nobody would acknowledge, every event would be sent again forever)'
            )
    return None


# -- one host's part --------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostPart(ValidatedGraph):
    """The part of a validated graph one host runs. `edges` are the edges among this host's nodes
    (what its start gate waits for and its report counts as usual); `remote_in` arrive from other
    hosts (wired into this host's inputs), `remote_out` leave to them."""

    host: str = DEFAULT_HOST
    remote_in: tuple[ResolvedEdge, ...] = ()
    remote_out: tuple[ResolvedEdge, ...] = ()
    hosts: Mapping[str, str] = None  # type: ignore[assignment]  # node id -> host, whole graph

    def inputs_of(self, node_id: str) -> tuple[InputSpec, ...]:
        return ValidatedGraph(self.spec, self.nodes, self.edges + self.remote_in).inputs_of(node_id)


def node_hosts(graph: ValidatedGraph) -> dict[str, str]:
    """Node id -> host."""
    by_container, _errors = container_hosts(graph.spec)
    return {node.id: by_container[node.container] for node in graph.nodes}


def host_part(graph: ValidatedGraph, host: str) -> HostPart:
    """The part `host` runs; ValueError naming the hosts the graph has when it has no node there."""
    hosts = node_hosts(graph)
    if host not in hosts.values():
        known = ', '.join(repr(h) for h in dict.fromkeys(hosts.values()))
        raise ValueError(
            f'{graph.spec.source}: no container group is placed on host {host!r} (hosts: {known})'
        )
    mine = {node_id for node_id, h in hosts.items() if h == host}
    spec = replace(graph.spec, nodes=tuple(n for n in graph.spec.nodes if n.id in mine))
    return HostPart(
        spec=spec,
        nodes=tuple(n for n in graph.nodes if n.id in mine),
        edges=tuple(e for e in graph.edges if e.src in mine and e.dst in mine),
        warnings=graph.warnings,
        host=host,
        remote_in=tuple(e for e in graph.edges if e.dst in mine and e.src not in mine),
        remote_out=tuple(e for e in graph.edges if e.src in mine and e.dst not in mine),
        hosts=hosts,
    )


# -- the run report's cross-host section ----------------------------------------------------------
_LINK_COUNTERS = (
    'sent_total',
    'resent_total',
    'acked_total',
    'accepted_total',
    'duplicate_total',
    'link_lost_total',
    'partition_dropped_total',
    'received_total',
    'link_down_total',
)


def cross_host_section(part: HostPart, snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`cross_host` of a host's run report: each edge to or from another host with what this host
    can count of it — packets published (out) or received (in), inbox drops, and the link counters
    of the node at this end (a durable edge's sent/acked/backlog, a frame link's losses)."""
    published: dict[str, int] = {}
    received: dict[tuple[str, str, str], dict[str, int]] = {}
    nodes: dict[str, Mapping[str, Any]] = {}
    for snap in snapshots:
        for topic, row in (snap.get('topics') or {}).items():
            published[topic] = published.get(topic, 0) + int(row.get('published', 0))
        for row in snap.get('edges', []) or []:
            key = (row.get('topic'), row.get('dst'), row.get('dst_port'))
            received[key] = {
                'packets': int(row.get('packets', 0)),
                'dropped': int(row.get('dropped_total', 0)),
            }
        for node_id, values in (snap.get('nodes') or {}).items():
            nodes[node_id] = values
    edges = []
    for direction, group in (('out', part.remote_out), ('in', part.remote_in)):
        for edge in group:
            here = edge.src if direction == 'out' else edge.dst
            counters = dict((nodes.get(here) or {}).get('counters', {}))
            row: dict[str, Any] = {
                'edge': edge.label,
                'direction': direction,
                'topic': edge.topic,
                'peer_host': part.hosts[edge.dst if direction == 'out' else edge.src],
                'reliability': str(edge.reliability),
            }
            if direction == 'out':
                row['packets'] = published.get(edge.topic, 0)
            else:
                got = received.get((edge.topic, edge.dst, edge.dst_port), {})
                row['packets'] = got.get('packets', 0)
                row['dropped'] = got.get('dropped', 0)
            row['link'] = {k: counters[k] for k in _LINK_COUNTERS if k in counters}
            lost = sum(int(counters.get(k, 0)) for k in ('link_lost_total', 'partition_dropped_total'))
            row['lost'] = lost + row.get('dropped', 0)
            edges.append(row)
    return {'host': part.host, 'edges': edges}
