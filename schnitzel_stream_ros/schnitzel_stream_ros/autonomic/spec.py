"""The controller's configuration as the graph file writes it: knobs, rules, modes, rollback.

Parsed once (at validation and at setup) into frozen dataclasses; every problem is one string that
names the place (`knobs.cam_fps.max`, `rules[2].when.metric`), which the validator reports at the
node's line. A configuration is hostile input like any graph: counts and names are bounded.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MODES = ('normal', 'low_power', 'low_bandwidth')
MAX_KNOBS = 64
MAX_RULES = 128
_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,63}$')
_NODE = re.compile(r'^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*){0,16}$')
#: `node.key` (a /diagnostics value or a metrics packet's key) or `rate(node.key)` (its growth per second)
_METRIC = re.compile(r'^(?:(rate)\()?([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*)\)?$')


class SpecError(ValueError):
    """A controller configuration problem; the message names the place."""


@dataclass(frozen=True)
class Knob:
    """One tunable: a dynamic parameter of a node, with the controller's own guardrails."""

    name: str
    node: str  # node name: relative to the controller's namespace, or absolute
    param: str
    min: float
    max: float
    max_step: float  # largest change of one decision (inf: no limit)
    cooldown_sec: float  # least time between two changes by rules
    safe: float | None  # value in safe mode (metrics missing); None: left where it is
    integer: bool  # the parameter is an int (values are rounded)


@dataclass(frozen=True)
class MetricRef:
    """`node.key`, or its growth per second (`rate(node.key)`)."""

    text: str
    name: str
    rate: bool


@dataclass(frozen=True)
class Condition:
    """Active once the metric is beyond `trigger` for `for_sec`; stays active until it is back
    beyond `clear` (hysteresis: between the two, the state does not change)."""

    metric: MetricRef
    above: bool  # True: trigger when metric > trigger; False: when metric < trigger
    trigger: float
    clear: float
    for_sec: float

    def triggered(self, value: float) -> bool:
        return value > self.trigger if self.above else value < self.trigger

    def cleared(self, value: float) -> bool:
        return value < self.clear if self.above else value > self.clear


@dataclass(frozen=True)
class Rule:
    """When a condition is active: change a knob (by a step or to a value), or switch the mode."""

    id: str
    when: Condition
    knob: str | None = None
    by: float | None = None
    set: float | None = None
    mode: str | None = None
    target: MetricRef | None = None  # the metric the action should improve (rollback watches it)
    lower_is_better: bool = True


@dataclass(frozen=True)
class Rollback:
    """After an action with a target: if the target got worse by `worse_by` (relative) within
    `after_sec`, the knob goes back to where it was."""

    after_sec: float = 10.0
    worse_by: float = 0.1


@dataclass(frozen=True)
class ControllerSpec:
    knobs: Mapping[str, Knob]
    rules: tuple[Rule, ...]
    modes: Mapping[str, Mapping[str, float]]  # mode -> knob -> value (normal: usually empty)
    rollback: Rollback
    stale_after_sec: float
    rate_window_sec: float = 10.0  # rate(...) spans the samples of this many seconds

    @property
    def metrics(self) -> tuple[MetricRef, ...]:
        """Every metric a rule reads (what safe mode waits for)."""
        refs: dict[str, MetricRef] = {}
        for rule in self.rules:
            for ref in (rule.when.metric, rule.target):
                if ref is not None:
                    refs.setdefault(ref.text, ref)
        return tuple(refs.values())


def _number(value: Any, where: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f'{where}: expected a finite number, got {value!r}')
    if minimum is not None and value < minimum:
        raise SpecError(f'{where}: {value!r} is below {minimum}')
    return float(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f'{where}: expected a mapping, got {type(value).__name__}')
    return value


def _unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(str(k) for k in data if k not in known)
    if extra:
        raise SpecError(f'{where}: unknown key {extra[0]!r} (known: {", ".join(sorted(known))})')


def metric_ref(text: Any, where: str) -> MetricRef:
    match = _METRIC.match(text) if isinstance(text, str) and len(text) <= 200 else None
    if match is None or (match.group(1) is None) != (not text.endswith(')')):
        raise SpecError(f"{where}: {text!r} is not a metric (write 'node.key' or 'rate(node.key)')")
    return MetricRef(text, match.group(2), match.group(1) == 'rate')


def _knob(name: str, data: Any, where: str) -> Knob:
    data = _mapping(data, where)
    _unknown(data, {'node', 'param', 'min', 'max', 'max_step', 'cooldown_sec', 'safe', 'integer'}, where)
    node = data.get('node')
    if not isinstance(node, str) or not _NODE.match(node):
        raise SpecError(f'{where}.node: expected a ROS node name, got {node!r}')
    param = data.get('param')
    if not isinstance(param, str) or not _NAME.match(param):
        raise SpecError(f'{where}.param: expected a parameter name, got {param!r}')
    for key in ('min', 'max'):
        if key not in data:
            raise SpecError(f'{where}.{key}: required (every knob is bounded)')
    low, high = _number(data['min'], f'{where}.min'), _number(data['max'], f'{where}.max')
    if low > high:
        raise SpecError(f'{where}.min: {low} is above max {high}')
    step = (math.inf if data.get('max_step') is None
            else _number(data['max_step'], f'{where}.max_step', minimum=0.0))
    if step == 0:
        raise SpecError(f'{where}.max_step: 0 would forbid every change')
    safe = data.get('safe')
    if safe is not None:
        safe = _number(safe, f'{where}.safe')
        if not low <= safe <= high:
            raise SpecError(f'{where}.safe: {safe} is outside [{low}, {high}]')
    integer = data.get('integer', False)
    if not isinstance(integer, bool):
        raise SpecError(f'{where}.integer: expected true or false')
    return Knob(name, node, param, low, high, step,
                _number(data.get('cooldown_sec', 0.0), f'{where}.cooldown_sec', minimum=0.0), safe, integer)


