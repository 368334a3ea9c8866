"""SensorFusionNode: attaches the sensor reading at an event's time to the event (`payload.sensor`).

Sensor packets (kind=sensor, on port `sensor` — or on `in`, the kind decides) are buffered per
sensor (`queue_size`, 256 as upstream). For each event (kind=event, on `in`) at time t (payload.ts,
else the packet ts):
- `strategy: nearest_by_abs_delta` (upstream): the reading with the smallest |reading time − t|
  within `time_window_ms` (300), over all sensors;
- `strategy: interpolate` (new): linear interpolation between the readings just before and just
  after t, both within the window (interpolation.py); when t is not bracketed (e.g. the next
  reading has not arrived yet) it falls back to the nearest reading (`interpolate_fallback`).
No reading in the window: the event passes unchanged (`unmatched_total`).

Optional outputs, both event protocol v0.2 with deterministic ids (codec/event_protocol.py):
- `emit_fused_events`: an extra FUSED_EVENT copy of each matched event with
  `fusion {source_event_id, source_event_type, time_window_ms, strategy, delta_ms}` (upstream shape);
- `emit_sensor_event`: a SENSOR_EVENT when a reading crosses `sensor_event_rule`
  `{field, above | below, severity}` — once per crossing, re-armed when the condition clears.

State (docs/state.md): the buffered readings and the armed/disarmed state of the sensor rule are
checkpointed when the graph configures `config.state` (the rule state written ahead of each
SENSOR_EVENT, so a restart does not report the same crossing twice) and restored when the node is
loaded again. At most `state.max_keys` sensors are kept (least recently heard go first).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import (
    EventType,
    Severity,
    build_event,
    event_id_from_key,
    event_key_of,
    event_to_packet,
)
from schnitzel_stream_ros.nodes.fusion.interpolation import interpolate
from schnitzel_stream_ros.nodes.fusion.sensor_history import (
    Reading,
    SensorHistory,
    micros_to_ts,
    ts_to_micros,
)
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port
from schnitzel_stream_ros.state.bounded import evict_oldest, touch

NEAREST = 'nearest_by_abs_delta'
INTERPOLATE = 'interpolate'
_RULE_KEYS = frozenset({'field', 'above', 'below', 'severity', 'camera_id'})
_NO_BOX = {'x1': 0, 'y1': 0, 'x2': 0, 'y2': 0}


class SensorRule:
    """`{field, above | below, severity}`: when a reading counts as a SENSOR_EVENT."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        unknown = sorted(set(raw) - _RULE_KEYS)
        if unknown:
            raise ValueError(f'{where}.{unknown[0]}: unknown key (known: {sorted(_RULE_KEYS)})')
        self.field = raw.get('field')
        if not isinstance(self.field, str) or not self.field:
            raise ValueError(f'{where}.field: required, the reading field to test (e.g. distance_cm)')
        self.above, self.below = raw.get('above'), raw.get('below')
        for key in ('above', 'below'):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f'{where}.{key}: expected a number, got {value!r}')
        if self.above is None and self.below is None:
            raise ValueError(f'{where}: give `above` or `below` (or both)')
        self.severity = raw.get('severity', Severity.MEDIUM.value)
        if self.severity not in Severity.__members__:
            raise ValueError(f'{where}.severity: {self.severity!r} is not one of {list(Severity)}')
        self.camera_id = raw.get('camera_id') or ''

    def holds(self, payload: Mapping[str, Any]) -> bool:
        value = payload.get(self.field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        too_high = self.above is not None and value > self.above
        return too_high or (self.below is not None and value < self.below)


class SensorFusionNode(Plugin):
    """Attach the sensor reading nearest to (or interpolated at) each event's time as payload.sensor."""

    INPUTS = (
        Port('in', frozenset({Kind.EVENT}), required=False,
             description='events to enrich (none: a SENSOR_EVENT-only node)'),
        Port('sensor', frozenset({Kind.SENSOR}), required=False, description='sensor readings'),
    )
    OUTPUTS = (Port('out', frozenset({Kind.EVENT}), description='events (+ FUSED_EVENT / SENSOR_EVENT)'),)
    PARAMS = (
        Param('time_window_ms', int, 300, 'largest |reading time - event time| that may be attached',
              min=0, dynamic=True),
        Param('strategy', str, NEAREST, 'how the reading is chosen', choices=(NEAREST, INTERPOLATE),
              dynamic=True),
        Param('interpolate_fallback', str, 'nearest', 'when interpolation has no reading on one side',
              choices=('nearest', 'none')),
        Param('interpolate_fields', list, [], 'fields to interpolate (empty = every number)'),
        Param('queue_size', int, 256, 'readings kept per sensor', min=1),
        Param('sensor_ids', list, [], 'sensors to use (empty = every sensor seen)'),
        Param('emit_fused_events', bool, False, 'also emit a FUSED_EVENT per matched event'),
        Param('emit_sensor_event', bool, False, 'emit SENSOR_EVENT when a reading crosses sensor_event_rule'),
        Param('sensor_event_rule', dict, None, '{field, above | below, severity, camera_id}'),
        Param('site_id', str, '', 'site of SENSOR_EVENTs (required with emit_sensor_event)'),
    )

    def setup(self) -> None:
        p = self.params
        where = f'{self.node_id}: parameter'
        self.histories: dict[str, SensorHistory] = {}
        self.sensor_ids = frozenset(p.get('sensor_ids') or ())
        fields = p.get('interpolate_fields') or []
        self.interpolate_fields = frozenset(fields) if fields else None
        self.rule: SensorRule | None = None
        self._rule_active: dict[str, bool] = {}
        if p.get('emit_sensor_event'):
            if not p.get('sensor_event_rule'):
                raise ValueError(f'{where} sensor_event_rule: required with emit_sensor_event')
            if not p.get('site_id'):
                raise ValueError(f'{where} site_id: required with emit_sensor_event')
            self.rule = SensorRule(p['sensor_event_rule'], f'{where} sensor_event_rule')

    # -- readings -----------------------------------------------------------------------------
    def _add_reading(self, packet: StreamPacket) -> Outputs:
        payload = packet.payload if isinstance(packet.payload, Mapping) else {}
        sensor_id = str(payload.get('sensor_id') or packet.source_id)
        if self.sensor_ids and sensor_id not in self.sensor_ids:
            self.count('readings_ignored_total')
            return None
        ts = payload.get('sensor_ts') or packet.ts
        try:
            t_us = ts_to_micros(str(ts))
        except ValueError:
            self.count('readings_bad_ts_total')
            self.log.warning(
                f'{self.node_id}: reading of {sensor_id} has no valid time (sensor_ts {ts!r}); dropped'
            )
            return None
        history = self.histories.get(sensor_id)
        if history is None:
            history = SensorHistory(self.params.get('queue_size', 256))
        touch(self.histories, sensor_id, history)
        gone = evict_oldest(self.histories, self.state_max_keys)
        if gone:
            self.count('state_evicted_total', len(gone))
            for old in gone:
                self._rule_active.pop(old, None)
        if not history.add(Reading(t_us, sensor_id, packet)):
            self.count('readings_too_old_total')
        self.count('readings_total')
        return self._sensor_event(packet, sensor_id, payload) if self.rule is not None else None

    def _sensor_event(self, packet: StreamPacket, sensor_id: str, payload: Mapping[str, Any]) -> Outputs:
        assert self.rule is not None
        holds = self.rule.holds(payload)
        was = self._rule_active.get(sensor_id, False)
        self._rule_active[sensor_id] = holds
        if not holds or was:
            return None
        self.checkpoint()  # write-ahead: the crossing is durable before its event leaves
        ts = str(payload.get('sensor_ts') or packet.ts)
        try:
            event = build_event(
                site_id=self.params['site_id'], camera_id=self.rule.camera_id or sensor_id, ts=ts,
                object_type=None, bbox=_NO_BOX, confidence=1.0, event_type=EventType.SENSOR_EVENT.value,
                severity=self.rule.severity, zone={'zone_id': '', 'inside': False}, sensor=dict(payload),
            )
        except (ValueError, TypeError) as exc:
            self.count('sensor_events_invalid_total')
            self.log.warning(f'{self.node_id}: reading of {sensor_id} cannot become a SENSOR_EVENT: {exc}')
            return None
        self.count('sensor_events_total')
        return event_to_packet(event, parent=packet, check_identity=False)

    # -- events -------------------------------------------------------------------------------
    def _nearest(self, t_us: int, window_us: int) -> Reading | None:
        best: Reading | None = None
        for history in self.histories.values():
            reading = history.nearest(t_us, window_us)
            if reading is not None and (best is None or abs(reading.t_us - t_us) < abs(best.t_us - t_us)):
                best = reading
        return best

    def _bracket(self, t_us: int, window_us: int) -> tuple[Reading, Reading] | None:
        best: tuple[Reading, Reading] | None = None
        best_span = 0
        for history in self.histories.values():
            pair = history.bracket(t_us, window_us)
            if pair is not None:
                span = max(t_us - pair[0].t_us, pair[1].t_us - t_us)
                if best is None or span < best_span:
                    best, best_span = pair, span
        return best

    def match(self, t_us: int) -> tuple[dict[str, Any], str, int] | None:
        """(sensor object, strategy used, |delta| in µs) for an event at t_us, or None."""
        window_us = self.params.get('time_window_ms', 300) * 1000
        if self.params.get('strategy', NEAREST) == INTERPOLATE:
            pair = self._bracket(t_us, window_us)
            if pair is not None:
                before, after = pair
                sensor = interpolate(before, after, t_us, micros_to_ts(t_us), self.interpolate_fields)
                return sensor, INTERPOLATE, max(t_us - before.t_us, after.t_us - t_us)
            if self.params.get('interpolate_fallback', 'nearest') == 'none':
                return None
        reading = self._nearest(t_us, window_us)
        if reading is None:
            return None
        return dict(reading.payload), NEAREST, abs(reading.t_us - t_us)

    def _fused_event(
        self, packet: StreamPacket, event: dict[str, Any], strategy: str, delta_us: int
    ) -> Outputs:
        fused = dict(event)
        fused['event_type'] = EventType.FUSED_EVENT.value
        fused['fusion'] = {
            'source_event_id': event.get('event_id'),
            'source_event_type': event.get('event_type'),
            'time_window_ms': self.params.get('time_window_ms', 300),
            'strategy': strategy,
            'delta_ms': delta_us / 1000.0,
        }
        try:
            fused['event_id'] = event_id_from_key(event_key_of(fused))
            out = event_to_packet(fused, parent=packet)
        except (ValueError, TypeError, KeyError) as exc:
            self.count('fused_events_invalid_total')
            self.log.warning(
                f'{self.node_id}: event {event.get("event_id")} cannot become a FUSED_EVENT: {exc}'
            )
            return None
        self.count('fused_events_total')
        return out.derive(source_id=packet.source_id)

    def _add_event(self, packet: StreamPacket) -> Outputs:
        event = packet.payload
        if not isinstance(event, Mapping):
            raise ValueError(
                f'{self.node_id}: packet {packet.packet_id} (source_id {packet.source_id}): '
                f'event payload must be a mapping, got {type(event).__name__}'
            )
        self.count('events_total')
        ts = event.get('ts') or packet.ts
        try:
            t_us = ts_to_micros(str(ts))
        except ValueError:
            raise ValueError(
                f'{self.node_id}: packet {packet.packet_id}: payload.ts: not an ISO-8601 time: {ts!r}'
            ) from None
        found = self.match(t_us)
        if found is None:
            self.count('unmatched_total')
            return packet
        sensor, strategy, delta_us = found
        enriched = dict(event)
        enriched['sensor'] = sensor
        self.count('matched_total')
        out = packet.derive(payload=enriched)
        if not self.params.get('emit_fused_events'):
            return out
        fused = self._fused_event(out, enriched, strategy, delta_us)
        return [out] if fused is None else [out, fused]

    # -- state (docs/state.md) ------------------------------------------------------------------
    STATE_VERSION = 1

    def snapshot_state(self) -> dict[str, Any]:
        return {
            'readings': {
                sensor_id: [[r.t_us, _packet_record(r.packet)] for r in history._readings]
                for sensor_id, history in self.histories.items()
            },
            'rule_active': dict(self._rule_active),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        readings = state.get('readings') if isinstance(state, dict) else None
        if not isinstance(readings, dict):
            raise ValueError("state needs 'readings': {sensor_id: [[t_us, packet], ...]}")
        self.histories = {}
        for sensor_id, rows in readings.items():
            history = self.histories[str(sensor_id)] = SensorHistory(self.params.get('queue_size', 256))
            for t_us, record in rows:
                history.add(Reading(int(t_us), str(sensor_id), _packet_from_record(record)))
        self._rule_active = {str(k): bool(v) for k, v in dict(state.get('rule_active') or {}).items()}

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        if packet.kind == Kind.SENSOR or (port == 'sensor' and packet.kind != Kind.EVENT):
            return self._add_reading(packet)
        return self._add_event(packet)



def _packet_record(packet: StreamPacket) -> dict[str, Any]:
    return {'packet_id': packet.packet_id, 'ts': packet.ts, 'kind': packet.kind,
            'source_id': packet.source_id, 'payload': packet.payload, 'meta': dict(packet.meta)}


def _packet_from_record(record: Mapping[str, Any]) -> StreamPacket:
    if not isinstance(record, Mapping):
        raise ValueError('a buffered reading must be a packet record')
    return StreamPacket(str(record['packet_id']), str(record['ts']), str(record['kind']),
                        str(record['source_id']), record.get('payload'), dict(record.get('meta') or {}))
