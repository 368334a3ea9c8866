"""Graph file -> GraphSpec: the v2 format with upstream aliases and our extensions.

All spelling decisions live here (id/node_id, from/src, to/dst, from_port/src_port,
to_port/dst_port, `config.__runtime__`, the optional extensions), so later stages never see raw
YAML. Structural mistakes are collected as GraphErrors with file:line, and a best-effort GraphSpec
is still returned so the validator can report the remaining problems in the same run. Only a file
that cannot be read as a graph at all (syntax, v1 `job:`, wrong version, over a GraphLimits bound)
yields no GraphSpec. The bounds hold on every path that loads a graph (validate, compile, run,
site.launch.py): the file's size before it is read, depth, values and aliases while it is parsed,
then the counts of nodes, edges and the size of each parameter value.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.document_limits import (
    GRAPH_DOCUMENT_LIMITS,
    KIB,
    DocumentError,
    DocumentLimits,
    LimitExceeded,
    check_text,
    decode_text,
    read_file,
)
from schnitzel_stream_ros.graph.blackboard_config import BlackboardSpec, parse_blackboard
from schnitzel_stream_ros.graph.errors import GraphError, node_subject
from schnitzel_stream_ros.graph.frame_transport import parse_transport
from schnitzel_stream_ros.graph.interpolate import InterpolationError, interpolate_text
from schnitzel_stream_ros.graph.model import (
    DEFAULT_CONTAINER,
    DEFAULT_NAMESPACE,
    RUNTIME_KEY,
    DeliverySpec,
    DropWeights,
    EdgeSpec,
    GraphSpec,
    NodeKind,
    NodeSpec,
    Overflow,
    PortOverride,
    Position,
    QosSpec,
    Reliability,
    RuntimeSpec,
)
from schnitzel_stream_ros.graph.restart import RestartSpec, parse_restart
from schnitzel_stream_ros.graph.source_text import ParsedText, Path, SyntaxProblem, iter_strings, parse_text
from schnitzel_stream_ros.graph.state_config import NODE_KEYS as STATE_NODE_KEYS
from schnitzel_stream_ros.graph.state_config import StateSpec, parse_graph_state, parse_overrides
from schnitzel_stream_ros.graph.suggest import did_you_mean
from schnitzel_stream_ros.packet import PayloadProfile

SUPPORTED_VERSION = 2

_TOP_KEYS = ('version', 'nodes', 'edges', 'config', 'namespace')
_NODE_KEYS = ('id', 'node_id', 'kind', 'plugin', 'config', 'namespace', 'container', 'topics', 'qos', 'ports',
              'description', 'restart', 'state', 'host')
_EDGE_KEYS = ('from', 'src', 'to', 'dst', 'from_port', 'src_port', 'to_port', 'dst_port', 'qos', 'inbox',
              'transport')
_QOS_KEYS = ('reliability', 'depth')
_INBOX_KEYS = ('max', 'overflow', 'weights', 'weight_key', 'default_weight')
_RUNTIME_KEYS = ('inbox_max', 'inbox_overflow', 'overflow_weights', 'overflow_weight_key',
                 'overflow_default_weight')
_PORT_KEYS = ('kinds', 'profile')
_GRAPH_CONFIG_SWITCHES = {'allow_cycles': bool, 'autostart': bool, 'pace_sources': bool}


@dataclass(frozen=True)
class GraphLimits:
    """Bounds of one graph file (defaults in docs/graph-format.md, "Limits").

    Generous for real sites: the 500-node bench graph is 87 KB, ~12,000 values, 499 edges; the
    largest parameter of the site graph (its zones) counts 60.
    """

    document: DocumentLimits = GRAPH_DOCUMENT_LIMITS
    max_nodes: int = 2_000
    max_edges: int = 8_000
    #: one parameter value (`nodes[i].config.<name>`): characters of its text plus one per value,
    #: after alias expansion — about its size as compact JSON
    max_config_value_chars: int = 256 * KIB
    #: problems listed per file; validation stops there and one more line says how it ended (a
    #: file of 40,000 misspelt keys must not cost 40,000 "did you mean" searches and lines)
    max_errors: int = 100


DEFAULT_GRAPH_LIMITS = GraphLimits()


@dataclass
class LoadResult:
    """The loaded graph (None when the file is not a readable graph) and the problems found: at most
    `max_errors` of them listed; `unlisted_at` is where the first one not listed was found."""

    graph: GraphSpec | None
    errors: list[GraphError] = field(default_factory=list)
    unlisted_at: Position | None = None

    @property
    def ok(self) -> bool:
        return self.graph is not None and not self.errors


class _Reader:
    """One pass over the parsed data; collects errors with positions."""

    def __init__(self, parsed: ParsedText, file: str, max_errors: int) -> None:
        self.parsed = parsed
        self.file = file
        self.errors: list[GraphError] = []
        self.max_errors = max_errors
        self.unlisted = 0
        self.unlisted_at: Position | None = None

    def result(self, graph: GraphSpec | None) -> LoadResult:
        return LoadResult(graph, self.errors, self.unlisted_at)

    def hint(self, word: str, choices: Any) -> str:
        """did_you_mean, until max_errors problems are listed (then nobody reads the hints)."""
        return did_you_mean(word, choices) if len(self.errors) < self.max_errors else ''

    def pos(self, path: Path) -> Position:
        """Line of `path`; file-level problems point at line 1."""
        return Position(self.file, self.parsed.line_of(path) or 1)

    def error(self, path: Path, message: str, subject: str = '', code: str = 'structure') -> None:
        self.add(GraphError(self.pos(path), message, subject, code))

    def add(self, error: GraphError) -> None:
        if len(self.errors) < self.max_errors:
            self.errors.append(error)
        else:
            self.unlisted += 1
            self.unlisted_at = self.unlisted_at or error.position

    def check_keys(self, mapping: Mapping[str, Any], path: Path, allowed: tuple[str, ...], subject: str,
                   what: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.error((*path, key), f'unknown {what} key {key!r}{self.hint(str(key), allowed)}',
                           subject, 'unknown-key')

    def alias(self, mapping: Mapping[str, Any], path: Path, names: tuple[str, str], subject: str) -> Any:
        """Value of `names[0]` or its alias `names[1]`; both given with different values is an error."""
        first, second = names
        if first in mapping and second in mapping and mapping[first] != mapping[second]:
            self.error((*path, second), f'both {first!r} and its alias {second!r} are given', subject,
                       'alias-conflict')
        return mapping.get(first, mapping.get(second))

    def mapping(self, value: Any, path: Path, subject: str, what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f'{what} must be a mapping, got {type(value).__name__}', subject, 'type')
            return {}
        return value

    # -- extensions ----------------------------------------------------------------------------
    def qos(self, raw: Any, path: Path, subject: str) -> QosSpec:
        data = self.mapping(raw, path, subject, 'qos')
        self.check_keys(data, path, _QOS_KEYS, subject, 'qos')
        reliability = data.get('reliability')
        if reliability is not None and reliability not in tuple(Reliability):
            self.error((*path, 'reliability'),
                       f"qos reliability {reliability!r} is not one of {[str(r) for r in Reliability]}",
                       subject, 'qos')
            reliability = None
        depth = data.get('depth')
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            self.error((*path, 'depth'), f'qos depth must be an integer >= 1, got {depth!r}', subject, 'qos')
            depth = None
        return QosSpec(Reliability(reliability) if reliability else None, depth)

    def overflow(self, raw: Any, path: Path, subject: str, name: str) -> Overflow | None:
        if raw is None:
            return None
        if raw not in tuple(Overflow):
            self.error(path, f'{name} {raw!r} is not one of {[str(o) for o in Overflow]}', subject,
                       'overflow')
            return None
        return Overflow(raw)

    def inbox_max(self, raw: Any, path: Path, subject: str, name: str) -> int | None:
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            self.error(path, f'{name} must be an integer >= 1, got {raw!r}', subject, 'inbox')
            return None
        return raw

    def drop_weights(self, raw: Mapping[str, Any], path: Path, subject: str,
                     names: tuple[str, str, str]) -> DropWeights | None:
        """weighted_drop settings (`names`: the weights, key and default-weight keys); None if unset."""
        weights_name, key_name, default_name = names
        if not any(name in raw for name in names):
            return None
        table: list[tuple[str, float]] = []
        for value, weight in self.mapping(raw.get(weights_name), (*path, weights_name), subject,
                                          weights_name).items():
            if not _finite_number(weight):
                self.error((*path, weights_name, value), f'{weights_name}.{value} must be a finite number, '
                           f'got {weight!r}', subject, 'inbox')
                continue
            table.append((str(value), float(weight)))
        key = raw.get(key_name, DropWeights.key)
        if not isinstance(key, str) or not key.strip():
            self.error((*path, key_name), f'{key_name} must be a non-empty string, got {key!r}', subject,
                       'inbox')
            key = DropWeights.key
        default = raw.get(default_name, DropWeights.default)
        if not _finite_number(default):
            self.error((*path, default_name), f'{default_name} must be a finite number, got {default!r}',
                       subject, 'inbox')
            default = DropWeights.default
        return DropWeights(key.strip(), tuple(table), float(default))

    def restart(self, raw: Any, path: Path, subject: str) -> RestartSpec | None:
        spec, problems = parse_restart(raw)
        for key, problem in problems:
            self.error((*path, key) if key else path, problem, subject, 'restart')
        return spec

    def state(self, raw: Any, path: Path, subject: str) -> Mapping[str, Any] | None:
        values, problems = parse_overrides(raw, STATE_NODE_KEYS)
        for key, problem in problems:
            self.error((*path, key) if key else path, problem, subject, 'state')
        return values if raw is not None and not problems else None

    def graph_state(self, raw: Any, path: Path) -> StateSpec | None:
        spec, problems = parse_graph_state(raw)
        for key, problem in problems:
            self.error((*path, key) if key else path, problem, '', 'state')
        return spec

    def blackboard(self, raw: Any, path: Path) -> BlackboardSpec | None:
        spec, problems = parse_blackboard(raw)
        for key, problem in problems:
            self.error((*path, key) if key else path, problem, '', 'blackboard')
        return spec

    def runtime(self, config: Mapping[str, Any], path: Path, subject: str) -> RuntimeSpec:
        rpath = (*path, RUNTIME_KEY)
        raw = self.mapping(config.get(RUNTIME_KEY), rpath, subject, RUNTIME_KEY)
        self.check_keys(raw, rpath, _RUNTIME_KEYS, subject, RUNTIME_KEY)
        return RuntimeSpec(
            inbox_max=self.inbox_max(raw.get('inbox_max'), (*rpath, 'inbox_max'), subject, 'inbox_max'),
            inbox_overflow=self.overflow(raw.get('inbox_overflow'), (*rpath, 'inbox_overflow'), subject,
                                         'inbox_overflow'),
            drop_weights=self.drop_weights(raw, rpath, subject, ('overflow_weights', 'overflow_weight_key',
                                                                  'overflow_default_weight')),
        )

    def ports(self, raw: Any, path: Path, subject: str) -> dict[str, PortOverride]:
        out: dict[str, PortOverride] = {}
        for port, spec in self.mapping(raw, path, subject, 'ports').items():
            ppath = (*path, port)
            data = self.mapping(spec, ppath, subject, f'ports.{port}')
            self.check_keys(data, ppath, _PORT_KEYS, subject, 'port')
            kinds = data.get('kinds')
            if kinds is not None:
                if isinstance(kinds, str):
                    kinds = [kinds]
                names_ok = isinstance(kinds, list) and kinds and all(isinstance(k, str) and k for k in kinds)
                if not names_ok:
                    self.error((*ppath, 'kinds'),
                               f'ports.{port}.kinds must be a non-empty list of kind names', subject, 'port')
                    kinds = None
            profile = data.get('profile')
            if profile is not None and profile not in tuple(PayloadProfile):
                self.error((*ppath, 'profile'),
                           f'ports.{port}.profile {profile!r} is not one of '
                           f'{[str(p) for p in PayloadProfile]}',
                           subject, 'port')
                profile = None
            out[str(port)] = PortOverride(frozenset(kinds) if kinds else None, profile, self.pos(ppath))
        return out

    def str_map(self, raw: Any, path: Path, subject: str, what: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self.mapping(raw, path, subject, what).items():
            if not isinstance(value, str) or not value:
                self.error((*path, key), f'{what}.{key} must be a non-empty string', subject, 'type')
                continue
            out[str(key)] = value
        return out

    # -- nodes and edges ------------------------------------------------------------------------
    def node(self, raw: Any, index: int) -> NodeSpec | None:
        path: Path = ('nodes', index)
        if not isinstance(raw, dict):
            self.error(path, f'nodes[{index}] must be a mapping, got {type(raw).__name__}', code='structure')
            return None
        node_id = self.alias(raw, path, ('id', 'node_id'), f'nodes[{index}]')
        if not isinstance(node_id, str) or not node_id.strip():
            self.error(path, f'nodes[{index}] needs a non-empty id', code='empty-id')
            node_id = ''
        node_id = node_id.strip()
        subject = node_subject(node_id) if node_id else f'nodes[{index}]'
        self.check_keys(raw, path, _NODE_KEYS, subject, 'node')
        plugin = raw.get('plugin')
        if not isinstance(plugin, str) or not plugin.strip():
            self.error(path, 'needs a plugin (module.path:ClassName or a registered plugin name)', subject,
                       'no-plugin')
            plugin = ''
        kind_raw = raw.get('kind')
        kind: NodeKind | None = None
        if kind_raw is not None:
            if kind_raw in tuple(NodeKind):
                kind = NodeKind(kind_raw)
            else:
                self.error((*path, 'kind'), f"unknown kind {kind_raw!r} (expected one of "
                           f"{', '.join(NodeKind)}){self.hint(str(kind_raw), [str(k) for k in NodeKind])}",
                           subject, 'unknown-kind')
        config = self.mapping(raw.get('config'), (*path, 'config'), subject, 'config')
        namespace = raw.get('namespace')
        if namespace is not None and not isinstance(namespace, str):
            self.error((*path, 'namespace'), 'namespace must be a string', subject, 'type')
            namespace = None
        container = raw.get('container', DEFAULT_CONTAINER)
        if not isinstance(container, str) or not container:
            self.error((*path, 'container'), 'container must be a non-empty string', subject, 'type')
            container = DEFAULT_CONTAINER
        host = raw.get('host')
        if host is not None and (not isinstance(host, str) or not host.strip()):
            self.error((*path, 'host'), 'host must be a non-empty string', subject, 'type')
            host = None
        qos = {
            str(port): self.qos(spec, (*path, 'qos', port), subject)
            for port, spec in self.mapping(raw.get('qos'), (*path, 'qos'), subject, 'qos').items()
        }
        config_path = (*path, 'config')
        return NodeSpec(
            id=node_id,
            plugin=plugin.strip(),
            kind=kind,
            config=config,
            namespace=namespace,
            container=container,
            host=host.strip() if isinstance(host, str) else None,
            topics=self.str_map(raw.get('topics'), (*path, 'topics'), subject, 'topics'),
            qos=qos,
            ports=self.ports(raw.get('ports'), (*path, 'ports'), subject),
            runtime=self.runtime(config, config_path, subject),
            restart=self.restart(raw.get('restart'), (*path, 'restart'), subject),
            state=self.state(raw.get('state'), (*path, 'state'), subject),
            position=self.pos(path),
            param_positions={str(k): self.pos((*config_path, k)) for k in config},
        )

    def edge(self, raw: Any, index: int) -> EdgeSpec | None:
        path: Path = ('edges', index)
        if not isinstance(raw, dict):
            self.error(path, f'edges[{index}] must be a mapping, got {type(raw).__name__}')
            return None
        def end(value: Any) -> str:
            return value.strip() if isinstance(value, str) else ''

        src_guess, dst_guess = end(raw.get('from', raw.get('src'))), end(raw.get('to', raw.get('dst')))
        label = f"edge {src_guess or '?'}->{dst_guess or '?'}"
        src = end(self.alias(raw, path, ('from', 'src'), label))
        dst = end(self.alias(raw, path, ('to', 'dst'), label))
        src_port = self.alias(raw, path, ('from_port', 'src_port'), label)
        dst_port = self.alias(raw, path, ('to_port', 'dst_port'), label)
        self.check_keys(raw, path, _EDGE_KEYS, label, 'edge')
        if not src or not dst:
            missing = ' and '.join(n for n, v in (('from', src), ('to', dst)) if not v)
            self.error(path, f'edges[{index}] needs a non-empty {missing}', label, 'empty-endpoint')
        ports: list[str | None] = []
        for name, value in (('from_port', src_port), ('to_port', dst_port)):
            if value is not None and not isinstance(value, str):
                self.error((*path, name), f'{name} must be a string, got {value!r}', label, 'type')
                value = None
            ports.append(value.strip() if isinstance(value, str) and value.strip() else None)
        inbox_path = (*path, 'inbox')
        inbox = self.mapping(raw.get('inbox'), inbox_path, label, 'inbox')
        self.check_keys(inbox, inbox_path, _INBOX_KEYS, label, 'inbox')
        delivery = DeliverySpec(
            qos=self.qos(raw.get('qos'), (*path, 'qos'), label),
            overflow=self.overflow(inbox.get('overflow'), (*inbox_path, 'overflow'), label, 'inbox overflow'),
            inbox_max=self.inbox_max(inbox.get('max'), (*inbox_path, 'max'), label, 'inbox max'),
            drop_weights=self.drop_weights(inbox, inbox_path, label,
                                           ('weights', 'weight_key', 'default_weight')),
        )
        transport, problem = parse_transport(raw.get('transport'))
        if problem:
            self.error((*path, 'transport'), problem, label, 'frame-transport')
        return EdgeSpec(src, dst, ports[0], ports[1], delivery, self.pos(path), transport)


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _owner(data: Any, path: Path) -> str:
    """`node 'x'` / `edge a->b` when `path` lies inside a node or an edge, else ''."""
    if len(path) < 2 or path[0] not in ('nodes', 'edges') or not isinstance(path[1], int):
        return ''
    items = data.get(path[0])
    item = items[path[1]] if isinstance(items, list) and path[1] < len(items) else None
    if not isinstance(item, dict):
        return ''
    if path[0] == 'nodes':
        node_id = item.get('id', item.get('node_id'))
        return node_subject(node_id) if isinstance(node_id, str) and node_id else ''
    return f"edge {item.get('from', item.get('src'))}->{item.get('to', item.get('dst'))}"


def _interpolate(data: Any, reader: _Reader, env: Mapping[str, str]) -> Any:
    """Resolve `${oc.env:...}` in every string value; errors name the line."""
    for path, text in list(iter_strings(data)):
        if '${' not in text:
            continue
        try:
            value = interpolate_text(text, env)
        except InterpolationError as exc:
            reader.error(path, str(exc), _owner(data, path), code='interpolation')
            continue
        parent: Any = data
        for key in path[:-1]:
            parent = parent[key]
        if path:
            parent[path[-1]] = value
        else:
            data = value
    return data


def _version(data: Mapping[str, Any], reader: _Reader) -> bool:
    """False when the file is not a version-2 graph (the error is recorded)."""
    if 'job' in data:
        reader.error(('job',), "the v1 'job:' format is no longer supported: describe the graph as "
                     'version 2 nodes and edges', code='v1-format')
        return False
    if 'version' not in data:
        if 'nodes' in data or 'edges' in data:
            return True
        reader.error((), 'not a graph file: expected version 2 with nodes and edges', code='not-a-graph')
        return False
    version = data['version']
    if isinstance(version, bool) or version not in (SUPPORTED_VERSION, str(SUPPORTED_VERSION)):
        hint = ' (the v1 job format is no longer supported)' if version in (1, '1') else ''
        reader.error(('version',), f'unsupported graph version {version!r}: this release reads version '
                     f'{SUPPORTED_VERSION}{hint}', code='version')
        return False
    return True


def load_graph_text(
    text: str,
    file: str = '<string>',
    *,
    json_format: bool | None = None,
    env: Mapping[str, str] | None = None,
    sha256: str | None = None,
    limits: GraphLimits = DEFAULT_GRAPH_LIMITS,
) -> LoadResult:
    """Load a graph from text. `json_format` None: decide by the file name (.json) else YAML."""
    if json_format is None:
        json_format = file.lower().endswith('.json')
    try:
        check_text(text, limits.document)
        parsed = parse_text(text, json_format=json_format, limits=limits.document)
    except DocumentError as exc:
        return LoadResult(None, [_document_error(file, exc)])
    except SyntaxProblem as exc:
        return LoadResult(None, [GraphError(Position(file, exc.line or 1), str(exc), code=exc.code)])
    digest = sha256 or hashlib.sha256(text.encode('utf-8')).hexdigest()
    reader = _Reader(parsed, file, limits.max_errors)
    for path, line in parsed.duplicate_keys:
        reader.add(GraphError(Position(file, line), f'duplicate key {path[-1]!r}', code='duplicate-key'))
    data = parsed.data
    if not isinstance(data, dict):
        reader.error((), f'a graph file must be a mapping at the top level, got {type(data).__name__}',
                     code='not-a-graph')
        return reader.result(None)
    if not _version(data, reader):
        return reader.result(None)
    if not _within_limits(data, parsed, reader, limits):
        return reader.result(None)
    data = _interpolate(data, reader, os.environ if env is None else env)
    reader.check_keys(data, (), _TOP_KEYS, '', 'top-level')

    config = reader.mapping(data.get('config'), ('config',), '', 'config')
    for switch, kind in _GRAPH_CONFIG_SWITCHES.items():
        if switch in config and not isinstance(config[switch], kind):
            reader.error(('config', switch), f'config.{switch} must be a {kind.__name__}', code='type')
    namespace = data.get('namespace', DEFAULT_NAMESPACE)
    if not isinstance(namespace, str):
        reader.error(('namespace',), 'namespace must be a string', code='type')
        namespace = DEFAULT_NAMESPACE

    nodes: list[NodeSpec] = []
    raw_nodes = data.get('nodes') or []
    if not isinstance(raw_nodes, list):
        reader.error(('nodes',), 'nodes must be a list', code='structure')
        raw_nodes = []
    for index, raw in enumerate(raw_nodes):
        node = reader.node(raw, index)
        if node is not None:
            nodes.append(node)
    edges: list[EdgeSpec] = []
    raw_edges = data.get('edges') or []
    if not isinstance(raw_edges, list):
        reader.error(('edges',), 'edges must be a list', code='structure')
        raw_edges = []
    for index, raw in enumerate(raw_edges):
        edge = reader.edge(raw, index)
        if edge is not None:
            edges.append(edge)

    graph = GraphSpec(
        nodes=tuple(nodes),
        edges=tuple(edges),
        version=SUPPORTED_VERSION,
        config=config,
        namespace=namespace,
        source=file,
        sha256=digest,
        position=Position(file, 1),
        allow_cycles=config.get('allow_cycles') is True,
        state=reader.graph_state(config.get('state'), ('config', 'state')),
        blackboard=reader.blackboard(config.get('blackboard'), ('config', 'blackboard')),
        autostart=config.get('autostart') is not False,
        pace_sources=config.get('pace_sources') is True,
        pace_position=reader.pos(('config', 'pace_sources')),
    )
    return reader.result(graph)


def load_graph(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
               limits: GraphLimits = DEFAULT_GRAPH_LIMITS) -> LoadResult:
    """Load a graph file (YAML, or JSON when the name ends in .json); its size is checked before reading."""
    file = os.fspath(path)
    try:
        raw = read_file(file, limits.document)
        text = decode_text(raw)
    except OSError as exc:
        return LoadResult(None, [GraphError(Position(file), f'cannot read graph file: {exc.strerror or exc}',
                                            code='io')])
    except DocumentError as exc:
        return LoadResult(None, [_document_error(file, exc)])
    return load_graph_text(text, file, env=env, sha256=hashlib.sha256(raw).hexdigest(), limits=limits)


def _document_error(file: str, exc: DocumentError) -> GraphError:
    """A refusal of the whole file (size, encoding, NUL): file-level, at its line (1 when it has none)."""
    code = 'limit' if isinstance(exc, LimitExceeded) else 'syntax'
    return GraphError(Position(file, exc.line or 1), str(exc), code=code)


def _within_limits(data: Mapping[str, Any], parsed: ParsedText, reader: _Reader, limits: GraphLimits) -> bool:
    """Counts of nodes and edges and the size of each parameter value; False (errors recorded) when over."""
    before = len(reader.errors) + reader.unlisted
    counted = (('nodes', limits.max_nodes, 'max_nodes'), ('edges', limits.max_edges, 'max_edges'))
    for key, limit, name in counted:
        items = data.get(key)
        if isinstance(items, list) and len(items) > limit:
            reader.error((key,), f'{len(items):,} {key}: over the limit {name} = {limit:,}', code='limit')
    if len(reader.errors) + reader.unlisted > before:
        return False
    nodes = data.get('nodes')
    for index, node in enumerate(nodes if isinstance(nodes, list) else ()):
        config = node.get('config') if isinstance(node, dict) else None
        if not isinstance(config, dict):
            continue
        for param, value in config.items():
            path = ('nodes', index, 'config', param)
            values, chars = parsed.size_of(path, value)
            if values + chars > limits.max_config_value_chars:
                reader.error(path, f'parameter {param!r} is about {values + chars:,} characters: over the '
                             f'limit max_config_value_chars = {limits.max_config_value_chars:,}',
                             _owner(data, path), code='limit')
    return len(reader.errors) + reader.unlisted == before
