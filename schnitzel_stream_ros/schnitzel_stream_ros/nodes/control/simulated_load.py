"""SimulatedLoadNode: a stand-in detector whose latency follows the frame rate it is given.

The plant of a control loop, for deterministic tests, examples and benches where a real detector's
speed would depend on the machine. Every `window_sec` of packet time it emits one `metrics` packet
`{rate_fps, latency_ms}`: the rate is the frames that arrived in the window; the latency moves a
fraction `smoothing` of the way from where it was towards `base_ms + ms_per_fps * rate` (a loaded
detector settles, it does not jump). No clock, no randomness: the same frames give the same numbers.
"""
from __future__ import annotations

from datetime import UTC, datetime

from schnitzel_stream_ros.packet import Kind, StreamPacket, format_ts, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port


class SimulatedLoadNode(Plugin):
    """Latency model of a detector: base_ms + ms_per_fps * rate, first-order lag; one sample per window."""

    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out', frozenset({Kind.METRICS})),)
    PARAMS = (
        Param('window_sec', float, 1.0, 'packet time per sample', min=0.001),
        Param('base_ms', float, 40.0, 'latency with no load', min=0.0),
        Param('ms_per_fps', float, 8.0, 'latency added per frame per second', min=0.0, dynamic=True),
        Param('smoothing', float, 0.5, 'fraction of the way to the new latency per window', min=0.0, max=1.0),
    )

    def setup(self) -> None:
        self._window_start: float | None = None
        self._frames = 0
        self._latency = float(self.params['base_ms'])
        self._samples = 0

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        t = parse_ts(packet.ts).timestamp()
        window = self.params['window_sec']
        out = None
        if self._window_start is None:
            self._window_start = t
        elif t >= self._window_start + window:
            out = self._sample(packet)
            self._window_start += window * int((t - self._window_start) // window)
            self._frames = 0
        self._frames += 1
        return out

    def _sample(self, packet: StreamPacket) -> StreamPacket:
        p = self.params
        rate = self._frames / p['window_sec']
        target = p['base_ms'] + p['ms_per_fps'] * rate
        self._latency += p['smoothing'] * (target - self._latency)
        self._samples += 1
        self.gauge('latency_ms', self._latency)
        end = datetime.fromtimestamp(self._window_start + p['window_sec'], UTC)
        return packet.child(Kind.METRICS, {'rate_fps': rate, 'latency_ms': self._latency,
                                           'sample': self._samples}, ts=format_ts(end))
