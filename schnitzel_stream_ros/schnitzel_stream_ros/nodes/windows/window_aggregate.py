"""WindowAggregateNode: aggregates by key over event-time windows (people per zone per minute,
dwell time per track, sensor mean per 10 s).

    - id: people_per_zone
      plugin: WindowAggregateNode
      config: {window: tumbling, size_sec: 60, key_field: zone.zone_id, distinct_field: track_id,
               aggregates: [count, distinct_count], allowed_lateness_sec: 5, watermark_delay_sec: 2}

Event time is the packet's `ts` (the header-stamp rule of the codec), or a payload field
(`time_field`). Windowing, watermark and lateness: windowing.py; aggregations: aggregates.py. A
result is a `metrics` packet on `out` when the watermark passes the window's end, again (revision
2, 3, ...) when a packet within the allowed lateness changes it; payload {window, key, start, end,
revision, <aggregations>}, idempotency key `<node>:<key>:<start>:<revision>` (the same on every
replay). Late packets go unchanged to `late` and are counted (`late_total`), never merged.

Results depend only on the input and its order: the deterministic mode gives exact, replayable
numbers. The open windows are the node's state (docs/state.md): checkpointed periodically, at a
clean stop and, with `write_ahead: true`, after every packet or batch (one commit per batch, like
the durable queue's group commit) so that nothing the node accepted is lost by a crash. At most
`state.max_keys` open windows: beyond, the oldest fires early as it is (`partial: true`) and is
counted (`state_evicted_total`).

Exactly-once totals over a durable queue (docs/state.md): fed by a SqliteQueueSource, with
`write_ahead: true` and its `done` port wired to a SqliteQueueAckSink, a queue row is acked only
after the checkpoint holding it is durable; rows a crash left unacked come again and are skipped
when the checkpoint already holds them (highest seq per queue kept in the state, counted as
`redelivered_total`, still passed to `done`). Results fired before a crash may not have left the
process: after a restore, the latest revision of every fired window still in the state is emitted
again with its idempotency key (`replayed: true`), so a consumer that keys on it sees each once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schnitzel_stream_ros.nodes.fusion.sensor_history import micros_to_ts, ts_to_micros
from schnitzel_stream_ros.nodes.windows import aggregates
from schnitzel_stream_ros.nodes.windows.windowing import (
    SESSION,
    SLIDING,
    TUMBLING,
    WINDOW_KINDS,
    Fired,
    WindowSpec,
    WindowState,
)
from schnitzel_stream_ros.packet import Kind, MetaKey, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

LATE_PORT = 'late'
DONE_PORT = 'done'
_US = 1_000_000


def field_value(payload: Any, path: str) -> Any:
    """`a.b.c` of a payload mapping; None when any step is missing."""
    value = payload
    for part in path.split('.'):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


class WindowAggregateNode(Plugin):
    """Aggregates by key over tumbling, sliding or session windows on event time (watermark, lateness)."""

    INPUTS = (Port('in', description='packets to aggregate (any kind with a JSON payload)'),)
    OUTPUTS = (
        Port('out', frozenset({Kind.METRICS}), description='one result per window, key and revision'),
        Port(LATE_PORT, description='packets too late for every window they belong to, unchanged'),
        Port(DONE_PORT, description='with write_ahead: every input packet once its state is durable '
             '(wire to SqliteQueueAckSink)'),
    )
    PARAMS = (
        Param('window', str, TUMBLING, 'window kind', choices=WINDOW_KINDS),
        Param('size_sec', float, 60.0, 'length of a tumbling or sliding window', min=0.000001),
        Param('slide_sec', float, 0.0, 'sliding windows: a new window every slide_sec', min=0.0),
        Param('gap_sec', float, 0.0, 'session windows: a key\'s session ends after this long without packets',
              min=0.0),
        Param('allowed_lateness_sec', float, 0.0, 'a fired window still takes packets this long', min=0.0),
        Param('watermark_delay_sec', float, 0.0, 'how far out of order event times may arrive', min=0.0),
        Param('key_field', str, '', 'payload field (a.b.c) that keys the aggregation; empty: one key'),
        Param('value_field', str, '', 'numeric payload field for sum/min/max/mean/p50/p95'),
        Param('distinct_field', str, '', 'payload field whose distinct values distinct_count counts'),
        Param('time_field', str, '', 'payload field with the event time (ISO 8601); empty: the packet ts'),
        Param('aggregates', list, ['count'], f'any of {list(aggregates.AGGREGATES)}'),
        Param('write_ahead', bool, False, 'checkpoint after every packet or batch (needs config.state)'),
        Param('queue_meta_key', str, 'durable',
              'meta key of queue rows {path, seq}: redeliveries are skipped'),
    )
    STATE_VERSION = 1

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        errors = []
        names = params.get('aggregates') or []
        unknown = [n for n in names if n not in aggregates.AGGREGATES]
        if unknown or not names:
            errors.append(
                f"parameter 'aggregates': {unknown or names!r}: choose from {list(aggregates.AGGREGATES)}"
            )
        if aggregates.NUMERIC & set(names) and not params.get('value_field'):
            errors.append(f"parameter 'value_field': required for {sorted(aggregates.NUMERIC & set(names))}")
        if 'distinct_count' in names and not params.get('distinct_field'):
            errors.append("parameter 'distinct_field': required for distinct_count")
        kind = params.get('window')
        slide, size = params.get('slide_sec') or 0.0, params.get('size_sec') or 0.0
        if kind == SLIDING and not 0 < slide <= size:
            errors.append(
                f"parameter 'slide_sec': sliding windows need 0 < slide_sec <= size_sec, got {slide!r}"
            )
        if kind == SESSION and not (params.get('gap_sec') or 0) > 0:
            errors.append("parameter 'gap_sec': session windows need gap_sec > 0")
        return errors

    def setup(self) -> None:
        problems = self.check_params(self.params)
        if problems:
            raise ValueError(problems[0])
        p = self.params
        self.names = tuple(p['aggregates'])
        self.key_field, self.value_field = p['key_field'], p['value_field']
        self.distinct_field, self.time_field = p['distinct_field'], p['time_field']
        self.track_distinct = 'distinct_count' in self.names
        spec = WindowSpec(
            kind=p['window'],
            size_us=round(p['size_sec'] * _US),
            slide_us=round(p['slide_sec'] * _US),
            gap_us=round(p['gap_sec'] * _US),
            lateness_us=round(p['allowed_lateness_sec'] * _US),
            watermark_delay_us=round(p['watermark_delay_sec'] * _US),
        )
        self.state = WindowState(spec)
        self.queue_seq: dict[str, int] = {}  # queue path -> highest row seq the state holds
        self._replay = False  # restored: re-emit the fired windows before the next results

    def _redelivered(self, packet: StreamPacket) -> bool:
        """A queue row the state already holds (a crash came between checkpoint and ack)."""
        row = packet.meta.get(self.params['queue_meta_key']) if self.params['queue_meta_key'] else None
        if not isinstance(row, Mapping) or not isinstance(row.get('seq'), int):
            return False
        queue = str(row.get('path', ''))
        if row['seq'] <= self.queue_seq.get(queue, -1):
            return True
        self.queue_seq[queue] = row['seq']
        return False

    # -- data path --------------------------------------------------------------------------------
    def _event_time(self, packet: StreamPacket) -> int:
        ts = field_value(packet.payload, self.time_field) if self.time_field else packet.ts
        try:
            return ts_to_micros(str(ts))
        except ValueError:
            raise ValueError(f'{self.node_id}: packet {packet.packet_id}: event time {ts!r} is not an '
                             f'ISO-8601 time ({self.time_field or "ts"})') from None

    def _accept(self, packet: StreamPacket) -> list[StreamPacket]:
        if self._redelivered(packet):
            self.count('redelivered_total')
            return []
        t_us = self._event_time(packet)
        payload = packet.payload
        key = field_value(payload, self.key_field) if self.key_field else ''
        key = '' if key is None else str(key)
        value = None
        if self.value_field:
            raw = field_value(payload, self.value_field)
            if isinstance(raw, int | float) and not isinstance(raw, bool) and raw == raw:
                value = float(raw)
            else:
                self.count('missing_value_total')
        distinct = field_value(payload, self.distinct_field) if self.track_distinct else None
        if not self.state.add(key, t_us, value, distinct, self.track_distinct):
            self.count('late_total')
            self.emit(packet, LATE_PORT)
        else:
            self.count('accepted_total')
        self.state.advance(t_us)
        out = [self._result(f) for f in self.state.fire()]
        evicted = self.state.evict(self.state_max_keys)
        if evicted:
            self.count('state_evicted_total', len(evicted))
            out += [self._result(f, partial=True) for f in evicted]
        self.gauge('open_windows', len(self.state))
        self.gauge('watermark_lag_sec', round((self.state.max_seen - self.state.watermark) / _US, 6))
        return out

    def _replayed(self) -> list[StreamPacket]:
        self._replay = False
        out = []
        for (key, start), window in self.state.windows.items():
            if window['fired'] and not window['dirty']:
                fired = Fired(key, start, window['end'], window['fired'], window['acc'])
                out.append(self._result(fired, replayed=True))
        return out

    def _result(self, fired: Fired, partial: bool = False, replayed: bool = False) -> StreamPacket:
        self.count('windows_replayed_total' if replayed else 'windows_fired_total')
        payload = {
            'window': self.state.spec.kind,
            'key': fired.key,
            'start': micros_to_ts(fired.start_us),
            'end': micros_to_ts(fired.end_us),
            'revision': fired.revision,
            **aggregates.result(fired.acc, self.names),
        }
        if partial:
            payload['partial'] = True
        if replayed:
            payload['replayed'] = True
        key = f'{self.node_id}:{fired.key}:{fired.start_us}:{fired.revision}'
        return StreamPacket.new(Kind.METRICS, self.node_id, payload, {MetaKey.IDEMPOTENCY_KEY: key},
                                ts=micros_to_ts(fired.end_us))

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        return self.process_batch((packet,), port)

    def process_batch(self, packets: Sequence[StreamPacket], port: str = 'in') -> Outputs:
        out: list[StreamPacket] = self._replayed() if self._replay else []
        for packet in packets:
            out += self._accept(packet)
        if self.params['write_ahead']:
            self.checkpoint()  # one commit for the batch (group commit)
            for packet in packets:  # now durable: the queue may forget them
                self.emit(packet, DONE_PORT)
        return out

    # -- state (docs/state.md) --------------------------------------------------------------------
    def snapshot_state(self) -> dict[str, Any]:
        spec = self.state.spec
        return {'spec': [spec.kind, spec.size_us, spec.slide_us, spec.gap_us],
                'queue_seq': dict(self.queue_seq), **self.state.snapshot()}

    def restore_state(self, state: dict[str, Any]) -> None:
        spec = self.state.spec
        if state.get('spec') != [spec.kind, spec.size_us, spec.slide_us, spec.gap_us]:
            now = [spec.kind, spec.size_us, spec.slide_us, spec.gap_us]
            self.log.warning(f'{self.node_id}: state kept for windows {state.get("spec")!r}, the node '
                             f'now has {now!r}: windows start fresh')
            return
        self.state.load(state)
        self.queue_seq = {str(k): int(v) for k, v in dict(state.get('queue_seq') or {}).items()}
        self._replay = True
        self.gauge('open_windows', len(self.state))
