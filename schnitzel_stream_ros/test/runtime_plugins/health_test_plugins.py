"""Plugins that put a node into a known health condition, for the /diagnostics tests.

Tests put this directory on PYTHONPATH and add `health_test_plugins` to the plugin allowlist; the
default allowlist refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator

from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role


class StallingSource(Plugin):
    """Emits `packets` packets at `rate_hz`, then stays alive without emitting anything (a hung
    device): the runtime sees a running source whose output stopped. `timeout_sec` is its stall
    threshold, as live cameras declare theirs."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'raw'})),)
    PARAMS = (
        Param('packets', int, 10, 'packets before the stall', min=0),
        Param('rate_hz', float, 20.0, 'packets per second before the stall', min=0.1),
        Param('timeout_sec', float, 2.0, 'stall threshold', min=0.1),
    )

    def produce(self) -> Iterator[StreamPacket | None]:
        period = 1.0 / self.params['rate_hz']
        for seq in range(self.params['packets']):
            if self.stopping:
                return
            yield StreamPacket.new('raw', self.node_id, {'seq': seq})
            self.ctx.stop_event.wait(period)
        while not self.ctx.stop_event.wait(0.05):
            yield None  # alive and responsive, but nothing comes


class RaiseAlways(Plugin):
    """process() raises on every packet (a plugin bug on the data path)."""

    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', profile=PayloadProfile.INPROC_ANY),)

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        raise RuntimeError(f'cannot handle packet {packet.packet_id}')
