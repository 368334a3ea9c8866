"""AudioEventPolicyNode: LOUD_NOISE / VOICE events from audio readings, through the one event builder.

Rules turn a condition on a reading field into an event with an onset and a release, per source:
`{event_type, sensor_type, field, above | below | equals, min_duration_ms, gap_ms, release_ms,
severity}`. The condition must hold for `min_duration_ms` of chunks, with gaps of at most `gap_ms`
(one chunk between two words) inside the run (a cough is not a voice); the event is then emitted
once, stamped with the time of the *first* chunk of the run (its onset), and carries the reading
plus `onset_ts` and `held_ms`. The rule re-arms after the condition has been false for
`release_ms` (pauses between words do not start a new VOICE).
Default rules: LOUD_NOISE when `dbfs` (audio_level) > −20 for 100 ms, VOICE when `voice`
(voice_activity) is true for 300 ms with gaps up to 100 ms.

Zones become time windows: `windows: [{window_id, start: "HH:MM", end: "HH:MM"}]` (UTC, daily; end
before start crosses midnight) arm the rules only inside a window, and the event's zone is
`{zone_id: window_id, inside: true}`. Without windows the rules are always armed, zone none.
Events are detections with `object_type: AUDIO` (zero bbox, camera_id = the microphone source).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import EventType, Severity
from schnitzel_stream_ros.nodes.fusion.sensor_history import ts_to_micros
from schnitzel_stream_ros.nodes.policy.reading_detection import reading_detection
from schnitzel_stream_ros.packet import Kind, StreamPacket, parse_ts
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

OBJECT_TYPE = 'AUDIO'
DEFAULT_RULES = (
    {'event_type': EventType.LOUD_NOISE.value, 'sensor_type': 'audio_level', 'field': 'dbfs',
     'above': -20.0, 'min_duration_ms': 100, 'release_ms': 500, 'severity': 'MEDIUM'},
    {'event_type': EventType.VOICE.value, 'sensor_type': 'voice_activity', 'field': 'voice',
     'equals': True, 'min_duration_ms': 300, 'gap_ms': 100, 'release_ms': 700, 'severity': 'INFO'},
)
_RULE_KEYS = frozenset({'event_type', 'sensor_type', 'field', 'above', 'below', 'equals', 'min_duration_ms',
                        'gap_ms', 'release_ms', 'severity'})


@dataclass(frozen=True)
class Rule:
    event_type: str
    sensor_type: str
    field: str
    above: float | None
    below: float | None
    equals: Any
    min_us: int
    gap_us: int
    release_us: int
    severity: str

    def holds(self, value: Any) -> bool:
        if self.equals is not None:
            return value == self.equals and type(value) is type(self.equals)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        too_high = self.above is not None and value > self.above
        return too_high or (self.below is not None and value < self.below)


def parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValueError(f'{where}: a rule is a mapping, got {type(raw).__name__}')
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ValueError(f'{where}.{unknown[0]}: unknown key (known: {sorted(_RULE_KEYS)})')
    for key in ('event_type', 'field'):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f'{where}.{key}: required, a non-empty string')
    if sum(raw.get(k) is not None for k in ('above', 'below', 'equals')) == 0:
        raise ValueError(f'{where}: give above, below or equals')
    for key in ('above', 'below'):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f'{where}.{key}: expected a number, got {raw[key]!r}')
    severity = raw.get('severity', 'MEDIUM')
    if severity not in Severity.__members__:
        raise ValueError(f'{where}.severity: {severity!r} is not one of {list(Severity)}')
    durations = {}
    for key, default in (('min_duration_ms', 0), ('gap_ms', 0), ('release_ms', 0)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f'{where}.{key}: expected a number >= 0, got {value!r}')
        durations[key] = round(value * 1000)
    return Rule(raw['event_type'], str(raw.get('sensor_type') or ''), raw['field'], raw.get('above'),
                raw.get('below'), raw.get('equals'), durations['min_duration_ms'], durations['gap_ms'],
                durations['release_ms'], severity)


def _minutes(text: Any, where: str) -> int:
    try:
        hours, minutes = (int(v) for v in str(text).split(':'))
        if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 1440:
            raise ValueError
    except ValueError:
        raise ValueError(f'{where}: expected "HH:MM", got {text!r}') from None
    return hours * 60 + minutes


def parse_windows(raw: Any, where: str) -> tuple[tuple[str, int, int], ...]:
    windows = []
    for i, window in enumerate(raw or []):
        at = f'{where}[{i}]'
        if not isinstance(window, Mapping) or not isinstance(window.get('window_id'), str) \
                or not window['window_id']:
            raise ValueError(f'{at}: expected {{window_id, start: "HH:MM", end: "HH:MM"}}, got {window!r}')
        windows.append((window['window_id'], _minutes(window.get('start'), f'{at}.start'),
                        _minutes(window.get('end'), f'{at}.end')))
    return tuple(windows)


@dataclass
class _State:
    onset: StreamPacket | None = None
    onset_us: int = 0
    active: bool = False
    last_true_end_us: int = 0


class AudioEventPolicyNode(Plugin):
    """Audio readings -> LOUD_NOISE / VOICE detections (onset, minimum duration, release, time windows)."""

    INPUTS = (Port('in', frozenset({Kind.SENSOR}), description='audio_level and voice_activity readings'),)
    OUTPUTS = (Port('out', frozenset({Kind.DETECTION}), description='one detection per onset'),)
    PARAMS = (
        Param('rules', list, None, 'rules (default: LOUD_NOISE dbfs > -20 for 100 ms, VOICE for 300 ms)'),
        Param('windows', list, [], 'time windows that arm the rules: [{window_id, start, end}] (UTC HH:MM)'),
        Param('max_sources', int, 256, 'sources tracked (least recently heard forgotten first)', min=1),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        problems = []
        try:
            for i, rule in enumerate(params.get('rules') or DEFAULT_RULES):
                parse_rule(rule, f"parameter 'rules'[{i}]")
            parse_windows(params.get('windows'), "parameter 'windows'")
        except ValueError as exc:
            problems.append(str(exc))
        return problems

    def setup(self) -> None:
        where = f'{self.node_id}: parameter'
        self.rules = tuple(parse_rule(r, f'{where} rules[{i}]')
                           for i, r in enumerate(self.params.get('rules') or DEFAULT_RULES))
        self.windows = parse_windows(self.params.get('windows'), f'{where} windows')
        self.states: OrderedDict[tuple[str, int], _State] = OrderedDict()

    def _window(self, ts: str) -> str | None:
        """The window containing `ts` ('' when there are no windows), None when outside all."""
        if not self.windows:
            return ''
        t = parse_ts(ts)
        minute = t.hour * 60 + t.minute
        for window_id, start, end in self.windows:
            inside = start <= minute < end if start <= end else (minute >= start or minute < end)
            if inside:
                return window_id
        return None

    def _state(self, key: tuple[str, int]) -> _State:
        state = self.states.pop(key, None)
        if state is None:
            state = _State()
            while len(self.states) >= self.params.get('max_sources', 256) * max(1, len(self.rules)):
                self.states.popitem(last=False)
                self.count('sources_evicted_total')
        self.states[key] = state
        return state

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        try:
            t_us = ts_to_micros(str(payload.get('sensor_ts') or packet.ts))
        except ValueError:
            self.count('bad_ts_total')
            return None
        duration = payload.get('duration_ms', 0)
        end_us = t_us + (int(duration * 1000) if isinstance(duration, int | float) and duration > 0 else 0)
        out = []
        for index, rule in enumerate(self.rules):
            if rule.sensor_type and payload.get('sensor_type') != rule.sensor_type:
                continue
            state = self._state((packet.source_id, index))
            if rule.holds(payload.get(rule.field)):
                if state.onset is None:
                    state.onset, state.onset_us = packet, t_us
                state.last_true_end_us = end_us
                if not state.active and end_us - state.onset_us >= rule.min_us:
                    state.active = True
                    detection = self._detection(rule, state, packet, payload, end_us)
                    if detection is not None:
                        out.append(detection)
            elif state.active:
                if end_us - state.last_true_end_us >= rule.release_us:
                    state.active, state.onset = False, None
            elif state.onset is not None and end_us - state.last_true_end_us > rule.gap_us:
                state.onset = None  # a gap longer than gap_ms ends the run before it became an event
        return out or None

    def _detection(self, rule: Rule, state: _State, packet: StreamPacket, payload: Mapping[str, Any],
                   end_us: int) -> StreamPacket | None:
        assert state.onset is not None
        window = self._window(state.onset.ts)
        if window is None:
            self.count('outside_windows_total')
            return None
        self.count(f'{rule.event_type.lower()}_total')
        sensor = {**payload, 'onset_ts': state.onset.ts, 'held_ms': (end_us - state.onset_us) / 1000.0}
        zone = {'zone_id': window, 'inside': True} if window else None
        return reading_detection(packet, rule.event_type, rule.severity, OBJECT_TYPE, zone=zone,
                                 sensor=sensor, ts=state.onset.ts)
