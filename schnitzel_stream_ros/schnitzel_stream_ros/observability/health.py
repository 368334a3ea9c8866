"""Health of a running container: metric snapshots in, ROS diagnostic levels and values out.

This module is the whole rule book of `/diagnostics` (docs/diagnostics.md) and knows nothing of
ROS or threads: `HealthMonitor.update()` takes the container snapshot the runtime already makes
(observability/snapshot.py) plus the few facts a snapshot does not carry (`NodeView`: inbox sizes
and policies, the stall threshold), compares it with the previous sample, and returns one `Status`
per node, one for the container and one per edge. runtime/diagnostics.py turns them into
`diagnostic_msgs/DiagnosticArray` messages. So every rule is unit-tested with plain dicts.

Levels come from conditions over time, never from one unlucky sample:
- a counter that means "failed" must have *increased*: errors (the plugin raised) -> ERROR, drops,
  failure counters, stalls -> WARN; the level holds for `hold_sec` after the last increase, so a
  1 Hz sampler (rqt_robot_monitor, the aggregator) sees a short burst;
- states last as long as they are true: a source without a packet for longer than its stall
  threshold, a camera not connected, a circuit breaker open, an inbox full for `full_sec`, a
  delivery backlog older than `backlog_age_sec`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.observability.metrics import percentiles_ms
from schnitzel_stream_ros.observability.report import FAILURE_COUNTER_SUFFIXES
from schnitzel_stream_ros.plugin import Plugin

#: Seconds between two samples (/diagnostics messages) unless configured.
DEFAULT_PERIOD_SEC = 1.0
#: diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}

#: Plugin counters whose increase is a WARN besides the failure counters of the run report
#: (`restarts_total`: the node's restart policy gave it a fresh plugin instance, graph/restart.py;
#: `budget_dropped_total`: a queue sink dropped events at its budget, as the graph chose).
WARN_COUNTERS = ('stalls_total', 'restarts_total', 'budget_dropped_total')
#: Gauge set to 1 when a node's restart policy isolated it (runtime/node_restart.py).
ISOLATED_GAUGE = 'isolated'
#: Breaker gauge of the durable forwarder (delivery/breaker.py STATE_CODE): 1 open, 2 half-open.
BREAKER_GAUGE = 'breaker_state_code'
BREAKER_NAMES = {1: 'open', 2: 'half-open'}
#: A plugin parameter of this name is the source's own stall threshold (live cameras have it).
STALL_PARAM = 'timeout_sec'
#: Durable forwarder gauge: why it holds packets instead of committing them (back-pressure upstream).
STORAGE_BLOCKED_GAUGE = 'storage_blocked_code'
STORAGE_BLOCKED_NAMES = {
    1: 'a row/byte limit of the queue',
    2: 'the free-space reserve of its filesystem',
    3: 'a full disk',
}


def stall_threshold(plugin_cls: type[Plugin], params: Mapping[str, Any], default_sec: float) -> float:
    """Seconds without a packet before a source counts as stalled (0 = no rule), in this order: the
    plugin's `timeout_sec` parameter (live cameras), its `STALL_TIMEOUT_SEC` declaration, the
    container default — stretched to three periods of a slow `rate_hz` source."""
    own = params.get(STALL_PARAM) if STALL_PARAM in plugin_cls.param_schema() else None
    if isinstance(own, int | float) and own > 0:
        return float(own)
    if plugin_cls.STALL_TIMEOUT_SEC is not None:
        return max(0.0, float(plugin_cls.STALL_TIMEOUT_SEC))
    rate = params.get('rate_hz')
    if default_sec > 0 and isinstance(rate, int | float) and rate > 0:
        return max(default_sec, 3.0 / rate)
    return default_sec


@dataclass(frozen=True)
class HealthRules:
    """Thresholds; the defaults are documented in docs/diagnostics.md."""

    hold_sec: float = 10.0  # a level raised by a counter increase stays this long
    stall_sec: float = 10.0  # sources without a stall threshold of their own (0: no rule for them)
    full_sec: float = 5.0  # an inbox full (not keep-freshest) this long -> WARN
    backlog_age_sec: float = 10.0  # oldest undelivered event older than this -> WARN
    trend_sec: float = 30.0  # window of the backlog trend (growing / draining)


@dataclass(frozen=True)
class InboxView:
    """One input port's inbox as it is now."""

    port: str
    maxsize: int
    overflow: str
    depth: int
    dropped_total: int

    @property
    def keep_freshest(self) -> bool:
        """max 1 + drop_oldest: a detector behind a camera; shedding is the design, not a fault."""
        return self.maxsize == 1 and self.overflow == 'drop_oldest'


