"""CostMeter decides whether a DDS callback may run a node inline; one preempted sample must not
flip a cheap node to "expensive", and a node that really is expensive must stay so."""

from __future__ import annotations

from schnitzel_stream_ros.runtime.workers import CostMeter


def warmed(ns: int, n: int = 100) -> CostMeter:
    meter = CostMeter()
    for _ in range(n):
        meter.add(ns)
    return meter


def test_a_cheap_node_stays_cheap_after_one_preempted_sample():
    meter = warmed(10_000)
    assert meter.cheap
    meter.add(50_000_000)  # 50 ms: the thread was preempted (a busy machine), not the node's work
    assert meter.cheap and meter.ewma_ns < CostMeter.INLINE_MAX_NS


def test_an_expensive_node_is_never_cheap_whatever_its_size():
    for ns in (300_000, 5_000_000, 500_000_000):
        assert not warmed(ns).cheap


def test_not_cheap_before_enough_samples_nor_when_inline_is_off():
    meter = CostMeter()
    for _ in range(CostMeter.MIN_SAMPLES - 1):
        meter.add(1_000)
    assert not meter.cheap
    meter.add(1_000)
    assert meter.cheap
    isolated = CostMeter(inline=False)
    for _ in range(100):
        isolated.add(1_000)
    assert not isolated.cheap
