"""LatencyProbe: how old packets are when they get here, as a metric a controller can hold.

A pass-through node: for every packet, latency = now - the packet's `ts` (a live camera stamps the
capture time, and detections and events keep it), kept for the last `window_sec` (at most
MAX_SAMPLES). Every `every_sec` it updates the gauges `age_p50_ms`, `age_p99_ms` and
`rate_per_sec` (named apart from the runtime's own `latency_p99_ms` of a node's status, which is the
wait in its inbox; /diagnostics shows them as `<node>.age_p99_ms`, and an AutonomicController
reads them) and, when its `metrics` port is connected, emits them as one `metrics` packet (a PID
loop's measurement). Wall clock of this host: a probe in another process than the camera compares
two clocks of one machine.
"""
from __future__ import annotations

import time
from collections import deque

from schnitzel_stream_ros.packet import Kind, StreamPacket, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port

MAX_SAMPLES = 10_000


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class LatencyProbe(Plugin):
    """Pass packets through; measure now - ts over a window (p50, p99) for /diagnostics and loops."""

    PASSTHROUGH = True
    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'), Port('metrics', frozenset({Kind.METRICS})))
    PARAMS = (
        Param('window_sec', float, 5.0, 'latencies of this many seconds make the percentiles', min=0.1),
        Param('every_sec', float, 1.0, 'how often the percentiles are updated and emitted', min=0.05),
    )

    def setup(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._next = 0.0

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        now = time.time()
        try:
            latency = now - parse_ts(packet.ts).timestamp()
        except ValueError:
            self.count('unparsed_ts_total')
            return packet
        self._samples.append((now, latency))
        if now >= self._next:
            self._next = now + self.params['every_sec']
            self._publish(packet, now)
        return packet

    def _publish(self, packet: StreamPacket, now: float) -> None:
        window = self.params['window_sec']
        while self._samples and self._samples[0][0] < now - window:
            self._samples.popleft()
        ordered = sorted(latency for _, latency in self._samples)
        if not ordered:
            return
        values = {'age_p50_ms': round(_percentile(ordered, 0.5) * 1000, 2),
                  'age_p99_ms': round(_percentile(ordered, 0.99) * 1000, 2),
                  'rate_per_sec': round(len(ordered) / window, 3)}
        for name, value in values.items():
            self.gauge(name, value)
        self.emit(packet.child(Kind.METRICS, dict(values)), 'metrics')
