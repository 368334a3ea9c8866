"""EventRouterNode: sends each event to named output ports by event_type / severity / object_type.

A site sends FIRE to the robot and the siren, everything to the backend, and INFO nowhere near a
pager. Instead of one filter node per destination, one router declares the routes:

    routes:
      - {port: urgent, min_severity: HIGH}
      - {port: intrusions, event_types: [ZONE_INTRUSION], severities: [MEDIUM, HIGH]}
    default_port: out        # unmatched events ('' = drop them)
    match: first             # first matching route only, or `all` matching routes

Within a route every given condition must hold (and); lists are alternatives (or). The output
ports are the route ports plus the default port, declared per node through `ports_for(params)`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import Severity
from schnitzel_stream_ros.graph.names import is_identifier
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

SEVERITY_ORDER = {s.value: rank for rank, s in enumerate(Severity)}  # INFO < LOW < ... < CRITICAL
_ROUTE_KEYS = frozenset({'port', 'event_types', 'severities', 'min_severity', 'object_types'})


@dataclass(frozen=True)
class Route:
    port: str
    event_types: frozenset[str] | None = None
    severities: frozenset[str] | None = None
    min_rank: int | None = None
    object_types: frozenset[str] | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.event_types is not None and event.get('event_type') not in self.event_types:
            return False
        if self.object_types is not None and event.get('object_type') not in self.object_types:
            return False
        severity = event.get('severity')
        if self.severities is not None and severity not in self.severities:
            return False
        return self.min_rank is None or SEVERITY_ORDER.get(severity, -1) >= self.min_rank


def _names(raw: Any, where: str, allowed: Sequence[str] | None = None) -> frozenset[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
        raise ValueError(f'{where}: expected a non-empty list of names, got {raw!r}')
    if allowed is not None:
        bad = [v for v in raw if v not in allowed]
        if bad:
            raise ValueError(f'{where}: {bad[0]!r} is not one of {list(allowed)}')
    return frozenset(raw)


def parse_routes(raw: Any, where: str) -> tuple[Route, ...]:
    if not isinstance(raw, list):
        raise ValueError(f'{where}: expected a list of routes, got {type(raw).__name__}')
    routes = []
    for i, item in enumerate(raw):
        at = f'{where}[{i}]'
        if not isinstance(item, Mapping):
            raise ValueError(f'{at}: expected a mapping with port and conditions, got {item!r}')
        unknown = sorted(set(item) - _ROUTE_KEYS)
        if unknown:
            raise ValueError(f'{at}.{unknown[0]}: unknown key (known: {sorted(_ROUTE_KEYS)})')
        port = item.get('port')
        if not isinstance(port, str) or not is_identifier(port):
            raise ValueError(f'{at}.port: expected a port name (identifier), got {port!r}')
        min_severity = item.get('min_severity')
        if min_severity is not None and min_severity not in SEVERITY_ORDER:
            raise ValueError(f'{at}.min_severity: {min_severity!r} is not one of {list(SEVERITY_ORDER)}')
        routes.append(Route(
            port=port,
            event_types=_names(item.get('event_types'), f'{at}.event_types'),
            severities=_names(item.get('severities'), f'{at}.severities', list(SEVERITY_ORDER)),
            min_rank=SEVERITY_ORDER[min_severity] if min_severity is not None else None,
            object_types=_names(item.get('object_types'), f'{at}.object_types'),
        ))
    return tuple(routes)


def _event_port(name: str) -> Port:
    return Port(name, frozenset({Kind.EVENT}))


class EventRouterNode(Plugin):
    """Route events to named output ports by event_type, object_type and severity."""

    INPUTS = (Port('in', frozenset({Kind.EVENT})),)
    OUTPUTS = (_event_port('out'),)
    PASSTHROUGH = True  # events leave as they came
    PARAMS = (
        Param('routes', list, [], 'list of {port, event_types, severities, min_severity, object_types}'),
        Param('default_port', str, 'out', "port of events no route matches ('' = drop them)"),
        Param('match', str, 'first', 'send to the first matching route, or to all matching routes',
              choices=('first', 'all')),
    )

    @classmethod
    def output_names(cls, params: Mapping[str, Any]) -> list[str]:
        names: list[str] = []
        raw = params.get('routes') or []
        for item in raw if isinstance(raw, list) else []:
            port = item.get('port') if isinstance(item, Mapping) else None
            if isinstance(port, str) and port not in names:
                names.append(port)
        default = params.get('default_port', 'out')
        if default and default not in names:
            names.append(default)
        return names

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        return cls.INPUTS, tuple(_event_port(name) for name in cls.output_names(params))

    def setup(self) -> None:
        where = f'{self.node_id}: parameter'
        self.routes = parse_routes(self.params.get('routes') or [], f'{where} routes')
        self.default_port = self.params.get('default_port', 'out')
        if self.default_port and not is_identifier(self.default_port):
            raise ValueError(f'{where} default_port: {self.default_port!r} is not a port name')
        self.match_all = self.params.get('match', 'first') == 'all'

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        event = packet.payload
        if not isinstance(event, Mapping):
            raise ValueError(
                f'{self.node_id}: packet {packet.packet_id} (source_id {packet.source_id}): '
                f'event payload must be a mapping, got {type(event).__name__}'
            )
        sent: set[str] = set()
        for route in self.routes:
            if route.port not in sent and route.matches(event):
                sent.add(route.port)
                self.emit(packet, route.port)
                self.count(f'routed_{route.port}_total')
                if not self.match_all:
                    break
        if not sent:
            if self.default_port:
                self.emit(packet, self.default_port)
                self.count(f'routed_{self.default_port}_total')
            else:
                self.count('dropped_total')
        return None
