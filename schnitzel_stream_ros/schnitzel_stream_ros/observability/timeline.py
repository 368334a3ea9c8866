"""A run's metrics over time: one JSON line per interval, for plots and live dashboards.

The run report is the end state; operators also want to see how a run went — fps dropping when
a camera stalls, latency growing while the backend is down. The runner feeds every progress
snapshot here; at most once per `interval_sec` a line is appended:

    {"t": 12.0, "nodes": {"cam0": {"produced": 120, "consumed": 0, "rate": 10.0, "consumed_rate": 0.0,
                        "counters": {...}}},
     "edges": {"cam0.out->det0.in": {"packets": 120, "rate": 10.0, "latency_p50_ms": 0.2,
                                     "latency_p99_ms": 1.1}}}

Rates and latency percentiles are those of the interval since the previous line (latency from
the difference of the cumulative histograms), not of the whole run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.observability.metrics import LatencyHistogram
from schnitzel_stream_ros.observability.rotating_file import RotatingLines

#: A timeline line is ~0.5-5 kB a second: 32 MiB is hours of a large graph; 3 old files are kept.
TIMELINE_MAX_BYTES = 32 << 20
TIMELINE_KEEP = 3


def last_complete_line(path: Path) -> dict[str, Any] | None:
    """The newest complete line of a timeline another process is writing (None: no file or no line yet)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written
    return None


class TimelineWriter:
    def __init__(
        self,
        path: str | Path,
        *,
        interval_sec: float = 1.0,
        labels: Mapping[tuple, str] | None = None,
        max_bytes: int = TIMELINE_MAX_BYTES,
        keep: int = TIMELINE_KEEP,
    ) -> None:
        self.path = Path(path)
        self._out = RotatingLines(self.path, max_bytes=max_bytes, keep=keep, truncate=True)
        self.interval = interval_sec
        self.labels = dict(labels or {})
        self._t0 = time.monotonic()
        self._last_t: float | None = None
        self._last_counts: dict[str, tuple[float, float]] = {}
        self._last_edges: dict[str, tuple[int, list[int]]] = {}

    def record(self, snapshots: Iterable[Mapping[str, Any]], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._last_t is not None and now - self._last_t < self.interval:
            return
        dt = max(now - (self._last_t if self._last_t is not None else self._t0), 1e-6)
        self._last_t = now
        nodes: dict[str, Any] = {}
        edges: dict[str, Any] = {}
        for snap in snapshots:
            for node_id, values in snap.get('nodes', {}).items():
                produced, consumed = values.get('produced', 0), values.get('consumed', 0)
                last_produced, last_consumed = self._last_counts.get(node_id, (0, 0))
                nodes[node_id] = {
                    'produced': produced,
                    'consumed': consumed,
                    'rate': round((produced - last_produced) / dt, 3),
                    'consumed_rate': round((consumed - last_consumed) / dt, 3),
                    'counters': values.get('counters', {}),
                }
                self._last_counts[node_id] = (produced, consumed)
            for row in snap.get('edges', []):
                key = (row['topic'], row['dst'], row['dst_port'])
                label = self.labels.get(key, f'{row["topic"]}->{row["dst"]}.{row["dst_port"]}')
                edges[label] = self._edge_interval(label, row, dt)
        # nodes and edges that went (hot-replace, an unloaded node): forget them, the memory stays bounded
        for gone in set(self._last_counts) - set(nodes):
            del self._last_counts[gone]
        for gone in set(self._last_edges) - set(edges):
            del self._last_edges[gone]
        line = {'t': round(now - self._t0, 3), 'nodes': nodes, 'edges': edges}
        self._out.write(json.dumps(line, separators=(',', ':')))

    def close(self) -> None:
        self._out.close()

    def counts(self) -> dict[str, int]:
        """Rotations of the timeline file and old files deleted by its retention (run report `files`)."""
        return {'rotations': self._out.rotations, 'deleted_files': self._out.deleted}

    def _edge_interval(self, label: str, row: Mapping[str, Any], dt: float) -> dict[str, Any]:
        packets = int(row.get('packets', 0))
        counts = list(row.get('latency_counts', []))
        last_packets, last_counts = self._last_edges.get(label, (0, [0] * len(counts)))
        self._last_edges[label] = (packets, counts)
        interval = LatencyHistogram()
        last_counts = last_counts + [0] * (len(counts) - len(last_counts))
        diff = [c - p for c, p in zip(counts, last_counts, strict=True)]
        interval.merge(diff, int(row.get('latency_max_ns', 0)))
        return {
            'packets': packets,
            'rate': round((packets - last_packets) / dt, 3),
            'latency_p50_ms': interval.percentile_ms(0.50),
            'latency_p99_ms': interval.percentile_ms(0.99),
        }
