"""DedupPolicyNode: key camera_id:event_type:track_id, cooldown, severity bypass, both clocks."""

from __future__ import annotations

import pytest

from schnitzel_stream_ros.nodes.policy.dedup import CooldownGate, DedupPolicyNode, dedup_key
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


class Clock:
    """The monotonic time the node sees, set by the test (no sleeping, no wall-clock asserts)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_node(time_source: Clock | None = None, **params):
    ctx = SimpleContext(node_id='dedup', params=resolve_params(DedupPolicyNode, params))
    node = DedupPolicyNode(ctx)
    if time_source is not None:
        node.monotonic = time_source
    node.setup()
    return node, ctx


def event(
    track_id=1, severity='MEDIUM', event_type='ZONE_INTRUSION', camera_id='cam01', ts='2026-02-14T00:00:00Z'
):
    payload = {
        'camera_id': camera_id,
        'event_type': event_type,
        'track_id': track_id,
        'severity': severity,
        'ts': ts,
    }
    return StreamPacket.new('event', camera_id, payload, ts=ts)


def passes(node, packet) -> bool:
    out = node.process(packet)
    assert out is None or out is packet
    return out is packet


def test_key_format():
    assert dedup_key({'camera_id': 'c', 'event_type': 'E', 'track_id': 7}) == 'c:E:7'
    assert dedup_key({'camera_id': 'c', 'event_type': 'E', 'track_id': None}) == 'c:E:na'
    assert dedup_key({'camera_id': 'c', 'event_type': 'E', 'track_id': 0}) == 'c:E:0'
    assert dedup_key({'event_type': 'E'}) is None


def test_repeats_inside_the_cooldown_are_dropped_and_pass_again_after_it():
    clock = Clock()
    node, ctx = make_node(clock)  # cooldown_sec 10 (upstream default)
    assert passes(node, event())
    clock.now += 9.999
    assert not passes(node, event())
    clock.now += 0.001  # 10 s after the first pass
    assert passes(node, event())
    clock.now += 5
    assert not passes(node, event())
    assert ctx.counters == {'accepted_total': 2, 'dropped_total': 2}


def test_keys_are_independent():
    clock = Clock()
    node, _ = make_node(clock)
    assert passes(node, event(track_id=1))
    assert passes(node, event(track_id=2))
    assert passes(node, event(track_id=None))
    assert passes(node, event(track_id=1, camera_id='cam02'))
    assert passes(node, event(track_id=1, event_type='PPE_VIOLATION'))
    assert not passes(node, event(track_id=1))
    assert not passes(node, event(track_id=None))


def test_a_severity_change_passes_and_restarts_the_cooldown():
    clock = Clock()
    node, _ = make_node(clock)
    assert passes(node, event(severity='MEDIUM'))
    clock.now += 1
    assert passes(node, event(severity='HIGH'))  # escalation inside the cooldown
    clock.now += 1
    assert not passes(node, event(severity='HIGH'))
    assert passes(node, event(severity='MEDIUM'))  # a change back passes too
    clock.now += 9.5  # 9.5 s after the last pass, 11.5 s after the first
    assert not passes(node, event(severity='MEDIUM'))


def test_events_without_key_always_pass():
    node, ctx = make_node(Clock())
    packet = StreamPacket.new('event', 'x', {'event_type': 'HEARTBEAT'})
    assert passes(node, packet) and passes(node, packet)
    assert ctx.counters['accepted_total'] == 2


def test_event_ts_clock_is_independent_of_processing_time():
    node, _ = make_node(clock='event_ts', cooldown_sec=2.0)
    assert passes(node, event(ts='2026-02-14T00:00:00Z'))
    assert not passes(node, event(ts='2026-02-14T00:00:01.999999Z'))
    assert passes(node, event(ts='2026-02-14T00:00:02Z'))
    # a replay starting over (time far back) is not swallowed
    assert passes(node, event(ts='2026-02-13T00:00:00Z'))
    with pytest.raises(ValueError, match=r'dedup: packet .*: payload.ts: not an ISO-8601 time'):
        node.process(event(ts='yesterday'))


def test_cooldown_is_a_dynamic_parameter():
    clock = Clock()
    node, _ = make_node(clock)
    assert passes(node, event())
    clock.now += 3
    assert not passes(node, event())
    node.on_params({'cooldown_sec': 2.0})
    assert passes(node, event())


def test_prune_bounds_memory_without_changing_decisions():
    gate = CooldownGate(cooldown_sec=10, prune_interval=5)
    for i in range(100):
        assert gate.allow(f'k{i}', now=float(i * 11))  # every key expired before the next one
    assert len(gate) <= 5
    assert not gate.allow('k99', now=99 * 11 + 1)


def test_non_mapping_payload_is_an_error_naming_the_node():
    node, _ = make_node(Clock())
    with pytest.raises(ValueError, match=r'dedup: packet .* event payload must be a mapping'):
        node.process(StreamPacket.new('event', 'cam01', ['x']))
