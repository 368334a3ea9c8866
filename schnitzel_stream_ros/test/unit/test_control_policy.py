"""The controller's guardrails, decision by decision, with injected metrics and times.

The policy is pure (autonomic/policy.py): every test feeds metric values at given seconds and reads
the decisions back, so each guardrail — bounds, step limit, cooldown, hysteresis, rollback, safe
mode — and the operator's pins are checked with exact values.
"""

from __future__ import annotations

import pytest

from schnitzel_stream_ros.autonomic.policy import Policy
from schnitzel_stream_ros.autonomic.spec import SpecError, parse_spec

LATENCY = 'det.latency_p99_ms'


def _policy(rules, knobs=None, modes=None, rollback=None, stale=5.0, values=None) -> Policy:
    knobs = knobs or {'fps': {'node': 'gate', 'param': 'fps', 'min': 2, 'max': 30, 'max_step': 10}}
    policy = Policy(parse_spec(knobs, rules, modes or {}, rollback or {}, stale))
    for name, value in ({'fps': 30.0} if values is None else values).items():
        policy.known(name, value)
    return policy


def _step(policy: Policy, t: float, **metrics: float):
    policy.observe({k.replace('__', '.'): v for k, v in metrics.items()}, t)
    return [d.as_dict() for d in policy.evaluate(t)]


def _brief(decisions):
    return [(d['rule'], d['action'], d['knob'], d['old'], d['new'], d['guardrail']) for d in decisions]


SHED = {
    'id': 'shed',
    'when': {'metric': LATENCY, 'above': 200, 'clear_below': 150},
    'do': {'knob': 'fps', 'by': -5},
}
RESTORE = {
    'id': 'restore',
    'when': {'metric': LATENCY, 'below': 80, 'clear_above': 120},
    'do': {'knob': 'fps', 'by': 5},
}


def test_a_rule_changes_its_knob_and_says_why():
    policy = _policy([SHED])
    decisions = _step(policy, 0.0, det__latency_p99_ms=250.0)
    assert _brief(decisions) == [('shed', 'set', 'fps', 30.0, 25.0, None)]
    assert decisions[0]['metrics'] == {LATENCY: 250.0}
    assert decisions[0]['reason'] == 'det.latency_p99_ms = 250 > 200'
    assert decisions[0]['mode'] == 'normal'


def test_bounds_cut_the_change_and_then_refuse_it():
    policy = _policy([SHED], values={'fps': 4.0})
    assert _brief(_step(policy, 0.0, det__latency_p99_ms=250.0)) == [
        ('shed', 'set', 'fps', 4.0, 2.0, 'bounds')
    ]
    rejected = _step(policy, 1.0, det__latency_p99_ms=250.0)
    assert _brief(rejected) == [('shed', 'reject', 'fps', 2.0, -3.0, 'bounds')]
    assert rejected[0]['reason'] == 'already at 2 (bound 2)'
    # the same rejection again is counted, not logged again
    assert _step(policy, 2.0, det__latency_p99_ms=250.0) == [] and policy.repeats == 1


def test_step_limit_cuts_a_large_jump():
    rule = {'id': 'jump', 'when': {'metric': LATENCY, 'above': 200}, 'do': {'knob': 'fps', 'set': 2}}
    policy = _policy(
        [rule], knobs={'fps': {'node': 'gate', 'param': 'fps', 'min': 2, 'max': 30, 'max_step': 4}}
    )
    decisions = _step(policy, 0.0, det__latency_p99_ms=300.0)
    assert _brief(decisions) == [('jump', 'set', 'fps', 30.0, 26.0, 'step')]
    assert decisions[0]['reason'].endswith('(proposed 2)')
    assert _brief(_step(policy, 1.0, det__latency_p99_ms=300.0)) == [
        ('jump', 'set', 'fps', 26.0, 22.0, 'step')
    ]


