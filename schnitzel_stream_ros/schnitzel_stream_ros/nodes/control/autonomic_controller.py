"""AutonomicController: rules over metrics that tune other nodes' dynamic parameters, inside
guardrails, with every decision logged and an operator override.

It lives in the graph like any plugin and never reaches into the runtime:
- it observes metrics on its inputs: `/diagnostics` (every container publishes each node's inbox
  depth and drops, rate, edge latency p99, queue depth, breaker state, CPU; port `diagnostics`,
  topic from `diagnostics_topic`, no edge needed) and/or `metrics` packets from graph edges
  (payload `{key: number}`; a key without a dot is read as `<source_id>.<key>`);
- it acts through the parameter services of the target nodes (plugin.RemoteParameters: what
  `ros2 param set` uses, so a knob may live in any container), and the node's own bounds and checks
  still apply;
- it decides with autonomic/policy.py (bounds, step limit, cooldown, hysteresis, rollback, safe mode,
  modes), and logs each decision and rejection: JSONL file (rotated), `~/decisions` (std_msgs/String
  JSON), counters in the run report;
- the operator pins a knob with `ros2 param set <controller> pin.<knob> <value>` (empty string: lift)
  and a mode with `pin_mode` (docs/autonomic.md). Those parameters are the interface of any control
  plane too.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from std_msgs.msg import String

from schnitzel_stream_ros.autonomic.decision import Decision
from schnitzel_stream_ros.autonomic.policy import Policy
from schnitzel_stream_ros.autonomic.spec import MODES, SpecError, parse_spec
from schnitzel_stream_ros.observability.rotating_file import RotatingLines
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket, format_ts, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port

DIAGNOSTICS_MSG_TYPE = 'diagnostic_msgs/msg/DiagnosticArray'
STRING_MSG_TYPE = 'std_msgs/msg/String'
PIN_PREFIX = 'pin.'
#: Bounds on what one message may make us read (a DiagnosticArray comes from any peer on the domain).
MAX_STATUSES = 1024
MAX_VALUES = 256
#: A knob whose value is unknown is asked for again at most this often.
GET_RETRY_SEC = 2.0
_MODE_CODES = {mode: i for i, mode in enumerate(MODES)}


def _spec_of(params: Mapping[str, Any]):
    return parse_spec(params['knobs'], params['rules'], params['modes'], params['rollback'],
                      params['stale_after_sec'], params['rate_window_sec'])


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def diagnostics_metrics(array: Any) -> dict[str, float]:
    """`node.key` -> value of a DiagnosticArray (node statuses are named '<container>: <node>',
    container statuses by the container's name; only numeric values)."""
    out: dict[str, float] = {}
    for status in list(getattr(array, 'status', ()))[:MAX_STATUSES]:
        name = str(getattr(status, 'name', ''))
        owner = name.split(': ', 1)[1] if ': ' in name else name.rsplit('/', 1)[-1]
        if not owner or ' ' in owner:
            continue  # an edge status ('topic -> node.port') or a foreign one
        for item in list(getattr(status, 'values', ()))[:MAX_VALUES]:
            value = _number(getattr(item, 'value', None))
            if value is not None:
                out[f'{owner}.{item.key}'] = value
    return out


class AutonomicController(Plugin):
    """Tune knobs (other nodes' dynamic parameters) from metrics by declarative rules, with guardrails."""

    INPUTS = (
        Port('in', frozenset({Kind.METRICS}), required=False,
             description='metrics packets: payload {key: number}'),
        Port('diagnostics', frozenset({Kind.RAW}), PayloadProfile.INPROC_ANY, msg_type=DIAGNOSTICS_MSG_TYPE,
             required=False, topic_param='diagnostics_topic',
             description='/diagnostics of the containers (no edge needed)'),
    )
    OUTPUTS = (
        Port('decisions', frozenset({Kind.CONTROL}), PayloadProfile.INPROC_ANY, msg_type=STRING_MSG_TYPE,
             description='every decision as JSON (std_msgs/String)'),
    )
    PARAMS = (
        Param('knobs', dict, {}, 'name -> {node, param, min, max, max_step, cooldown_sec, safe, integer}'),
        Param('rules', list, [], '[{id, when: {metric, above|below, clear_below|clear_above, for_sec}, '
              'do: {knob, by|set} | {mode}, target, lower_is_better}]'),
        Param('modes', dict, {}, 'mode -> {knob: value} (normal, low_power, low_bandwidth)'),
        Param('rollback', dict, {}, '{after_sec: 10, worse_by: 0.1}'),
        Param('stale_after_sec', float, 5.0, 'a metric older than this is missing (safe mode)', min=0.01),
        Param('rate_window_sec', float, 10.0, 'rate(node.key) is the growth over this many seconds',
              min=0.1, max=3600.0),
        Param('diagnostics_topic', str, '/diagnostics',
              'where container diagnostics come from; empty = none'),
        Param('decision_log', str, '', 'JSONL file of every decision (rotated); empty = none'),
        Param('decision_log_max_bytes', int, 16 << 20, 'rotate the decision log at this size', min=1024),
        Param('decision_log_keep', int, 4, 'rotated decision logs kept', min=0, max=100),
        Param('pin_mode', str, '', 'operator: hold this mode (empty = the rules decide)',
              choices=('', *MODES), dynamic=True),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        try:
            _spec_of(params)
        except SpecError as exc:
            family = str(exc).split('.', 1)[0].split('[', 1)[0].split(':', 1)[0]
            family = family if family in ('knobs', 'rules', 'modes', 'rollback') else 'rules'
            return [f'parameter {family!r}: {exc}']
        return []

    @classmethod
    def runtime_params(cls, params: Mapping[str, Any]) -> tuple[Param, ...]:
        try:
            spec = _spec_of(params)
        except (SpecError, KeyError):
            return ()
        return tuple(Param(f'{PIN_PREFIX}{k.name}', float, None,
                           f'operator: hold knob {k.name} ({k.node} {k.param}) at this value; '
                           'empty = not pinned',
                           min=k.min, max=k.max, dynamic=True) for k in spec.knobs.values())

    # -- life cycle -------------------------------------------------------------------------------
    def setup(self) -> None:
        self.spec = _spec_of(self.params)
        self.policy = Policy(self.spec)
        self._now = 0.0
        self._remote_type: dict[str, type] = {}
        self._asked: dict[str, float] = {}
        path = self.params['decision_log']
        self._decision_file = (RotatingLines(path, max_bytes=self.params['decision_log_max_bytes'],
                                   keep=self.params['decision_log_keep']) if path else None)
        self.gauge('mode_code', 0)
        self.gauge('safe_mode', 0)

    def on_start(self) -> None:
        for knob in self.spec.knobs:
            self._ask(knob, self._clock())
        pins = [(k[len(PIN_PREFIX):], v) for k, v in self.params.items() if k.startswith(PIN_PREFIX)]
        self._apply([d for knob, v in pins if v is not None and knob in self.spec.knobs
                     for d in self.policy.pin(knob, float(v), self._clock())])
        if self.params['pin_mode']:
            self._apply(self.policy.pin_mode(self.params['pin_mode'], self._clock()))

    def close(self) -> None:
        if getattr(self, '_decision_file', None) is not None:
            self._decision_file.close()

    # -- inputs -----------------------------------------------------------------------------------
    def process(self, packet: StreamPacket, port: str = 'in') -> None:
        now = parse_ts(packet.ts).timestamp()
        self._now = max(self._now, now)
        if port == 'diagnostics':
            values = diagnostics_metrics(packet.payload)
        else:
            payload = packet.payload if isinstance(packet.payload, Mapping) else {}
            values = {}
            for key, value in list(payload.items())[:MAX_VALUES]:
                number = _number(value) if not isinstance(value, bool) else None
                if number is not None and isinstance(key, str):
                    values[key if '.' in key else f'{packet.source_id}.{key}'] = number
        self.policy.observe(values, now)
        for knob, value in self.policy.values.items():
            if value is None:
                self._ask(knob, now)
        self._apply(self.policy.evaluate(now))

    def on_params(self, changed: Mapping[str, Any]) -> None:
        now = self._clock()
        for name, value in changed.items():
            if name == 'pin_mode':
                self._apply(self.policy.pin_mode(value or None, now))
            elif name.startswith(PIN_PREFIX) and name[len(PIN_PREFIX):] in self.spec.knobs:
                knob = name[len(PIN_PREFIX):]
                self._apply(self.policy.pin(knob, None if value is None else float(value), now))

    # -- acting -----------------------------------------------------------------------------------
    def _clock(self) -> float:
        """Time of the newest metric seen (packet time: a replay decides the same), else the wall."""
        return self._now or time.time()

    def _ask(self, knob_name: str, now: float) -> None:
        parameters = self.ctx.parameters
        if parameters is None or now - self._asked.get(knob_name, -math.inf) < GET_RETRY_SEC:
            return
        self._asked[knob_name] = now
        knob = self.spec.knobs[knob_name]

        def done(value: Any, error: str | None) -> None:
            number = _number(value) if not isinstance(value, str) else None
            if error is None and number is not None and self.policy.values[knob_name] is None:
                self._remote_type[knob_name] = type(value)
                self.policy.known(knob_name, number)
                self.gauge(f'knob.{knob_name}', number)
            elif error is not None:
                self.count('knob_read_failed_total')

        parameters.get(knob.node, knob.param, done)

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            self._record(decision)
            if decision.applied:
                self._send(decision)

    def _send(self, decision: Decision) -> None:
        parameters = self.ctx.parameters
        knob = self.spec.knobs[decision.knob]
        value = self._as_remote(decision.knob, decision.new)
        if parameters is None:
            self._record(self.policy.failed(decision.knob, decision.old, decision.t, 'no parameter access'))
            return

        def done(_value: Any, error: str | None) -> None:
            if error is None:
                self.count('knob_changes_total')
                self.gauge(f'knob.{knob.name}', float(decision.new))
            elif self.policy.values.get(knob.name) == decision.new:  # nothing newer replaced it meanwhile
                self._record(self.policy.failed(knob.name, decision.old, self._clock(), error))

        parameters.set(knob.node, knob.param, value, done)

    def _as_remote(self, knob: str, value: float) -> Any:
        kind = self._remote_type.get(knob)
        if kind is bool:
            return value >= 0.5
        if kind is int or self.spec.knobs[knob].integer:
            return round(value)
        return float(value)

    def _record(self, decision: Decision) -> None:
        record = {'controller': self.node_id, 'ts': format_ts_safe(decision.t), **decision.as_dict()}
        self.count('decisions_total')
        if decision.action == 'reject':
            self.count('rejected_total')
        elif decision.action == 'failed':
            self.count('failed_total')
        self.gauge('mode_code', _MODE_CODES.get(self.policy.mode, 0))
        self.gauge('safe_mode', 1 if self.policy.safe else 0)
        self.gauge('repeats_total', self.policy.repeats)
        text = json.dumps(record, sort_keys=True, allow_nan=False)
        if self._decision_file is not None:
            rotations = self._decision_file.rotations
            self._decision_file.write(text)
            if self._decision_file.rotations != rotations:  # bounded file: rotations counted
                self.count('decision_log_rotations_total')
        self.emit(StreamPacket.new(Kind.CONTROL, self.node_id, String(data=text)), 'decisions')


def format_ts_safe(t: float) -> str:
    """ISO text of a decision's time (empty when the number is no time)."""
    try:
        return format_ts(datetime.fromtimestamp(t, UTC))
    except (OverflowError, OSError, ValueError):
        return ''
