"""DedupPolicyNode: one event per object per cooldown, so a person standing in a zone is reported
once every `cooldown_sec` (10) instead of once per frame.

Key `camera_id:event_type:track_id` (`na` without a track), as upstream
`schnitzel_stream.packs.vision.nodes:DedupPolicyNode`. A change of severity for a key always passes
(an escalation must never be swallowed by the cooldown) and restarts the cooldown. Events without
camera_id or event_type have no key and pass.

State (docs/state.md): the cooldowns are checkpointed when the graph configures `config.state`,
written ahead of every event that passes (a restarted node never lets through again what it
already let through inside its cooldown), restored when the node is loaded again and handed over
on hot-replace. At most `state.max_keys` keys are kept; the oldest go first (`state_evicted_total`).

Time: `clock: monotonic` (upstream: wall time since the process started) or `clock: event_ts`
(the event's own `ts`), which makes the result independent of processing speed — the same input
gives the same output in a replay or in the deterministic engine.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.packet import Kind, StreamPacket, parse_ts
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port
from schnitzel_stream_ros.state.bounded import evict_oldest, touch


def dedup_key(payload: Mapping[str, Any]) -> str | None:
    camera_id = payload.get('camera_id')
    event_type = payload.get('event_type')
    if not camera_id or not event_type:
        return None
    track_id = payload.get('track_id')
    return f'{camera_id}:{event_type}:{"na" if track_id is None else track_id}'


@dataclass
class CooldownGate:
    """Per-key last pass time and severity; `allow()` decides and records."""

    cooldown_sec: float
    prune_interval: int = 100
    _last_time: dict[str, float] = field(default_factory=dict)
    _last_severity: dict[str, Any] = field(default_factory=dict)
    _calls: int = 0

    def allow(self, key: str, now: float, severity: Any = None) -> bool:
        self._calls += 1
        if self._calls % max(1, self.prune_interval) == 0:
            self.prune(now)
        last = self._last_time.get(key)
        previous_severity = self._last_severity.get(key)
        severity_changed = previous_severity is not None and severity not in (None, previous_severity)
        expired = last is None or now - last >= self.cooldown_sec
        clock_went_back = last is not None and now < last - self.cooldown_sec  # e.g. a replayed file
        if expired or severity_changed or clock_went_back:
            touch(self._last_time, key, now)  # the least recently passed key is evicted first
            if severity is not None:
                self._last_severity[key] = severity
            return True
        return False

    def prune(self, now: float) -> None:
        """Forget keys whose cooldown is over: bounded memory with many short-lived tracks."""
        expired = [k for k, t in self._last_time.items() if now - t >= self.cooldown_sec]
        for k in expired:
            del self._last_time[k]
            self._last_severity.pop(k, None)

    def __len__(self) -> int:
        return len(self._last_time)

    def evict(self, max_keys: int) -> int:
        """Keep at most `max_keys` keys (the least recently passed go); returns how many went."""
        gone = evict_oldest(self._last_time, max_keys)
        for key in gone:
            self._last_severity.pop(key, None)
        return len(gone)

    def entries(self) -> list[list[Any]]:
        """[key, last pass time, last severity] per key, oldest first (a snapshot)."""
        return [[k, t, self._last_severity.get(k)] for k, t in self._last_time.items()]

    def load(self, entries: list[list[Any]]) -> None:
        self._last_time.clear()
        self._last_severity.clear()
        for key, t, severity in entries:
            self._last_time[str(key)] = float(t)
            if severity is not None:
                self._last_severity[str(key)] = severity


class DedupPolicyNode(Plugin):
    """Drop repeated events (camera_id:event_type:track_id) inside cooldown_sec; a severity change passes."""

    INPUTS = (Port('in', frozenset({Kind.EVENT})),)
    OUTPUTS = (Port('out', frozenset({Kind.EVENT})),)
    PARAMS = (
        Param('cooldown_sec', float, 10.0, 'repeats of a key inside this time are dropped',
              min=0.0, dynamic=True),
        Param('prune_interval', int, 100, 'forget expired keys every N events', min=1),
        Param('clock', str, 'monotonic', 'time base of the cooldown', choices=('monotonic', 'event_ts')),
    )

    STATE_VERSION = 1

    #: Time source of `clock: monotonic` (a class attribute so tests can drive time exactly).
    monotonic: Callable[[], float] = staticmethod(time.monotonic)
    #: Wall clock, to carry monotonic cooldowns across a restart (another process, maybe a reboot).
    wall: Callable[[], float] = staticmethod(time.time)

    def setup(self) -> None:
        params = self.params
        self.gate = CooldownGate(params.get('cooldown_sec', 10.0), params.get('prune_interval', 100))
        self._use_event_ts = self.params.get('clock') == 'event_ts'

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if 'cooldown_sec' in changed:
            self.gate.cooldown_sec = float(changed['cooldown_sec'])

    def _now(self, packet: StreamPacket, payload: Mapping[str, Any]) -> float:
        if self._use_event_ts:
            ts = payload.get('ts') or packet.ts
            try:
                return parse_ts(str(ts)).timestamp()
            except ValueError:
                raise ValueError(
                    f'{self.node_id}: packet {packet.packet_id}: payload.ts: not an ISO-8601 time: {ts!r}'
                ) from None
        return self.monotonic()

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        payload = packet.payload
        if not isinstance(payload, Mapping):
            raise ValueError(
                f'{self.node_id}: packet {packet.packet_id} (source_id {packet.source_id}): '
                f'event payload must be a mapping, got {type(payload).__name__}'
            )
        key = dedup_key(payload)
        if key is None:
            self.count('accepted_total')
            return packet
        if self.gate.allow(key, self._now(packet, payload), payload.get('severity')):
            evicted = self.gate.evict(self.state_max_keys)
            if evicted:
                self.count('state_evicted_total', evicted)
            self.checkpoint()  # write-ahead: durable before the event leaves
            self.count('accepted_total')
            return packet
        self.count('dropped_total')
        return None

    # -- state (docs/state.md) ------------------------------------------------------------------
    def snapshot_state(self) -> dict[str, Any]:
        """Cooldowns as plain data; monotonic times as wall-clock times (valid in another process)."""
        entries = self.gate.entries()
        if not self._use_event_ts:
            offset = self.wall() - self.monotonic()
            entries = [[k, t + offset, s] for k, t, s in entries]
        return {'clock': 'event_ts' if self._use_event_ts else 'wall', 'entries': entries}

    def restore_state(self, state: dict[str, Any]) -> None:
        entries = state.get('entries') if isinstance(state, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 3 for e in entries):
            raise ValueError('state entries must be a list of [key, time, severity]')
        clock = state.get('clock')
        if clock != ('event_ts' if self._use_event_ts else 'wall'):
            self.log.warning(f'{self.node_id}: state kept with clock {clock!r}, the node now uses '
                             f'{self.params.get("clock")!r}: cooldowns start fresh')
            return
        if not self._use_event_ts:
            offset = self.monotonic() - self.wall()
            entries = [[k, t + offset, s] for k, t, s in entries]
        self.gate.load(entries)
        evicted = self.gate.evict(self.state_max_keys)
        if evicted:
            self.count('state_evicted_total', evicted)