def test_cooldown_spaces_changes_of_one_knob():
    knobs = {'fps': {'node': 'gate', 'param': 'fps', 'min': 2, 'max': 30, 'cooldown_sec': 5}}
    policy = _policy([SHED], knobs=knobs)
    assert _brief(_step(policy, 0.0, det__latency_p99_ms=250.0)) == [('shed', 'set', 'fps', 30.0, 25.0, None)]
    cooling = _step(policy, 1.0, det__latency_p99_ms=250.0)
    assert _brief(cooling) == [('shed', 'reject', 'fps', 25.0, 20.0, 'cooldown')]
    assert cooling[0]['reason'] == 'changed 1.0 s ago (cooldown 5 s)'
    assert _step(policy, 4.9, det__latency_p99_ms=250.0) == []  # still cooling: counted, not logged
    assert _brief(_step(policy, 5.0, det__latency_p99_ms=250.0)) == [('shed', 'set', 'fps', 25.0, 20.0, None)]


def test_hysteresis_keeps_a_rule_from_flapping():
    policy = _policy(
        [SHED, RESTORE],
        knobs={'fps': {'node': 'gate', 'param': 'fps', 'min': 2, 'max': 30, 'cooldown_sec': 0}},
    )
    changes = []
    # around the trigger and inside the band: active from 201 on, through 199 and 151
    for t, value in enumerate([199.0, 201.0, 199.0, 170.0, 151.0, 149.0, 151.0, 199.0]):
        changes.append([(d['rule'], d['new']) for d in _step(policy, float(t), det__latency_p99_ms=value)])
    assert changes == [
        [],
        [('shed', 25.0)],
        [('shed', 20.0)],
        [('shed', 15.0)],
        [('shed', 10.0)],
        [],
        [],
        [],
    ]  # cleared below 150; 151 and 199 are inside the band: no new activation


def test_for_sec_requires_the_condition_to_hold():
    rule = dict(SHED, when={'metric': LATENCY, 'above': 200, 'for_sec': 3})
    policy = _policy([rule])
    assert [_step(policy, t, det__latency_p99_ms=v) for t, v in ((0, 250), (1, 250), (2, 150), (3, 250))] == [
        [],
        [],
        [],
        [],
    ]  # interrupted at 2 s: the 3 s start again at 3 s
    assert _step(policy, 5.0, det__latency_p99_ms=250.0) == []
    assert _brief(_step(policy, 6.0, det__latency_p99_ms=250.0)) == [('shed', 'set', 'fps', 30.0, 25.0, None)]


def test_rollback_undoes_an_action_that_made_the_target_worse():
    rule = dict(SHED, target=LATENCY)
    policy = _policy(
        [rule],
        knobs={'fps': {'node': 'gate', 'param': 'fps', 'min': 2, 'max': 30, 'cooldown_sec': 20}},
        rollback={'after_sec': 10, 'worse_by': 0.1},
    )
    assert _brief(_step(policy, 0.0, det__latency_p99_ms=250.0)) == [('shed', 'set', 'fps', 30.0, 25.0, None)]
    _step(policy, 5.0, det__latency_p99_ms=270.0)  # cooling down, and the watch is not due yet
    back = _step(policy, 10.0, det__latency_p99_ms=290.0)  # 16 % worse than 250 after the change
    assert _brief(back) == [('shed', 'set', 'fps', 25.0, 30.0, 'rollback')]
    assert back[0]['reason'].startswith(
        'det.latency_p99_ms went from 250 to 290 after the change (+16% worse)'
    )
    assert policy.values['fps'] == 30.0
    # the rule stays off while its condition holds (past its cooldown too): counted, not logged again
    repeats = policy.repeats
    assert _step(policy, 40.0, det__latency_p99_ms=290.0) == [] and policy.repeats == repeats + 1
    assert policy.values['fps'] == 30.0
    # once the condition clears, the rule may act again
    _step(policy, 41.0, det__latency_p99_ms=100.0)
    assert _brief(_step(policy, 42.0, det__latency_p99_ms=250.0)) == [
        ('shed', 'set', 'fps', 30.0, 25.0, None)
    ]


