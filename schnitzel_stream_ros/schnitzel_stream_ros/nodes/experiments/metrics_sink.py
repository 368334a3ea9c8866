"""BackpressureMetricsSink: upstream's benchmark sink — one JSON line per packet that got through.

Each line, as upstream's: {node_id, packet_id, seq, group_id, source_id, kind, logical_ts_ms,
latency_ms, observed_mono_ns, emitted_mono_ns, recovery_marker}; latency_ms = observed - emitted
(CLOCK_MONOTONIC, shared by every process of the machine, or the bench's virtual clock: clock.py),
null when the packet carries no emission time. The benchmark (bench/backpressure_fairness.py)
computes every metric from these lines and the run's counters. `group_weights` is read by the
benchmark's harm metric, not here.

Bounded: the file is truncated at start (one file per run, as upstream) and stops growing at
`max_bytes`; lines beyond are counted (`lines_dropped_total`), never written half.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.nodes.experiments import clock
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value: Any) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) and value >= 0 else 0.0


class BackpressureMetricsSink(Plugin):
    """Write one latency line per observed packet (JSONL) for the benchmark's metrics."""

    ROLE = Role.SINK
    INPUTS = (Port('in', frozenset({Kind.EVENT})),)
    OUTPUTS = (Port('out', frozenset({Kind.EVENT}), description='the packets (forward: true)'),)
    PARAMS = (
        Param('output_path', str, description='JSONL file of this run (truncated at start)'),
        Param('flush', bool, True, 'flush after every line'),
        Param('forward', bool, False, 'pass packets on to `out`'),
        Param('group_weights', dict, {}, '{group: weight} of the harm metric (read by the benchmark)'),
        Param('max_bytes', int, 512 * 1024 * 1024, 'the file stops growing here', min=1024),
    )

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]):
        return cls.INPUTS, (cls.OUTPUTS if params.get('forward') else ())

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        return [] if params['output_path'].strip() else ["parameter 'output_path': must not be empty"]

    def setup(self) -> None:
        path = Path(self.params['output_path'])
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open('w', encoding='utf-8')
        self.size = 0

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        now = clock.now_ns()
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        meta = packet.meta
        emitted = max(0, _int(meta.get('emitted_mono_ns'), 0))
        marker = meta.get('recovery_marker') is True
        if marker:
            self.count('recovery_marker_seen_total')
        line = json.dumps({
            'node_id': self.node_id, 'packet_id': packet.packet_id,
            'seq': _int(payload.get('seq', meta.get('seq', -1)), -1),
            'group_id': str(payload.get('group_id', meta.get('group_id', 'unknown')))[:256],
            'source_id': packet.source_id, 'kind': packet.kind,
            'logical_ts_ms': _float(payload.get('logical_ts_ms')),
            'latency_ms': (now - emitted) / 1e6 if emitted > 0 else None,
            'observed_mono_ns': now, 'emitted_mono_ns': emitted, 'recovery_marker': marker,
        }, ensure_ascii=False) + '\n'
        if self.size + len(line) > self.params['max_bytes']:
            self.count('lines_dropped_total')
        else:
            self.file.write(line)
            self.size += len(line)
            if self.params['flush']:
                self.file.flush()
            self.count('written_total')
        return packet if self.params['forward'] else None

    def close(self) -> None:
        file = getattr(self, 'file', None)
        if file is not None:
            file.close()
