"""The transport of an edge between containers: DDS, or a shared-memory frame lane (shm_lane/).

A graph needs no new concept for it: a `frame` edge between two containers on one host runs on a
frame lane by default; an edge may say so or choose otherwise with an optional key

    edges:
      - {from: cam, to: det, transport: shm}                  # the default for frames across containers
      - {from: cam, to: det, transport: {kind: shm, pool: 8}}  # pool: frames the producer keeps in flight
      - {from: cam, to: rec, transport: dds}                  # refused for raw frames, as before

Rules (each refusal is one line naming the edge, code `frame-transport`):
- a lane carries raw frames only: the output must emit exactly the kind `frame` (a port that also
  emits other kinds would lose them, as the consumer reads only the lane) on a StreamPacket port;
- a lane joins two containers on one host; inside one container packets are handed over as
  objects (no transport to choose), across hosts raw frames stay refused unless compressed or
  blob-ref (graph/placement.py, when nodes carry `host:`);
- edges from one output port agree on the pool and feed at most 2 inputs over the lane
  (`DEFAULT_MAX_READERS`); edges into one input port agree on the transport;
- `transport: dds` keeps the old refusal for raw frames (`container-boundary`).
The validator calls `decide` for every edge that crosses containers and `check_agreement` once;
the wiring turns the decisions into reserved parameters (`lane_params`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schnitzel_stream_ros.shm_lane.lane import DEFAULT_MAX_READERS, DEFAULT_POOL, MAX_POOL
from schnitzel_stream_ros.shm_lane.ros_glue import SHM, input_param, output_param, pool_param

DDS = 'dds'
KINDS = (SHM, DDS)
_KEYS = ('kind', 'pool')
CODE = 'frame-transport'


@dataclass(frozen=True)
class EdgeTransport:
    """What an edge's `transport:` key says (None on the edge: the default applies)."""

    kind: str
    pool: int | None = None


@dataclass(frozen=True)
class FrameLane:
    """The decision for one edge: it runs on a frame lane with this pool."""

    pool: int = DEFAULT_POOL


def parse_transport(raw: Any) -> tuple[EdgeTransport | None, str]:
    """(transport, '') or (None, why) for an edge's `transport:` value; (None, '') when absent."""
    if raw is None:
        return None, ''
    if isinstance(raw, str):
        raw = {'kind': raw}
    if not isinstance(raw, Mapping):
        return None, f'transport must be {" or ".join(KINDS)} or a mapping {{kind, pool}}, got {raw!r}'
    unknown = sorted(set(map(str, raw)) - set(_KEYS))
    if unknown:
        return None, f'unknown transport key {unknown[0]!r} (known: {", ".join(_KEYS)})'
    kind = raw.get('kind')
    if kind not in KINDS:
        return None, f'transport kind must be one of {", ".join(KINDS)}, got {kind!r}'
    pool = raw.get('pool')
    if pool is not None:
        if kind != SHM:
            return None, 'transport pool applies to kind shm only'
        if isinstance(pool, bool) or not isinstance(pool, int) or not 2 <= pool <= MAX_POOL:
            return None, f'transport pool must be an integer 2..{MAX_POOL}, got {pool!r}'
    return EdgeTransport(kind, pool), ''


def decide(transport: EdgeTransport | None, out_kinds: frozenset[str], *, crosses_containers: bool,
           packet_port: bool, hosts: tuple[str, str]) -> tuple[FrameLane | None, str]:
    """(lane or None, '' or a refusal) for one edge whose kinds, containers and hosts (the two
    container groups' `host:`, graph/placement.py) are known."""
    wants_shm = transport is not None and transport.kind == SHM
    if not crosses_containers:
        if wants_shm:
            return None, ('transport shm joins two containers; inside one container packets are '
                          'handed over as objects')
        return None, ''
    if transport is not None and transport.kind == DDS:
        return None, ''
    frames_only = out_kinds == frozenset({'frame'})
    if not wants_shm and not (frames_only and packet_port):
        return None, ''  # not a frame edge: DDS, and the usual rules
    if not packet_port:
        return None, 'transport shm needs a StreamPacket port (typed ROS ports go over DDS)'
    if not frames_only:
        kinds = ', '.join(sorted(out_kinds))
        return None, (f'transport shm carries frames only, but the output emits {kinds} '
                      f'(the consumer reads only the lane: other kinds would be lost)')
    src_host, dst_host = hosts
    if src_host != dst_host:
        if wants_shm:
            return None, (f'transport shm needs one host, the edge goes from host {src_host!r} '
                          f'to {dst_host!r}')
        return None, ''  # across hosts: placement's rule (compressed or blob-ref) decides
    return FrameLane(transport.pool if transport is not None and transport.pool else DEFAULT_POOL), ''


EdgeKey = tuple[str, str, str, str]  # (src, src_port, dst, dst_port)


def check_agreement(lanes: Mapping[EdgeKey, FrameLane],
                    edges: Iterable[EdgeKey]) -> list[tuple[EdgeKey, str]]:
    """Problems (edge key, message): pools of one output port, transports of one input port."""
    problems = []
    readers: dict[tuple[str, str], int] = {}
    pools: dict[tuple[str, str], tuple[int, EdgeKey]] = {}
    transports: dict[tuple[str, str], tuple[bool, EdgeKey]] = {}
    for key in edges:
        src, src_port, dst, dst_port = key
        lane = lanes.get(key)
        if lane is not None:
            readers[(src, src_port)] = readers.get((src, src_port), 0) + 1
            if readers[(src, src_port)] > DEFAULT_MAX_READERS:
                problems.append((key, f'output {src}.{src_port} feeds more than {DEFAULT_MAX_READERS} inputs '
                                      f'in other containers over its frame lane'))
            first = pools.setdefault((src, src_port), (lane.pool, key))
            if first[0] != lane.pool:
                problems.append((key, f'lane pool {lane.pool} conflicts with pool {first[0]} of edge '
                                      f'{first[1][0]}.{first[1][1]}->{first[1][2]}.{first[1][3]} '
                                      f'(edges from output {src}.{src_port} share one lane)'))
        seen = transports.setdefault((dst, dst_port), (lane is not None, key))
        if seen[0] != (lane is not None):
            problems.append((key, f'input {dst}.{dst_port} would read a frame lane and DDS at once '
                                  f'(edges into one input agree on the transport)'))
    return problems


def lane_params(edges: Iterable[Any], node_id: str) -> dict[str, Any]:
    """Reserved parameters telling one node which of its ports are on a frame lane."""
    params: dict[str, Any] = {}
    for edge in edges:
        lane = getattr(edge, 'lane', None)
        if lane is None:
            continue
        if edge.src == node_id:
            params[output_param(edge.src_port)] = SHM
            params[pool_param(output_param(edge.src_port))] = lane.pool
        if edge.dst == node_id:
            params[input_param(edge.dst_port)] = SHM
            params[pool_param(input_param(edge.dst_port))] = lane.pool
    return params