def test_an_action_that_helped_is_kept():
    rule = dict(SHED, target=LATENCY)
    policy = _policy([rule], rollback={'after_sec': 10, 'worse_by': 0.1})
    _step(policy, 0.0, det__latency_p99_ms=250.0)
    assert _brief(_step(policy, 10.0, det__latency_p99_ms=140.0)) == []  # better (and cleared): kept
    assert policy.values['fps'] == 25.0


def test_safe_mode_on_missing_and_stale_metrics():
    knobs = {'fps': {'node': 'gate', 'param': 'fps', 'min': 2, 'max': 30, 'safe': 10}}
    policy = _policy([SHED], knobs=knobs, stale=5.0)
    # nothing seen yet: safe mode at once, the knob to its safe value
    first = policy.evaluate(0.0)
    assert _brief([d.as_dict() for d in first]) == [
        ('safe_mode', 'enter', None, None, None, 'safe_mode'),
        ('safe_mode', 'set', 'fps', 30.0, 10.0, 'safe_mode'),
    ]
    assert first[0].reason == 'metrics missing or stale: det.latency_p99_ms'
    assert policy.evaluate(1.0) == [] and policy.repeats == 1
    # the metric arrives: rules act again
    back = _step(policy, 2.0, det__latency_p99_ms=250.0)
    assert _brief(back) == [
        ('safe_mode', 'leave', None, None, None, None),
        ('shed', 'set', 'fps', 10.0, 5.0, None),
    ]
    # it stops arriving: at 5 s old it still counts, older is stale -> safe mode, the safe value again
    assert _brief([d.as_dict() for d in policy.evaluate(7.0)]) == [('shed', 'set', 'fps', 5.0, 2.0, 'bounds')]
    assert _brief([d.as_dict() for d in policy.evaluate(7.5)]) == [
        ('safe_mode', 'enter', None, None, None, 'safe_mode'),
        ('safe_mode', 'set', 'fps', 2.0, 10.0, 'safe_mode'),
    ]


def test_rate_metric_and_mode_switch_with_restore():
    knobs = {
        'snapshot': {'node': 'events', 'param': 'snapshot', 'min': 0, 'max': 1, 'integer': True},
        'batch': {'node': 'queue', 'param': 'batch_size', 'min': 1, 'max': 100, 'integer': True},
    }
    rules = [
        {
            'id': 'backlog',
            'when': {'metric': 'rate(queue.queue_depth)', 'above': 1.0, 'clear_below': 0.0, 'for_sec': 10},
            'do': {'mode': 'low_bandwidth'},
        }
    ]
    policy = _policy(
        rules,
        knobs=knobs,
        modes={'low_bandwidth': {'snapshot': 0, 'batch': 50}},
        values={'snapshot': 1.0, 'batch': 10.0},
    )
    out = []
    for t in range(0, 13):  # the queue grows 2 rows/s
        out += _step(policy, float(t), queue__queue_depth=100.0 + 2 * t)
    assert [(d['rule'], d['action'], d['mode'], d['knob'], d['new']) for d in out] == [
        ('safe_mode', 'enter', None, None, None),  # one sample gives no rate yet
        ('safe_mode', 'leave', None, None, None),
        ('backlog', 'leave', 'normal', None, None),
        ('backlog', 'enter', 'low_bandwidth', None, None),
        ('backlog', 'set', 'low_bandwidth', 'snapshot', 0.0),
        ('backlog', 'set', 'low_bandwidth', 'batch', 50.0),
    ]
    assert out[2]['metrics'] == {'rate(queue.queue_depth)': 2.0}
    assert out[2]['t'] == 11.0  # the rate is defined from 1 s on, and held for 10 s
    # the backlog drains: the mode ends, the knobs go back to what they were
    back = []
    for t in range(13, 50):
        back += _step(policy, float(t), queue__queue_depth=max(0.0, 124.0 - 10 * (t - 12)))
    assert [(d['action'], d['mode'], d['knob'], d['new']) for d in back] == [
        ('leave', 'low_bandwidth', None, None),
        ('set', 'low_bandwidth', 'snapshot', 1.0),
        ('set', 'low_bandwidth', 'batch', 10.0),
        ('enter', 'normal', None, None),
    ]


