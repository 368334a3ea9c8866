"""Counters of one run: per node, per edge, and a latency histogram cheap enough for every packet.

These objects sit on the data path (one attribute increment per packet), so they are plain slotted
classes with single writers: a node's own thread counts consumed/produced, the thread that offers
into an inbox counts the edge. Readers (progress line, report) only take snapshots; a snapshot
taken while the run goes on may be one packet behind, never inconsistent in type.

Metric names follow the upstream run report (`node.<id>.consumed` ...); see observability/report.py.
"""

from __future__ import annotations

from typing import Any

from schnitzel_stream_ros.observability.bounded import COUNTER_NAMES_REFUSED, MAX_COUNTER_NAMES

# Histogram buckets: 8 sub-buckets per power of two (~9 % resolution), like HdrHistogram with 3
# significant bits. Bucket index from integer bit operations only: no float math per packet.
_SUB_BITS = 3
_SUB = 1 << _SUB_BITS
_BUCKETS = 64 * _SUB


def _bucket_of(ns: int) -> int:
    if ns < _SUB:
        return max(ns, 0)
    bits = ns.bit_length()
    index = ((bits - _SUB_BITS) << _SUB_BITS) | ((ns >> (bits - _SUB_BITS - 1)) & (_SUB - 1))
    return index if index < _BUCKETS else _BUCKETS - 1


def _bucket_floor(index: int) -> int:
    if index < _SUB:
        return index
    exp, sub = divmod(index, _SUB)
    return (_SUB | sub) << (exp - 1)


def percentiles_ms(counts: list[int], max_ns: int, qs: tuple[float, ...]) -> tuple[float | None, ...]:
    """Several q-quantiles (ascending) of bucket counts in one pass, as LatencyHistogram.percentile_ms."""
    total = sum(counts)
    if not total:
        return (None,) * len(qs)
    ranks = [max(1, round(q * total)) for q in qs]
    found: list[float | None] = []
    seen = 0
    for index, n in enumerate(counts):
        if not n:
            continue
        seen += n
        while len(found) < len(ranks) and seen >= ranks[len(found)]:
            low = _bucket_floor(index)
            high = _bucket_floor(index + 1) if index + 1 < _BUCKETS else low
            found.append(round(min((low + high) / 2, max_ns) / 1e6, 6))
        if len(found) == len(ranks):
            break
    found += [round(max_ns / 1e6, 6)] * (len(ranks) - len(found))
    return tuple(found)


class LatencyHistogram:
    """Log-bucketed latencies in nanoseconds; percentiles within ~9 % of the true value."""

    __slots__ = ('count', 'counts', 'max_ns')

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        # _bucket_of, inlined: this runs for every packet on every edge
        if ns < _SUB:
            index = ns if ns > 0 else 0
        else:
            bits = ns.bit_length()
            index = ((bits - _SUB_BITS) << _SUB_BITS) | ((ns >> (bits - _SUB_BITS - 1)) & (_SUB - 1))
            if index >= _BUCKETS:
                index = _BUCKETS - 1
        self.counts[index] += 1
        self.count += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def percentile_ms(self, q: float) -> float | None:
        """The q-quantile (0 < q <= 1) in milliseconds (bucket middle), None without samples."""
        if not self.count:
            return None
        rank = max(1, round(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                low = _bucket_floor(index)
                high = _bucket_floor(index + 1) if index + 1 < _BUCKETS else low
                return round(min((low + high) / 2, self.max_ns) / 1e6, 6)
        return round(self.max_ns / 1e6, 6)

    def merge(self, counts: list[int], max_ns: int) -> None:
        """Add another histogram's buckets (reports of several containers)."""
        for i, n in enumerate(counts):
            self.counts[i] += n
        self.count += sum(counts)
        self.max_ns = max(self.max_ns, max_ns)


class EdgeMetrics:
    """One subscription of one input port to one topic: what came over it and what was dropped.

    `packets` counts offers into the inbox (accepted or not), `dropped` the drops of packets that came
    over this edge (also when drop_oldest evicted them later), `latency` the time from emission until
    the consuming node took the packet out of its inbox.
    """

    __slots__ = ('dropped', 'dst', 'dst_port', 'latency', 'packets', 'topic')

    def __init__(self, topic: str, dst: str, dst_port: str) -> None:
        self.topic = topic
        self.dst = dst
        self.dst_port = dst_port
        self.packets = 0
        self.dropped = 0
        self.latency = LatencyHistogram()

    def snapshot(self, inbox_depth: int, inbox_depth_max: int) -> dict[str, Any]:
        return {
            'topic': self.topic,
            'dst': self.dst,
            'dst_port': self.dst_port,
            'packets': self.packets,
            'dropped_total': self.dropped,
            'inbox_depth': inbox_depth,
            'inbox_depth_max': inbox_depth_max,
            'latency_counts': list(self.latency.counts),
            'latency_max_ns': self.latency.max_ns,
        }


class NodeMetrics:
    """Counters of one node: upstream names plus everything the plugin counts itself."""

    __slots__ = ('consumed', 'counters', 'errors', 'is_sink', 'is_source', 'node_id', 'produced')

    def __init__(self, node_id: str, is_source: bool, is_sink: bool) -> None:
        self.node_id = node_id
        self.is_source = is_source
        self.is_sink = is_sink
        self.consumed = 0
        self.produced = 0
        self.errors = 0  # exceptions from the plugin that the live runtime caught and survived
        self.counters: dict[str, float] = {}  # plugin counters and gauges, by name

    def count(self, name: str, n: float = 1) -> None:
        counters = self.counters
        if name in counters or len(counters) < MAX_COUNTER_NAMES:
            counters[name] = counters.get(name, 0) + n
        else:  # a name made of input (observability/bounded.py): counted, not kept
            counters[COUNTER_NAMES_REFUSED] = counters.get(COUNTER_NAMES_REFUSED, 0) + 1

    def gauge(self, name: str, value: float) -> None:
        counters = self.counters
        if name in counters or len(counters) < MAX_COUNTER_NAMES:
            counters[name] = value
        else:
            counters[COUNTER_NAMES_REFUSED] = counters.get(COUNTER_NAMES_REFUSED, 0) + 1

    def snapshot(self, inbox_dropped: int) -> dict[str, Any]:
        return {
            'consumed': self.consumed,
            'produced': self.produced,
            'is_source': int(self.is_source),
            'is_sink': int(self.is_sink),
            'inbox_dropped_total': inbox_dropped,
            'errors_total': self.errors,
            'counters': dict(self.counters),
        }
