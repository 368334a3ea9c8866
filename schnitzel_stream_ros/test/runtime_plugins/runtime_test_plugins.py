"""Plugins that exist only to exercise the runtime: failures, slowness, observable close().

Tests put this directory on sys.path (and on PYTHONPATH of container processes) and add
`runtime_test_plugins` to the plugin allowlist; the default allowlist refuses them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role


class FailOnPayload(Plugin):
    """Passes packets on, raises ValueError on a packet whose payload equals `bad`."""

    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', profile=PayloadProfile.INPROC_ANY),)
    PARAMS = (Param('bad', str, 'boom', 'payload that makes process() raise'),)

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        if packet.payload == self.params['bad']:
            raise ValueError(f'refusing payload {packet.payload!r}')
        return packet


class FailingSetup(Plugin):
    """setup() raises: the node must not load; close() must still run (it writes `closed_marker`)."""

    ROLE = Role.SINK
    OUTPUTS = ()
    PARAMS = (Param('closed_marker', str, '', 'file written by close()'),)

    def setup(self) -> None:
        raise RuntimeError('cannot open the device')

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        return None

    def close(self) -> None:
        if self.params['closed_marker']:
            Path(self.params['closed_marker']).write_text('closed')


class MarkClosedSink(Plugin):
    """Counts packets; close() writes `consumed=<n>` to `closed_marker` (proves close() ran)."""

    ROLE = Role.SINK
    OUTPUTS = ()
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('closed_marker', str, description='file written by close()'),
        Param('delay_sec', float, 0.0, 'time spent per packet', min=0.0, dynamic=True),
    )

    def setup(self) -> None:
        self.seen = 0

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        self.seen += 1
        if self.params['delay_sec']:
            time.sleep(self.params['delay_sec'])
        return None

    def on_params(self, changed) -> None:
        self.count('param_updates_total')

    def close(self) -> None:
        Path(self.params['closed_marker']).write_text(f'consumed={self.seen}')


class EndlessSource(Plugin):
    """Emits numbered packets until stopped, `rate_hz` per second (0 = as fast as possible)."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'raw'})),)
    PARAMS = (Param('rate_hz', float, 0.0, 'packets per second; 0 = unthrottled', min=0.0),)

    def produce(self) -> Iterator[StreamPacket]:
        seq = 0
        period = 1.0 / self.params['rate_hz'] if self.params['rate_hz'] else 0.0
        while not self.stopping:
            yield StreamPacket.new('raw', self.node_id, {'seq': seq})
            seq += 1
            if period:
                self.ctx.stop_event.wait(period)


class FlakySource(Plugin):
    """Emits numbered packets at `rate_hz`; produce() raises after every `fail_every` packets.

    A transient fault of a device library: the runtime must restart produce() (with backoff), not
    treat the source as finished. `seq` continues across restarts, so a test sees no gap.
    """

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'raw'})),)
    PARAMS = (
        Param('rate_hz', float, 20.0, 'packets per second', min=0.1),
        Param('fail_every', int, 5, 'raise after this many packets of one produce() call', min=1),
        Param('count', int, 0, 'end (return) after this many packets in all; 0 = never', min=0),
    )

    def setup(self) -> None:
        self.seq = 0

    def produce(self) -> Iterator[StreamPacket]:
        count = self.params['count']
        for _ in range(self.params['fail_every']):
            if count and self.seq >= count:
                return
            yield StreamPacket.new('raw', self.node_id, {'seq': self.seq})
            self.seq += 1
            self.ctx.stop_event.wait(1.0 / self.params['rate_hz'])
        if count and self.seq >= count:
            return
        raise OSError(f'device hiccup after packet {self.seq - 1}')


class LogEveryLevel(Plugin):
    """Logs at every level from one call site (a helper taking the level), then passes the packet on.

    The pattern that rclpy's logger refuses when a plugin calls it directly
    ("Logger severity cannot be changed between calls"); through the runtime's PluginLog it must work.
    """

    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', profile=PayloadProfile.INPROC_ANY),)

    def _say(self, level, text: str) -> None:
        self.log.log(level, text)  # one call site for every level

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        for level in ('debug', 'info', 'warning', 'error'):
            self._say(level, f'{self.node_id}: level {level} for packet {packet.payload}')
        self.log.warning(f'{self.node_id}: direct warning for packet {packet.payload}')
        return packet


class ArrivalLagSink(Plugin):
    """Writes, per packet, how long after its emission (packet ts) it reached process(): one
    number per line in `path` (seconds). Shows stalls on the way in (e.g. a blocked DDS thread)."""

    ROLE = Role.SINK
    OUTPUTS = ()
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    PARAMS = (Param('path', str, description='output file'),)

    def setup(self) -> None:
        self._out = open(self.params['path'], 'a', encoding='utf-8')  # noqa: SIM115 (closed in close)

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        from datetime import datetime

        sent = datetime.fromisoformat(packet.ts.replace('Z', '+00:00')).timestamp()
        self._out.write(f'{time.time() - sent:.6f}\n')
        self._out.flush()
        return None

    def close(self) -> None:
        self._out.close()