def test_low_power_mode_by_a_cpu_rule_and_the_first_active_mode_rule_wins():
    knobs = {
        'fps': {'node': 'cam', 'param': 'fps', 'min': 2, 'max': 30},
        'batch': {'node': 'queue', 'param': 'batch_size', 'min': 1, 'max': 500, 'integer': True},
    }
    rules = [
        {'id': 'hot', 'do': {'mode': 'low_power'},
         'when': {'metric': 'vision.cpu_percent', 'above': 180, 'clear_below': 120, 'for_sec': 5}},
        {'id': 'backlog', 'when': {'metric': 'rate(queue.queue_depth)', 'above': 1.0, 'clear_below': 0.0,
                                   'for_sec': 2}, 'do': {'mode': 'low_bandwidth'}},
    ]
    policy = _policy(rules, knobs=knobs, values={'fps': 30.0, 'batch': 10.0},
                     modes={'low_power': {'fps': 5}, 'low_bandwidth': {'batch': 500}})
    out = []
    for t in range(0, 12):  # the process runs hot from t=2 on; the queue grows from t=5 on
        out += _step(policy, float(t), vision__cpu_percent=190.0 if t >= 2 else 100.0,
                     queue__queue_depth=float(max(0, t - 5) * 3))
    modes = [(d['t'], d['rule'], d['action'], d['mode'], d['knob'], d['new']) for d in out
             if d['rule'] != 'safe_mode']
    assert modes == [
        (7.0, 'hot', 'leave', 'normal', None, None),  # hot for 5 s (2..7): low power
        (7.0, 'hot', 'enter', 'low_power', None, None),
        (7.0, 'hot', 'set', 'low_power', 'fps', 5.0),
    ]  # the backlog rule is active from t=8 on too, but the first active mode rule (hot) wins
    back = []
    for t in range(12, 20):  # cool again: the growing backlog's mode takes over, fps comes back
        back += _step(policy, float(t), vision__cpu_percent=100.0, queue__queue_depth=float((t - 5) * 3))
    assert [(d['rule'], d['action'], d['mode'], d['knob'], d['new']) for d in back] == [
        ('backlog', 'leave', 'low_power', None, None),
        ('backlog', 'set', 'low_power', 'fps', 30.0),
        ('backlog', 'enter', 'low_bandwidth', None, None),
        ('backlog', 'set', 'low_bandwidth', 'batch', 500.0),
    ]


def test_operator_pin_is_honoured_logged_and_lifted():
    policy = _policy([SHED])
    pinned = [d.as_dict() for d in policy.pin('fps', 12.0, 0.0)]
    assert _brief(pinned) == [('operator', 'pin', 'fps', 30.0, 12.0, None)]
    assert _brief(_step(policy, 1.0, det__latency_p99_ms=250.0)) == [
        ('shed', 'reject', 'fps', 12.0, 7.0, 'pinned')
    ]
    assert _step(policy, 2.0, det__latency_p99_ms=250.0) == []  # counted, not logged again
    lifted = [d.as_dict() for d in policy.pin('fps', None, 3.0)]
    assert _brief(lifted) == [('operator', 'unpin', 'fps', 12.0, 12.0, None)]
    assert _brief(_step(policy, 4.0, det__latency_p99_ms=250.0)) == [('shed', 'set', 'fps', 12.0, 7.0, None)]


