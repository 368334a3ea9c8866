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


class Stamp(Plugin):
    """Stamps each JSON payload with its class, its `tag` and a running count a replace hands over.

    What a hot-replace test needs to see: which instance processed each packet (`by`, `tag`), and
    whether the state hand-over worked (`seen` continues across instances, also across classes).
    """

    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'),)
    PASSTHROUGH = True
    PARAMS = (
        Param('tag', str, '', 'written into every payload'),
        Param('setup_sec', float, 0.0, 'setup() sleeps this long (a slow model load)', min=0.0),
        Param('hand_over', bool, True, 'hand the count over to the replacing instance'),
    )

    def setup(self) -> None:
        time.sleep(self.params['setup_sec'])
        self.seen = 0

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        self.seen += 1
        payload = {**packet.payload, 'by': type(self).__name__, 'tag': self.params['tag'], 'seen': self.seen}
        return packet.derive(payload=payload)

    def snapshot_state(self) -> dict | None:
        return {'seen': self.seen} if self.params['hand_over'] else None

    def restore_state(self, state: dict) -> None:
        self.seen = int(state['seen'])


class OtherStamp(Stamp):
    """Stamp under another class name: a replace may change the class, not only parameters."""


class StampWithoutInput(Plugin):
    """A plugin whose ports do not fit Stamp's edges (no input 'in'): a replace must be refused."""

    INPUTS = (Port('data'),)
    OUTPUTS = (Port('out'),)

    def process(self, packet: StreamPacket, port: str = 'data') -> Outputs:
        return packet


class FailEveryNth(Plugin):
    """Passes packets on; raises on every packet whose payload `seq` is n-1 modulo n (instance-free)."""

    PASSTHROUGH = True
    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'),)
    PARAMS = (Param('n', int, 10, 'raise on seq % n == n - 1', min=1),)

    def setup(self) -> None:
        self.fresh = True  # a restart must give a fresh instance (setup() again)

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        if packet.payload['seq'] % self.params['n'] == self.params['n'] - 1:
            raise RuntimeError(f"seq {packet.payload['seq']} refused")
        return packet


class CrashOnSeq(Plugin):
    """Passes packets on; crashes the process natively (SIGSEGV in C code) at payload seq `seq`."""

    PASSTHROUGH = True
    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'),)
    PARAMS = (Param('seq', int, 50, 'the packet that crashes the process'),)

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        if packet.payload['seq'] == self.params['seq']:
            import ctypes

            ctypes.string_at(0)  # a read of address 0 in C: what a buggy extension does
        return packet


class StandingPeople(Plugin):
    """Detection frames of camera `cam0` showing `people` persons who barely move, until stopped.

    Event time advances `step_sec` per frame from 2026-01-01T00:00:00Z. Person i stands at
    x = 100 * i and drifts 0.01 px per frame, so a tracker keeps every id for the whole run, also
    across a pause. Person 0 leaves after `leave_after_frames` (0: never): the others then keep ids
    2, 3, ... where a tracker starting afresh would number them 1, 2, ...
    """

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'detection'})),)
    PARAMS = (
        Param('rate_hz', float, 50.0, 'frames per second', min=0.1),
        Param('people', int, 3, 'persons in every frame', min=1),
        Param('step_sec', float, 0.1, 'event time between two frames', min=0.001),
        Param('leave_after_frames', int, 0, 'person 0 leaves after this many frames (0: never)', min=0),
    )

    def produce(self) -> Iterator[StreamPacket]:
        from schnitzel_stream_ros.nodes.fusion.sensor_history import micros_to_ts

        start_us = 1_767_225_600 * 1_000_000  # 2026-01-01T00:00:00Z
        frame = 0
        leave = self.params['leave_after_frames']
        period = 1.0 / self.params['rate_hz']
        while not self.stopping:
            drift = 0.01 * frame
            dets = [{'bbox': {'x1': 100.0 * i + drift, 'y1': 100.0,
                              'x2': 100.0 * i + 50 + drift, 'y2': 200.0},
                     'confidence': 0.9, 'object_type': 'PERSON', 'class_id': 0}
                    for i in range(self.params['people'])
                    if i or not leave or frame < leave]
            ts = micros_to_ts(start_us + round(frame * self.params['step_sec'] * 1e6))
            yield StreamPacket.new('detection', 'cam0', dets, {'frame_idx': frame}, ts=ts)
            frame += 1
            self.ctx.stop_event.wait(period)


class PacedReadings(Plugin):
    """`count` readings {zone, v, seq} at `rate_hz`, event time 0.1 s apart from 2026-01-01, then ends.

    The same packets (payload and ts) on every run: a test can compute what windows over them hold.
    """

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'sensor'})),)
    PARAMS = (
        Param('rate_hz', float, 100.0, 'readings per second', min=0.1),
        Param('count', int, 1000, 'readings in all', min=1),
    )

    def produce(self) -> Iterator[StreamPacket]:
        from schnitzel_stream_ros.nodes.fusion.sensor_history import micros_to_ts

        start_us = 1_767_225_600 * 1_000_000
        period = 1.0 / self.params['rate_hz']
        for i in range(self.params['count']):
            if self.stopping:
                return
            payload = {'zone': 'ab'[i % 2], 'v': float(i % 7), 'seq': i}
            yield StreamPacket.new('sensor', 'readings', payload, ts=micros_to_ts(start_us + i * 100_000))
            self.ctx.stop_event.wait(period)


class BoardCounter(Plugin):
    """Counts `key` on the blackboard up to `target` by compare-and-set, one increment per step;
    emits {n, by} for each increment it committed, then ends. A restarted instance goes on from the
    value the blackboard holds."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'raw'})),)
    PARAMS = (
        Param('key', str, 'counter', 'blackboard key'),
        Param('target', int, 100, 'count up to this', min=1),
        Param('pause_sec', float, 0.005, 'between two increments', min=0.0),
    )

    def produce(self) -> Iterator[StreamPacket | None]:
        from schnitzel_stream_ros.state.blackboard import BlackboardConflict

        board = self.blackboard
        while not self.stopping:
            value, version = board.get(self.params['key'])
            n = 0 if value is None else value['n']
            if n >= self.params['target']:
                return
            try:
                board.put(self.params['key'], {'n': n + 1, 'by': self.node_id}, expect=version)
            except BlackboardConflict:
                self.count('conflicts_total')
                yield None
                continue
            yield StreamPacket.new('raw', self.node_id, {'n': n + 1, 'by': self.node_id})
            self.ctx.stop_event.wait(self.params['pause_sec'])


class BoardWatcher(Plugin):
    """Watches `key` from the first version in the log; emits {version, n, by} per version seen, in
    the order the blackboard committed them; ends when it has seen `target`."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({'raw'})),)
    PARAMS = (Param('key', str, 'counter', 'blackboard key'), Param('target', int, 100, 'last n', min=1))

    def setup(self) -> None:
        self.blackboard.watch(self.params['key'], from_start=True)

    def produce(self) -> Iterator[StreamPacket | None]:
        while not self.stopping:
            changes = self.blackboard.changes()
            for key, value, version in changes:
                if key == self.params['key']:
                    yield StreamPacket.new('raw', self.node_id, {'version': version, **value})
                    if value['n'] >= self.params['target']:
                        return
            if not changes:
                self.ctx.stop_event.wait(0.01)
                yield None
