"""RateGate: a camera's frame rate as something a loop can set (frame skipping by packet time).

A source cannot have incoming edges, so a loop that throttles a camera closes through the gate
right behind it: frames come in at the camera's rate, the gate keeps one whenever `1/fps` of packet
time has passed since the last one it kept. Packet time (the packet's `ts`), not the wall clock:
a replay or a deterministic run gates exactly as the live camera did. The rate is the dynamic
parameter `fps` (`ros2 param set`, a controller) and can also arrive as a `control` packet on the
`control` port (`{"fps": x}`, clamped to [min_fps, max_fps]), which is how a graph loop sets it.
"""
from __future__ import annotations

import math
from typing import Any

from schnitzel_stream_ros.packet import Kind, StreamPacket, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port

#: Packet times this close to the due time count as due (frame timestamps are rounded to 1 µs).
DUE_SLACK_SEC = 0.001


class RateGate(Plugin):
    """Keep one packet per 1/fps seconds of packet time; `fps` is set live or by control packets."""

    PASSTHROUGH = True
    INPUTS = (Port('in'), Port('control', frozenset({Kind.CONTROL}), required=False))
    OUTPUTS = (Port('out'),)
    PARAMS = (
        Param('fps', float, 30.0, 'packets kept per second of packet time', min=0.01, max=1000.0,
              dynamic=True),
        Param('min_fps', float, 0.5, 'lowest rate a control packet may set', min=0.01, max=1000.0),
        Param('max_fps', float, 30.0, 'highest rate a control packet may set', min=0.01, max=1000.0),
        Param('control_key', str, 'fps', 'payload key of a control packet that carries the rate'),
    )

    @classmethod
    def check_params(cls, params: Any) -> list[str]:
        if params['min_fps'] > params['max_fps']:
            return [f"parameter 'min_fps': {params['min_fps']} is above max_fps {params['max_fps']}"]
        return []

    def setup(self) -> None:
        self._fps = float(self.params['fps'])
        self._last_kept: float | None = None

    def on_params(self, changed: Any) -> None:
        if 'fps' in changed:
            self._fps = float(changed['fps'])
            self.gauge('fps', self._fps)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        if port == 'control':
            self._control(packet)
            return None
        t = parse_ts(packet.ts).timestamp()
        if self._last_kept is not None and t < self._last_kept + 1.0 / self._fps - DUE_SLACK_SEC \
                and t >= self._last_kept:  # a clock that went back (a new epoch) restarts the gate
            self.count('skipped_total')
            return None
        self._last_kept = t
        self.count('kept_total')
        return packet

    def _control(self, packet: StreamPacket) -> None:
        payload = packet.payload
        value = payload.get(self.params['control_key']) if isinstance(payload, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.count('control_refused_total')
            return
        self._fps = min(self.params['max_fps'], max(self.params['min_fps'], float(value)))
        self.gauge('fps', self._fps)
        self.count('control_total')