def test_operator_mode_pin_overrides_the_rules():
    knobs = {'fps': {'node': 'gate', 'param': 'fps', 'min': 2, 'max': 30}}
    rules = [{'id': 'hot', 'when': {'metric': LATENCY, 'above': 200}, 'do': {'mode': 'low_power'}}, SHED]
    policy = _policy(rules, knobs=knobs, modes={'low_power': {'fps': 5}})
    pinned = [(d.action, d.mode, d.knob, d.new) for d in policy.pin_mode('low_power', 0.0)]
    assert pinned == [
        ('pin', 'low_power', None, None),
        ('leave', 'normal', None, None),
        ('enter', 'low_power', None, None),
        ('set', 'low_power', 'fps', 5.0),
    ]
    # the rules want normal (latency fine) but the pin holds; the knob is held by the mode
    quiet = _step(policy, 1.0, det__latency_p99_ms=100.0)
    assert [(d['rule'], d['action'], d['mode'], d['guardrail']) for d in quiet] == [
        ('rules', 'reject', 'normal', 'pinned')
    ]
    assert _brief(_step(policy, 2.0, det__latency_p99_ms=250.0)) == [
        ('shed', 'reject', 'fps', 5.0, 0.0, 'mode')
    ]
    lifted = [(d.action, d.mode) for d in policy.pin_mode(None, 3.0)]
    assert lifted == [('unpin', 'low_power')]
    resumed = _step(policy, 4.0, det__latency_p99_ms=100.0)  # latency fine: the rules choose normal again
    assert [(d['action'], d['mode'], d['knob'], d['new']) for d in resumed] == [
        ('leave', 'low_power', None, None),
        ('set', 'low_power', 'fps', 30.0),
        ('enter', 'normal', None, None),
    ]


def test_unknown_knob_value_is_refused_until_known():
    policy = _policy([SHED], values={})
    assert _brief(_step(policy, 0.0, det__latency_p99_ms=250.0)) == [
        ('shed', 'reject', 'fps', None, None, 'unknown_value')
    ]
    policy.known('fps', 20.0)
    assert _brief(_step(policy, 1.0, det__latency_p99_ms=250.0)) == [('shed', 'set', 'fps', 20.0, 15.0, None)]


@pytest.mark.parametrize(
    ('knobs', 'rules', 'message'),
    [
        (
            {'fps': {'node': 'gate', 'param': 'fps', 'max': 3}},
            [],
            'knobs.fps.min: required (every knob is bounded)',
        ),
        (
            {'fps': {'node': 'gate', 'param': 'fps', 'min': 5, 'max': 3}},
            [],
            'knobs.fps.min: 5.0 is above max 3.0',
        ),
        (
            {},
            [{'when': {'metric': 'latency', 'above': 1}, 'do': {'mode': 'normal'}}],
            "rules[0].when.metric: 'latency' is not a metric (write 'node.key' or 'rate(node.key)')",
        ),
        (
            {},
            [{'when': {'metric': 'a.b', 'above': 1, 'clear_below': 2}, 'do': {'mode': 'normal'}}],
            'rules[0].when.clear_below: 2.0 is on the wrong side of the trigger 1.0',
        ),
        (
            {},
            [{'when': {'metric': 'a.b', 'above': 1}, 'do': {'knob': 'nope', 'by': 1}}],
            "rules[0].do.knob: unknown knob 'nope' (knobs: none)",
        ),
        (
            {},
            [{'when': {'metric': 'a.b', 'above': 1}, 'do': {'mode': 'turbo'}}],
            "rules[0].do.mode: 'turbo' is not one of normal, low_power, low_bandwidth",
        ),
    ],
)
def test_configuration_errors_name_the_place(knobs, rules, message):
    with pytest.raises(SpecError) as err:
        parse_spec(knobs, rules, {}, {}, 5.0)
    assert str(err.value) == message