def _condition(data: Any, where: str) -> Condition:
    data = _mapping(data, where)
    _unknown(data, {'metric', 'above', 'below', 'clear_below', 'clear_above', 'for_sec'}, where)
    metric = metric_ref(data.get('metric'), f'{where}.metric')
    if ('above' in data) == ('below' in data):
        raise SpecError(f'{where}: name exactly one of above / below')
    above = 'above' in data
    trigger = _number(data['above' if above else 'below'], f"{where}.{'above' if above else 'below'}")
    clear_key = 'clear_below' if above else 'clear_above'
    other = 'clear_above' if above else 'clear_below'
    if other in data:
        raise SpecError(f"{where}.{other}: with {'above' if above else 'below'}, write {clear_key}")
    clear = _number(data.get(clear_key, trigger), f'{where}.{clear_key}')
    if (above and clear > trigger) or (not above and clear < trigger):
        raise SpecError(f'{where}.{clear_key}: {clear} is on the wrong side of the trigger {trigger}')
    return Condition(metric, above, trigger, clear, _number(data.get('for_sec', 0.0), f'{where}.for_sec',
                                                             minimum=0.0))


def _rule(index: int, data: Any, knobs: Mapping[str, Knob]) -> Rule:
    where = f'rules[{index}]'
    data = _mapping(data, where)
    _unknown(data, {'id', 'when', 'do', 'target', 'lower_is_better'}, where)
    rule_id = data.get('id', f'rule{index}')
    if not isinstance(rule_id, str) or not _NAME.match(rule_id):
        raise SpecError(f'{where}.id: expected an identifier, got {rule_id!r}')
    when = _condition(data.get('when'), f'{where}.when')
    action = _mapping(data.get('do'), f'{where}.do')
    _unknown(action, {'knob', 'by', 'set', 'mode'}, f'{where}.do')
    knob = action.get('knob')
    mode = action.get('mode')
    by = set_to = None
    if (knob is None) == (mode is None):
        raise SpecError(f'{where}.do: name exactly one of knob / mode')
    if knob is not None:
        if knob not in knobs:
            raise SpecError(f'{where}.do.knob: unknown knob {knob!r} (knobs: {", ".join(knobs) or "none"})')
        if ('by' in action) == ('set' in action):
            raise SpecError(f'{where}.do: with a knob, name exactly one of by / set')
        if 'by' in action:
            by = _number(action['by'], f'{where}.do.by')
        else:
            set_to = _number(action['set'], f'{where}.do.set')
    elif mode not in MODES:
        raise SpecError(f'{where}.do.mode: {mode!r} is not one of {", ".join(MODES)}')
    target = metric_ref(data['target'], f'{where}.target') if data.get('target') is not None else None
    lower = data.get('lower_is_better', True)
    if not isinstance(lower, bool):
        raise SpecError(f'{where}.lower_is_better: expected true or false')
    return Rule(rule_id, when, knob, by, set_to, mode, target, lower)


def parse_spec(knobs: Any, rules: Any, modes: Any, rollback: Any, stale_after_sec: float,
               rate_window_sec: float = 10.0) -> ControllerSpec:
    """The controller configuration, or SpecError naming the first problem."""
    knobs = _mapping(knobs, 'knobs')
    if len(knobs) > MAX_KNOBS:
        raise SpecError(f'knobs: {len(knobs)} knobs, at most {MAX_KNOBS}')
    parsed: dict[str, Knob] = {}
    for name, data in knobs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecError(f'knobs: {name!r} is not an identifier')
        parsed[name] = _knob(name, data, f'knobs.{name}')
    if not isinstance(rules, list):
        raise SpecError(f'rules: expected a list, got {type(rules).__name__}')
    if len(rules) > MAX_RULES:
        raise SpecError(f'rules: {len(rules)} rules, at most {MAX_RULES}')
    parsed_rules = tuple(_rule(i, r, parsed) for i, r in enumerate(rules))
    ids = [r.id for r in parsed_rules]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise SpecError(f'rules: duplicate id {duplicate!r}')
    modes = _mapping(modes, 'modes')
    parsed_modes: dict[str, dict[str, float]] = {m: {} for m in MODES}
    for mode, values in modes.items():
        if mode not in MODES:
            raise SpecError(f'modes: {mode!r} is not one of {", ".join(MODES)}')
        for knob, value in _mapping(values, f'modes.{mode}').items():
            if knob not in parsed:
                raise SpecError(f'modes.{mode}: unknown knob {knob!r}')
            number = _number(value, f'modes.{mode}.{knob}')
            if not parsed[knob].min <= number <= parsed[knob].max:
                raise SpecError(f'modes.{mode}.{knob}: {number} is outside [{parsed[knob].min}, '
                                f'{parsed[knob].max}]')
            parsed_modes[mode][knob] = number
    rollback = _mapping(rollback, 'rollback')
    _unknown(rollback, {'after_sec', 'worse_by'}, 'rollback')
    parsed_rollback = Rollback(_number(rollback.get('after_sec', 10.0), 'rollback.after_sec', minimum=0.0),
                               _number(rollback.get('worse_by', 0.1), 'rollback.worse_by', minimum=0.0))
    return ControllerSpec(parsed, parsed_rules, parsed_modes, parsed_rollback, stale_after_sec,
                          rate_window_sec)