@dataclass(frozen=True)
class NodeView:
    """What the snapshot does not say about a node (read from the live objects by the runtime)."""

    fq_name: str
    plugin: str
    started: bool = True
    stall_sec: float = 0.0  # a source without a packet this long is stalled; 0 = no rule
    inboxes: tuple[InboxView, ...] = ()


@dataclass(frozen=True)
class Status:
    """One diagnostic_msgs/DiagnosticStatus, ROS-free."""

    name: str
    level: int
    message: str
    hardware_id: str
    values: tuple[tuple[str, str], ...]

    def value(self, key: str) -> str | None:
        return next((v for k, v in self.values if k == key), None)


@dataclass(frozen=True)
class Health:
    statuses: list[Status]  # the container first, then its nodes
    edges: list[Status]


def fmt(value: Any) -> str:
    """A KeyValue value: integers without '.0', floats to 3 decimals, None as empty text."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else str(round(value, 3))
    return str(value)


def decide(findings: Iterable[tuple[int, str]], ok_message: str = 'OK') -> tuple[int, str]:
    """The highest level of the findings and the reasons at that level (a short message)."""
    findings = list(findings)
    if not findings:
        return OK, ok_message
    level = max(level for level, _ in findings)
    reasons = [text for lvl, text in findings if lvl == level]
    return level, '; '.join(reasons[:3]) + (f' (+{len(reasons) - 3} more)' if len(reasons) > 3 else '')


def _number(counters: Mapping[str, Any], name: str) -> float | None:
    """A plugin gauge as a number, None when absent or not a number (plugins can gauge anything)."""
    value = counters.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        return None
    return float(value)


def is_error_counter(name: str) -> bool:
    return name == 'errors_total' or name.endswith('_errors_total')


def is_warn_counter(name: str) -> bool:
    return name.endswith(FAILURE_COUNTER_SUFFIXES) or name in WARN_COUNTERS


def window_percentiles(now_counts: list[int], before: list[int] | None, max_ns: int) -> tuple[Any, Any]:
    """p50/p99 (ms) of the latencies recorded since `before` (None: since the start)."""
    counts = now_counts if before is None else [a - b for a, b in zip(now_counts, before, strict=False)]
    if before is not None and any(n < 0 for n in counts):  # restarted histogram (node reloaded): whole
        counts = now_counts
    p50, p99 = percentiles_ms(counts, max_ns, (0.50, 0.99))
    return p50, p99


@dataclass
class _Increase:
    """A counter's last value and when it last went up (counters start at 0 when a node loads, so a
    first sample above 0 is an increase: errors of the first second are not missed)."""

    value: float = 0.0
    at: float | None = None
    delta: float = 0.0  # how much it rose within the hold window

    def observe(self, value: float, now: float, hold_sec: float) -> None:
        if self.at is not None and now - self.at > hold_sec:
            self.delta = 0.0
        if value > self.value:
            self.delta += value - self.value
            self.at = now
        self.value = value

    def recent(self, now: float, hold_sec: float) -> bool:
        return self.at is not None and now - self.at <= hold_sec


@dataclass
class _NodeMemory:
    t: float | None = None
    consumed: int = 0
    produced: int = 0
    produced_at: float | None = None  # when `produced` last changed (or the source was first seen started)
    errors: _Increase = field(default_factory=_Increase)
    drops: _Increase = field(default_factory=_Increase)
    counters: dict[str, _Increase] = field(default_factory=dict)
    full_since: dict[str, float] = field(default_factory=dict)
    breaker_since: float | None = None
    depths: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=512))


@dataclass
class _EdgeMemory:
    t: float | None = None
    packets: int = 0
    latency: list[int] | None = None  # histogram counts of the previous sample
    recorded: int = -1  # how many latencies those counts held
    totals: tuple[Any, Any] | None = None  # p50/p99 since the start, as of the previous sample
    drops: _Increase = field(default_factory=_Increase)


@dataclass
class _ContainerMemory:
    transport_failures: _Increase = field(default_factory=_Increase)
    warnings: _Increase = field(default_factory=_Increase)
    cpu_sec: float = 0.0  # process CPU time at the previous sample
    cpu_at: float | None = None


def _rate(now_value: float, before: float, now: float, then: float | None) -> float | None:
    if then is None or now <= then:
        return None
    return max(0.0, (now_value - before) / (now - then))


class HealthMonitor:
    """Keeps the previous sample of every node and edge of one container; `update()` once per tick."""

    def __init__(self, container: str, rules: HealthRules | None = None) -> None:
        self.container = container  # fully qualified container node name
        self.rules = rules or HealthRules()
        self._nodes: dict[str, _NodeMemory] = {}
        self._edges: dict[tuple[str, str, str], _EdgeMemory] = {}
        self._self = _ContainerMemory()

    def update(self, now: float, snapshot: Mapping[str, Any], views: Mapping[str, NodeView],
               cpu_sec: float | None = None) -> Health:
        """One sample: `now` from a monotonic clock, `snapshot` from Container.snapshot(), `cpu_sec`
        the process's CPU time (time.process_time(): all its threads), for `cpu_percent`."""
        state = snapshot.get('state', {})
        source_end: Mapping[str, str] = state.get('source_end', {})
        edges_by_dst: dict[str, list[Mapping[str, Any]]] = {}
        for row in snapshot.get('edges', []):
            edges_by_dst.setdefault(row['dst'], []).append(row)
        edge_statuses, edge_latency = self._edges_health(now, snapshot.get('edges', []), views)
        node_statuses = []
        nodes = snapshot.get('nodes', {})
        for node_id, values in nodes.items():
            view = views.get(node_id) or NodeView(fq_name=node_id, plugin='')
            memory = self._nodes.setdefault(node_id, _NodeMemory())
            try:
                status = self._node_health(
                    now, node_id, values, view, memory, source_end.get(node_id), edge_latency.get(node_id)
                )
            except Exception as exc:  # one odd gauge must not cost the other nodes their status
                status = Status(
                    f'{self.container}: {node_id}',
                    WARN,
                    f'diagnostics could not evaluate this node: {type(exc).__name__}: {exc}'[:200],
                    view.fq_name,
                    (('plugin', view.plugin),),
                )
            node_statuses.append(status)
        for gone in set(self._nodes) - set(nodes):  # unloaded nodes: forget them (bounded memory)
            del self._nodes[gone]
        container = self._container_health(now, snapshot, nodes, cpu_sec)
        return Health([container, *node_statuses], edge_statuses)

    # -- container ------------------------------------------------------------------------------
    def _container_health(self, now: float, snapshot: Mapping[str, Any], nodes: Mapping[str, Any],
                          cpu_sec: float | None = None) -> Status:
        rules = self.rules
        state = snapshot.get('state', {})
        transport = snapshot.get('transport', {})
        memory = self._self
        failures = transport.get('encode_failed_total', 0) + transport.get('decode_failed_total', 0)
        memory.transport_failures.observe(failures, now, rules.hold_sec)
        warnings = list(state.get('warnings', []))
        memory.warnings.observe(len(warnings), now, rules.hold_sec)
        findings: list[tuple[int, str]] = []
        fatal = list(state.get('fatal', []))
        if fatal:
            findings.append((ERROR, f'fatal: {fatal[0]}'))
        if memory.transport_failures.recent(now, rules.hold_sec):
            findings.append((WARN, f'{fmt(memory.transport_failures.delta)} packets failed to encode/decode'))
        if memory.warnings.recent(now, rules.hold_sec) and warnings:
            findings.append((WARN, warnings[-1]))
        if state.get('stopped'):
            ok = 'stopping'
        elif not state.get('started', True):
            ok = 'waiting for start'
        else:
            ok = f'running {len(nodes)} nodes'
        level, message = decide(findings, ok)
        sources = sum(1 for v in nodes.values() if v.get('is_source'))
        values = [
            ('nodes', len(nodes)),
            ('sources', sources),
            ('sources_ended', len(state.get('source_end', {}))),
            ('started', bool(state.get('started', True))),
            ('stopped', bool(state.get('stopped', False))),
            ('fatal_errors', len(fatal)),
            ('warnings', len(warnings)),
            ('budget_used', state.get('budget_used', 0)),
            # the process's CPU over the last period, in % of one core (a controller's metric)
            ('cpu_percent', self._cpu_percent(now, cpu_sec)),
            *((f'transport.{k}', v) for k, v in sorted(transport.items())),
        ]
        return Status(self.container, level, message, self.container, tuple((k, fmt(v)) for k, v in values))

    def _cpu_percent(self, now: float, cpu_sec: float | None) -> float | None:
        memory = self._self
        if cpu_sec is None:
            return None
        rate = _rate(cpu_sec, memory.cpu_sec, now, memory.cpu_at)
        memory.cpu_sec, memory.cpu_at = cpu_sec, now
        return None if rate is None else round(rate * 100.0, 1)

    # -- nodes ----------------------------------------------------------------------------------
    def _node_health(
        self,
        now: float,
        node_id: str,
        values: Mapping[str, Any],
        view: NodeView,
        memory: _NodeMemory,
        end_reason: str | None,
        latency: tuple[Any, Any] | None,
    ) -> Status:
        rules = self.rules
        hold = rules.hold_sec
        counters: Mapping[str, Any] = values.get('counters', {})
        is_source = bool(values.get('is_source'))
        consumed, produced = values.get('consumed', 0), values.get('produced', 0)
        errors = values.get('errors_total', 0) + sum(
            v for k, v in counters.items() if is_error_counter(k) and isinstance(v, int | float)
        )
        memory.errors.observe(errors, now, hold)
        drops = sum(i.dropped_total for i in view.inboxes if not i.keep_freshest)
        shed = sum(i.dropped_total for i in view.inboxes if i.keep_freshest)
        if not view.inboxes:  # no view of the inboxes: every drop counts
            drops = values.get('inbox_dropped_total', 0)
        memory.drops.observe(drops, now, hold)
        for name, value in counters.items():
            if is_warn_counter(name) and isinstance(value, int | float):
                memory.counters.setdefault(name, _Increase()).observe(value, now, hold)
        consumed_rate = _rate(consumed, memory.consumed, now, memory.t)
        produced_rate = _rate(produced, memory.produced, now, memory.t)
        if produced != memory.produced or (memory.produced_at is None and view.started):
            memory.produced_at = now
        memory.t, memory.consumed, memory.produced = now, consumed, produced

        findings: list[tuple[int, str]] = []
        last = f'in the last {fmt(hold)} s'
        if memory.errors.recent(now, hold):
            findings.append((ERROR, f'plugin raised {fmt(memory.errors.delta)} times {last}'))
        if memory.drops.recent(now, hold):
            findings.append((WARN, f'inbox dropped {fmt(memory.drops.delta)} packets {last}'))
        for name, increase in sorted(memory.counters.items()):
            if increase.recent(now, hold):
                findings.append((WARN, f'{name} +{fmt(increase.delta)} {last}'))
        for inbox in view.inboxes:
            if inbox.depth >= inbox.maxsize and not inbox.keep_freshest:
                since = memory.full_since.setdefault(inbox.port, now)
                if now - since >= rules.full_sec:
                    findings.append(
                        (WARN, f"inbox '{inbox.port}' full ({inbox.depth}/{inbox.maxsize}, "
                               f'{inbox.overflow}) for {now - since:.0f} s')
                    )
            else:
                memory.full_since.pop(inbox.port, None)
        if _number(counters, ISOLATED_GAUGE) == 1:
            findings.append((ERROR, 'isolated by its restart policy: its plugin is no longer called'))
        last_packet_age = None
        if is_source:
            findings += self._source_findings(now, view, memory, counters, end_reason)
            if memory.produced_at is not None:
                last_packet_age = now - memory.produced_at
        findings += self._delivery_findings(now, memory, counters)

        ok = f'producing {produced_rate:.1f}/s' if is_source and produced_rate is not None else 'OK'
        if is_source and end_reason and end_reason != 'failed':
            ok = f'source ended ({end_reason})'
        level, message = decide(findings, ok)
        p50, p99 = latency if latency is not None else (None, None)
        depth = sum(i.depth for i in view.inboxes)
        rows: list[tuple[str, Any]] = [
            ('plugin', view.plugin),
            ('role', 'source' if is_source else 'sink' if values.get('is_sink') else 'node'),
            ('produced', produced),
            ('produced_per_sec', None if produced_rate is None else round(produced_rate, 2)),
            ('errors_total', errors),
        ]
        if view.inboxes or not is_source:  # what came in: not for sources without inputs
            rows += [
                ('consumed', consumed),
                ('consumed_per_sec', None if consumed_rate is None else round(consumed_rate, 2)),
                ('inbox_dropped_total', values.get('inbox_dropped_total', 0)),
                ('inbox_shed_total', shed),
                ('inbox_depth', depth),
                ('inbox_max', sum(i.maxsize for i in view.inboxes)),
                ('latency_p50_ms', p50),
                ('latency_p99_ms', p99),
            ]
        if is_source:
            rows += [
                ('last_packet_age_sec', None if last_packet_age is None else round(last_packet_age, 1)),
                ('stall_timeout_sec', view.stall_sec or None),
                ('source_end', end_reason or ''),
            ]
        shown = {k for k, _ in rows}
        rows += [(k, v) for k, v in sorted(counters.items()) if k not in shown]
        return Status(
            f'{self.container}: {node_id}',
            level,
            message,
            view.fq_name,
            tuple((k, fmt(v)) for k, v in rows),
        )

    def _source_findings(
        self,
        now: float,
        view: NodeView,
        memory: _NodeMemory,
        counters: Mapping[str, Any],
        end_reason: str | None,
    ) -> list[tuple[int, str]]:
        if end_reason == 'failed':
            return [(ERROR, 'source failed: produce() raised and the source ended')]
        if (_number(counters, 'gave_up_total') or 0) > 0:
            return [(ERROR, 'gave up reconnecting')]
        if end_reason or not view.started:
            return []
        findings: list[tuple[int, str]] = []
        if _number(counters, 'connected') == 0:
            findings.append((WARN, 'not connected'))
        if view.stall_sec > 0 and memory.produced_at is not None:
            silent = now - memory.produced_at
            if silent > view.stall_sec:
                findings.append(
                    (WARN, f'stalled: no packet for {silent:.1f} s (timeout {fmt(view.stall_sec)} s)')
                )
        return findings

    def _delivery_findings(
        self, now: float, memory: _NodeMemory, counters: Mapping[str, Any]
    ) -> list[tuple[int, str]]:
        """Durable delivery (DurableForwarderSink gauges): breaker open, backlog not delivered."""
        rules = self.rules
        findings: list[tuple[int, str]] = []
        breaker = _number(counters, BREAKER_GAUGE)
        if breaker in BREAKER_NAMES:
            if memory.breaker_since is None:
                memory.breaker_since = now
            findings.append(
                (ERROR, f'backend unreachable: circuit {BREAKER_NAMES[int(breaker)]} '
                        f'for {now - memory.breaker_since:.0f} s')
            )
        else:
            memory.breaker_since = None
        blocked = _number(counters, STORAGE_BLOCKED_GAUGE)
        if blocked in STORAGE_BLOCKED_NAMES:
            held = _number(counters, 'storage_held_packets') or 0
            findings.append(
                (ERROR, f'queue cannot take events: {STORAGE_BLOCKED_NAMES[int(blocked)]}; holding '
                        f'{fmt(held)} packets, the inbox and the producers upstream are held back')
            )
        depth = _number(counters, 'queue_depth')
        if depth is not None:
            memory.depths.append((now, float(depth)))
            while memory.depths and now - memory.depths[0][0] > rules.trend_sec:
                memory.depths.popleft()
            age = _number(counters, 'oldest_age_sec') or 0.0
            if age > rules.backlog_age_sec:
                then = memory.depths[0][1]
                peak = max(d for _, d in memory.depths)
                # growing: at the window's high and above its start; draining: below the high
                trend = 'draining' if depth < peak else 'growing' if depth > then else 'not moving'
                change = depth - then
                findings.append(
                    (WARN, f'delivery backlog {trend}: {fmt(depth)} events, oldest {age:.0f} s '
                           f'({"+" if change > 0 else ""}{fmt(change)} in {now - memory.depths[0][0]:.0f} s)')
                )
        return findings

    # -- edges ----------------------------------------------------------------------------------
    def _edges_health(
        self, now: float, rows: Iterable[Mapping[str, Any]], views: Mapping[str, NodeView]
    ) -> tuple[list[Status], dict[str, tuple[Any, Any]]]:
        """Edge statuses, and per destination node the worst window latency of its inputs."""
        hold = self.rules.hold_sec
        statuses: list[Status] = []
        worst: dict[str, tuple[Any, Any]] = {}
        seen: set[tuple[str, str, str]] = set()
        for row in rows:
            key = (row['topic'], row['dst'], row['dst_port'])
            seen.add(key)
            memory = self._edges.setdefault(key, _EdgeMemory())
            view = views.get(row['dst'])
            inbox = next((i for i in view.inboxes if i.port == row['dst_port']), None) if view else None
            freshest = inbox is not None and inbox.keep_freshest
            counts = row.get('latency_counts', [])
            recorded = sum(counts)
            if recorded != memory.recorded or memory.totals is None:  # idle edges cost one sum()
                p50, p99 = window_percentiles(counts, memory.latency, row.get('latency_max_ns', 0))
                memory.totals = window_percentiles(counts, None, row.get('latency_max_ns', 0))
            else:
                p50 = p99 = None
            p50_all, p99_all = memory.totals
            memory.recorded = recorded
            rate = _rate(row['packets'], memory.packets, now, memory.t)
            memory.drops.observe(row['dropped_total'], now, hold)
            memory.t, memory.packets, memory.latency = now, row['packets'], counts
            if p99 is not None:
                current = worst.get(row['dst'])
                if current is None or current[1] is None or p99 > current[1]:
                    worst[row['dst']] = (p50, p99)
            findings: list[tuple[int, str]] = []
            if memory.drops.recent(now, hold):
                text = f'{fmt(memory.drops.delta)} packets dropped in the last {fmt(hold)} s'
                findings.append((OK, f'shedding (keep-freshest): {text}') if freshest else (WARN, text))
            level, message = decide(findings)
            values: list[tuple[str, Any]] = [
                ('topic', row['topic']),
                ('dst', row['dst']),
                ('dst_port', row['dst_port']),
                ('packets', row['packets']),
                ('packets_per_sec', None if rate is None else round(rate, 2)),
                ('dropped_total', row['dropped_total']),
                ('dropped_recent', memory.drops.delta if memory.drops.recent(now, hold) else 0),
                ('inbox_depth', row.get('inbox_depth', 0)),
                ('inbox_depth_max', row.get('inbox_depth_max', 0)),
                ('inbox_max', inbox.maxsize if inbox else None),
                ('overflow', inbox.overflow if inbox else ''),
                ('latency_p50_ms', p50),
                ('latency_p99_ms', p99),
                ('latency_p50_ms_total', p50_all),
                ('latency_p99_ms_total', p99_all),
            ]
            statuses.append(
                Status(
                    f'{self.container}: {row["topic"]} -> {row["dst"]}.{row["dst_port"]}',
                    level,
                    message,
                    view.fq_name if view else row['dst'],
                    tuple((k, fmt(v)) for k, v in values),
                )
            )
        for gone in set(self._edges) - seen:
            del self._edges[gone]
        return statuses, worst
