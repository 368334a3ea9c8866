"""The controller's decisions: rules over metrics, acting on knobs, inside guardrails.

Pure logic, no ROS, no threads, no clock of its own: every call gets `now` (seconds), so a test
injects metrics and times and gets the same decisions on any machine. The plugin
(nodes/control/autonomic_controller.py) feeds it metrics, asks it to `evaluate`, sends the applied
knob changes to the nodes and logs every decision.

One evaluation, in order:
1. safe mode: a metric a rule reads is missing or older than `stale_after_sec` -> stop acting, put
   knobs with a `safe` value there, log which metrics are missing; leave safe mode once all are back;
2. rollback: an action whose `target` metric got worse by `worse_by` within `after_sec` is undone
   and its rule is suppressed until its condition clears;
3. conditions: a rule turns active when its metric is beyond `trigger` for `for_sec` and inactive
   only when it is back beyond `clear` (hysteresis: no flapping in between);
4. mode: the first active mode rule's mode, else normal (an operator's pin_mode wins); entering a
   mode saves and sets its knob values, leaving restores them;
5. knob rules, one decision per knob per evaluation: pinned, held by the mode, unknown value,
   cooldown -> rejected; the step limit and the bounds cut the change; no change left -> rejected.

A rejection that repeats the previous outcome of the same rule (still in cooldown, still at the
bound) is counted in `repeats`, not logged again: the log shows every change of outcome.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from schnitzel_stream_ros.autonomic import decision as g
from schnitzel_stream_ros.autonomic.decision import Decision
from schnitzel_stream_ros.autonomic.spec import ControllerSpec, Knob, MetricRef, Rule

#: Samples kept per metric for rate(...) (bounded; the rate spans the oldest to the newest of the
#: configured window, `rate_window_sec`).
RATE_SAMPLES = 64


@dataclass
class _RuleState:
    since: float | None = None  # condition true since (not yet for_sec)
    active: bool = False
    suppressed: bool = False  # rolled back: off until the condition clears
    last_outcome: tuple[str | None, str | None] | None = None


@dataclass
class _Watch:
    rule: Rule
    knob: str
    old: float
    new: float
    before: float
    deadline: float


class Policy:
    """Decisions over time for one controller configuration."""

    def __init__(self, spec: ControllerSpec) -> None:
        self.spec = spec
        self.values: dict[str, float | None] = dict.fromkeys(spec.knobs)  # None: not known yet
        self.pins: dict[str, float] = {}
        self.pinned_mode: str | None = None
        self.mode = 'normal'
        self.safe = False
        self.repeats = 0
        self._samples: dict[str, deque[tuple[float, float]]] = {
            ref.name: deque(maxlen=RATE_SAMPLES) for ref in spec.metrics}
        self._rules = {rule.id: _RuleState() for rule in spec.rules}
        self._last_change: dict[str, float] = {}
        self._saved: dict[str, float] = {}  # knob values before the current mode set them
        self._watches: list[_Watch] = []
        self._missing: tuple[str, ...] = ()

    # -- inputs -------------------------------------------------------------------------------
    def observe(self, values: Mapping[str, float], now: float) -> None:
        """Metric values seen at `now`; only the metrics the rules read are kept."""
        for name, value in values.items():
            samples = self._samples.get(name)
            if samples is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            if samples and samples[-1][0] > now:
                samples.clear()  # time went back (a restart of the clock): start over
            samples.append((now, float(value)))

    def known(self, knob: str, value: float) -> None:
        """The knob's current value as the node reports it (at start, after a set)."""
        if knob in self.values:
            self.values[knob] = value

    def metric(self, ref: MetricRef, now: float) -> float | None:
        """The metric's value at `now`, None when missing or stale."""
        samples = self._samples.get(ref.name)
        if not samples or now - samples[-1][0] > self.spec.stale_after_sec:
            return None
        if not ref.rate:
            return samples[-1][1]
        window = [s for s in samples if now - s[0] <= self.spec.rate_window_sec]
        if len(window) < 2 or window[-1][0] <= window[0][0]:
            return None
        return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])

    def _seen(self, now: float) -> dict[str, float]:
        out = {}
        for ref in self.spec.metrics:
            value = self.metric(ref, now)
            if value is not None:
                out[ref.text] = round(value, 6)
        return out

    # -- operator -----------------------------------------------------------------------------
    def pin(self, knob: str, value: float | None, now: float) -> list[Decision]:
        """The operator pins a knob (None: lifts the pin; rules take over from its current value)."""
        spec = self.spec.knobs[knob]
        if value is None:
            if knob not in self.pins:
                return []
            del self.pins[knob]
            return [Decision(now, 'operator', 'unpin', knob=knob, old=self.values[knob],
                             new=self.values[knob], reason='pin lifted: rules act on the knob again')]
        value = self._shape(spec, value)
        self.pins[knob] = value
        self._watches = [w for w in self._watches if w.knob != knob]
        old = self.values[knob]
        self.values[knob] = value
        self._last_change[knob] = now
        return [Decision(now, 'operator', 'pin', knob=knob, old=old, new=value,
                         reason='pinned by the operator: rules and modes leave it alone')]

    def pin_mode(self, mode: str | None, now: float) -> list[Decision]:
        """The operator pins a mode (None: lifted; the rules choose the mode again)."""
        if mode == self.pinned_mode:
            return []
        old_pin = self.pinned_mode
        self.pinned_mode = mode
        out = [Decision(now, 'operator', 'pin' if mode else 'unpin', mode=mode or old_pin,
                        reason=f'mode pinned to {mode}' if mode else 'mode pin lifted')]
        if mode is not None and mode != self.mode:
            out += self._switch_mode(mode, now, 'operator')
        return out

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Decision]:
        """One round of decisions at `now` (see the module docstring for the order)."""
        seen = self._seen(now)
        missing = tuple(ref.text for ref in self.spec.metrics if ref.text not in seen)
        if missing:
            return self._enter_safe(missing, seen, now)
        out: list[Decision] = []
        if self.safe:
            self.safe = False
            self._missing = ()
            out.append(Decision(now, 'safe_mode', 'leave', reason='every metric is back: rules act again',
                                metrics=seen))
        out += self._rollbacks(seen, now)
        self._conditions(seen, now)
        out += self._mode(seen, now)
        out += self._knob_rules(seen, now)
        return out

    def _enter_safe(self, missing: tuple[str, ...], seen: dict[str, float], now: float) -> list[Decision]:
        if self.safe and missing == self._missing:
            self.repeats += 1
            return []
        out = []
        if not self.safe:
            self.safe = True
            for state in self._rules.values():
                state.since, state.active = None, False
            self._watches.clear()
            out.append(Decision(now, 'safe_mode', 'enter', guardrail=g.SAFE_MODE,
                                reason=f"metrics missing or stale: {', '.join(missing)}", metrics=seen))
            for knob in self.spec.knobs.values():
                if knob.safe is None:
                    continue
                if knob.name in self.pins:
                    out.append(Decision(now, 'safe_mode', 'reject', knob=knob.name,
                                        old=self.values[knob.name], new=knob.safe, guardrail=g.PINNED,
                                        reason='pinned by the operator'))
                elif self.values[knob.name] != knob.safe:
                    out.append(self._set(knob, knob.safe, now, 'safe_mode', g.SAFE_MODE,
                                         'safe value while metrics are missing', seen))
        else:
            out.append(Decision(now, 'safe_mode', 'enter', guardrail=g.SAFE_MODE,
                                reason=f"metrics missing or stale: {', '.join(missing)}", metrics=seen))
        self._missing = missing
        return out

    def _rollbacks(self, seen: dict[str, float], now: float) -> list[Decision]:
        out = []
        keep = []
        for watch in self._watches:
            if now < watch.deadline:
                keep.append(watch)
                continue
            target = watch.rule.target
            assert target is not None
            after = seen.get(target.text)
            if after is None:
                continue
            change = (after - watch.before) / max(abs(watch.before), 1e-9)
            worse = change if watch.rule.lower_is_better else -change
            knob = self.spec.knobs[watch.knob]
            if worse <= self.spec.rollback.worse_by or self.values[watch.knob] != watch.new:
                continue  # helped (or not enough worse), or something else moved the knob since
            state = self._rules[watch.rule.id]
            state.suppressed = True
            state.last_outcome = (g.ROLLED_BACK, watch.knob)  # the rollback record says it; no second line
            out.append(self._set(knob, watch.old, now, watch.rule.id, g.ROLLBACK,
                                 f'{target.text} went from {watch.before:g} to {after:g} after the change '
                                 f'({worse:+.0%} worse): undone, rule off until its condition clears', seen))
        self._watches = keep
        return out

    def _conditions(self, seen: dict[str, float], now: float) -> None:
        for rule in self.spec.rules:
            state = self._rules[rule.id]
            value = seen[rule.when.metric.text]
            if state.active:
                if rule.when.cleared(value):
                    state.active, state.since, state.suppressed = False, None, False
                continue
            if rule.when.triggered(value):
                state.since = now if state.since is None else state.since
                state.active = now - state.since >= rule.when.for_sec
            else:
                state.since = None
                if rule.when.cleared(value):
                    state.suppressed = False

    def _mode(self, seen: dict[str, float], now: float) -> list[Decision]:
        wanted = next((r.mode for r in self.spec.rules
                       if r.mode and self._rules[r.id].active and not self._rules[r.id].suppressed), None)
        rule = next((r.id for r in self.spec.rules
                     if r.mode and r.mode == wanted and self._rules[r.id].active), 'rules')
        wanted = wanted or 'normal'
        if self.pinned_mode is not None:
            if wanted != self.pinned_mode:
                return self._reject_once(rule, None, wanted, g.PINNED,
                                         f'mode pinned to {self.pinned_mode} by the operator', seen, now,
                                         mode=wanted)
            wanted = self.pinned_mode
        if wanted == self.mode:
            return []
        return self._switch_mode(wanted, now, rule, seen)

    def _switch_mode(self, mode: str, now: float, rule: str,
                     seen: dict[str, float] | None = None) -> list[Decision]:
        seen = seen if seen is not None else self._seen(now)
        out = [Decision(now, rule, 'leave', mode=self.mode, reason=f'mode {self.mode} -> {mode}',
                        metrics=seen)]
        for knob_name, value in self._saved.items():  # what the old mode set goes back
            if knob_name in self.pins:
                continue
            out.append(self._set(self.spec.knobs[knob_name], value, now, rule, None,
                                 f'leaving mode {self.mode}: back to the value before it', seen))
        self._saved = {}
        self.mode = mode
        out.append(Decision(now, rule, 'enter', mode=mode, reason=f'mode {mode}', metrics=seen))
        for knob_name, value in self.spec.modes.get(mode, {}).items():
            knob = self.spec.knobs[knob_name]
            if knob_name in self.pins:
                out.append(Decision(now, rule, 'reject', knob=knob_name, mode=mode,
                                    old=self.values[knob_name], new=value, guardrail=g.PINNED,
                                    reason='pinned by the operator'))
                continue
            current = self.values[knob_name]
            if current is not None:
                self._saved[knob_name] = current
            out.append(self._set(knob, value, now, rule, None, f'mode {mode} sets it', seen))
        return out

    def _knob_rules(self, seen: dict[str, float], now: float) -> list[Decision]:
        out: list[Decision] = []
        decided: set[str] = set()
        for rule in self.spec.rules:
            state = self._rules[rule.id]
            if rule.knob is None or not state.active or rule.knob in decided:
                continue
            decided.add(rule.knob)
            knob = self.spec.knobs[rule.knob]
            old = self.values[knob.name]
            proposed = None if old is None else (rule.set if rule.set is not None else old + (rule.by or 0.0))
            refusal = self._refusal(rule, knob, old, now)
            if refusal:
                out += self._reject_once(rule.id, knob.name, proposed, refusal[0], refusal[1], seen, now)
                continue
            assert old is not None and proposed is not None
            guardrail = None
            new = proposed
            if abs(new - old) > knob.max_step:
                new = old + math.copysign(knob.max_step, new - old)
                guardrail = g.STEP
            shaped = self._shape(knob, new)
            if shaped != self._shape(knob, new, clamp=False):
                guardrail = g.BOUNDS
            if shaped == old:
                bound = f' (bound {shaped:g})' if guardrail else ''
                out += self._reject_once(rule.id, knob.name, proposed, guardrail or g.NO_CHANGE,
                                         f'already at {old:g}{bound}', seen, now)
                continue
            state.last_outcome = ('set', None)
            out.append(self._set(knob, shaped, now, rule.id, guardrail,
                                 f'{rule.when.metric.text} = {seen[rule.when.metric.text]:g} '
                                 f"{'>' if rule.when.above else '<'} {rule.when.trigger:g}", seen, proposed))
            if rule.target is not None and rule.target.text in seen:
                self._watches.append(_Watch(rule, knob.name, old, shaped, seen[rule.target.text],
                                            now + self.spec.rollback.after_sec))
        return out

    def _refusal(self, rule: Rule, knob: Knob, old: float | None, now: float) -> tuple[str, str] | None:
        if self._rules[rule.id].suppressed:
            return g.ROLLED_BACK, 'its last action made the target worse: off until the condition clears'
        if knob.name in self.pins:
            return g.PINNED, f'pinned to {self.pins[knob.name]:g} by the operator'
        if knob.name in self.spec.modes.get(self.mode, {}):
            return g.MODE_HOLD, f'held by mode {self.mode}'
        if old is None:
            return g.UNKNOWN_VALUE, 'current value not known yet'
        since = now - self._last_change.get(knob.name, -math.inf)
        if since < knob.cooldown_sec:
            return g.COOLDOWN, f'changed {since:.1f} s ago (cooldown {knob.cooldown_sec:g} s)'
        return None

    # -- helpers ------------------------------------------------------------------------------
    def _reject_once(self, rule: str, knob: str | None, proposed: float | None, guardrail: str, reason: str,
                     seen: dict[str, float], now: float, mode: str | None = None) -> list[Decision]:
        state = self._rules.get(rule)
        outcome = (guardrail, knob or mode)
        if state is not None:
            if state.last_outcome == outcome:
                self.repeats += 1
                return []
            state.last_outcome = outcome
        return [Decision(now, rule, 'reject', knob=knob, mode=mode,
                         old=self.values.get(knob) if knob else self.mode, new=proposed, guardrail=guardrail,
                         reason=reason, metrics=seen)]

    def _set(self, knob: Knob, value: float, now: float, rule: str, guardrail: str | None, reason: str,
             seen: dict[str, float], proposed: float | None = None) -> Decision:
        value = self._shape(knob, value)
        old = self.values[knob.name]
        self.values[knob.name] = value
        self._last_change[knob.name] = now
        if proposed is not None and proposed != value:
            reason += f' (proposed {proposed:g})'
        return Decision(now, rule, 'set', knob=knob.name, mode=self.mode, old=old, new=value,
                        guardrail=guardrail, reason=reason, metrics=seen)

    @staticmethod
    def _shape(knob: Knob, value: float, clamp: bool = True) -> float:
        if clamp:
            value = min(knob.max, max(knob.min, value))
        return float(round(value)) if knob.integer else value

    def failed(self, knob: str, old: float | None, now: float, reason: str) -> Decision:
        """The node refused a change: the controller's view goes back to the old value."""
        attempted = self.values.get(knob)
        self.values[knob] = old
        return Decision(now, 'actuator', 'failed', knob=knob, old=old, new=attempted,
                        guardrail=g.ACTUATION_FAILED, reason=reason)
