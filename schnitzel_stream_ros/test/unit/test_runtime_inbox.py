"""Inboxes, the live mailbox, latency histograms, budgets and report status (no DDS)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from schnitzel_stream_ros.graph.model import DropWeights
from schnitzel_stream_ros.observability.metrics import EdgeMetrics, LatencyHistogram
from schnitzel_stream_ros.observability.report import collect_metrics, decide_status
from schnitzel_stream_ros.observability.snapshot import runtime_snapshot
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.runtime.inbox import Inbox, InboxOverflowError, Item, Offer
from schnitzel_stream_ros.runtime.mailbox import Mailbox
from schnitzel_stream_ros.runtime.workers import EmissionBudget


def _item(edge: EdgeMetrics, n: int) -> Item:
    return (StreamPacket.new('raw', 's', n), time.perf_counter_ns(), edge)


def _fill(inbox: Inbox, n: int, edge: EdgeMetrics) -> list[Offer]:
    return [inbox.offer(_item(edge, i)) for i in range(n)]


def _drain(inbox: Inbox) -> list[int]:
    out = []
    while (item := inbox.pop()) is not None:
        out.append(item[0].payload)
    return out


def test_weighted_drop_evicts_the_lowest_weight_oldest_on_ties_whatever_the_new_one_weighs():
    edge = EdgeMetrics('/t', 'n', 'in')
    ranks = DropWeights('group_id', (('a', 1.0), ('b', 2.0)), 1.5)
    inbox = Inbox('n.in', 3, 'weighted_drop', ranks)

    def offer(n: int, group, where: str = 'meta') -> Offer:
        meta, payload = ({'group_id': group}, n) if where == 'meta' else ({}, {'group_id': group, 'n': n})
        return inbox.offer((StreamPacket.new('event', 's', payload, meta), 0, edge))

    assert [offer(0, 'b'), offer(1, 'a'), offer(2, 'a')] == [Offer.ACCEPTED] * 3
    assert offer(3, 'b') is Offer.REPLACED  # evicts 1: lowest weight, the older of the two a's
    assert offer(4, 'a') is Offer.REPLACED  # evicts 2; the new one may weigh the least (upstream)
    assert offer(5, 'zzz') is Offer.REPLACED  # evicts 4 (a = 1.0 < default 1.5)
    assert offer(6, 'b', where='payload') is Offer.REPLACED  # key read from the payload: evicts 5 (1.5)
    assert offer(7, None) is Offer.REPLACED  # oldest b (0) among b, b, b: ties go to the oldest
    waiting = [i[0].payload if isinstance(i[0].payload, int) else i[0].payload['n'] for i in inbox.items]
    assert waiting == [3, 6, 7]
    assert (inbox.dropped_weighted, inbox.dropped_total, edge.packets, edge.dropped) == (5, 5, 8, 5)
    plain = Inbox('n.in', 1, 'weighted_drop')  # no weights: all weigh 1.0 -> oldest first
    plain.offer(_item(edge, 0))
    assert plain.offer(_item(edge, 1)) is Offer.REPLACED and _drain(plain) == [1]


def test_drop_new_keeps_the_first_and_counts_the_rest():
    edge = EdgeMetrics('/t', 'n', 'in')
    inbox = Inbox('n.in', 2, 'drop_new')
    assert _fill(inbox, 5, edge) == [Offer.ACCEPTED] * 2 + [Offer.DROPPED] * 3
    assert _drain(inbox) == [0, 1]
    assert (inbox.dropped_new, inbox.dropped_total, edge.packets, edge.dropped) == (3, 3, 5, 3)


def test_drop_oldest_keeps_the_newest_and_blames_the_evicted_packets_edge():
    first, second = EdgeMetrics('/a', 'n', 'in'), EdgeMetrics('/b', 'n', 'in')
    inbox = Inbox('n.in', 2, 'drop_oldest')
    inbox.offer(_item(first, 0))
    inbox.offer(_item(first, 1))
    assert inbox.offer(_item(second, 2)) is Offer.REPLACED
    assert _drain(inbox) == [1, 2]
    assert (first.dropped, second.dropped, inbox.dropped_oldest) == (1, 0, 1)


def test_error_policy_raises_naming_the_inbox():
    inbox = Inbox('sink.in', 1, 'error')
    edge = EdgeMetrics('/t', 'sink', 'in')
    inbox.offer(_item(edge, 0))
    with pytest.raises(InboxOverflowError, match=r"inbox 'sink.in' is full \(1 packets\)"):
        inbox.offer(_item(edge, 1))
    assert inbox.dropped_total == 1


def test_block_reports_full_without_counting_an_offer():
    inbox = Inbox('n.in', 1, 'block')
    edge = EdgeMetrics('/t', 'n', 'in')
    assert _fill(inbox, 2, edge) == [Offer.ACCEPTED, Offer.FULL]
    assert (edge.packets, inbox.dropped_total) == (1, 0)


def test_discard_all_counts_what_still_waited():
    inbox = Inbox('n.in', 4, 'drop_new')
    edge = EdgeMetrics('/t', 'n', 'in')
    _fill(inbox, 3, edge)
    assert inbox.discard_all() == 3
    assert (inbox.discarded, inbox.dropped_total, edge.dropped, len(inbox)) == (3, 3, 3, 0)


def test_inbox_size_must_be_positive():
    with pytest.raises(ValueError, match=r'n\.in: inbox size must be >= 1'):
        Inbox('n.in', 0)


def test_mailbox_keeps_arrival_order_across_ports_and_runs_controls_first():
    box = Mailbox('n')
    a = box.add_inbox('a', Inbox('n.a', 8))
    b = box.add_inbox('b', Inbox('n.b', 8))
    edge = EdgeMetrics('/t', 'n', 'a')
    for i, token in enumerate([a, b, a, b]):
        box.offer(token, _item(edge, i))
    ran = []
    box.post(lambda: ran.append('control'))
    job = box.take()
    assert callable(job)
    job()
    box.done()
    taken = []
    for _ in range(4):
        port, item = box.take()
        taken.append((port, item[0].payload))
        box.done()
    assert ran == ['control']
    assert taken == [('a', 0), ('b', 1), ('a', 2), ('b', 3)]
    assert box.idle


def test_mailbox_block_policy_loses_nothing_between_threads():
    box = Mailbox('n')
    inbox = Inbox('n.in', 2, 'block')
    token = box.add_inbox('in', inbox)
    edge = EdgeMetrics('/t', 'n', 'in')
    got: list[int] = []

    def consume() -> None:
        while (job := box.take()) is not None:
            got.append(job[1][0].payload)
            if random.random() < 0.05:
                time.sleep(0.001)  # sometimes slower than the producer

    worker = threading.Thread(target=consume)
    worker.start()
    for i in range(2000):
        box.offer(token, _item(edge, i))
    box.close()
    worker.join(10)
    assert got == list(range(2000))
    assert inbox.dropped_total == 0 and inbox.depth_max <= 2


def test_closed_mailbox_discards_and_counts():
    box = Mailbox('n')
    inbox = Inbox('n.in', 4)
    token = box.add_inbox('in', inbox)
    edge = EdgeMetrics('/t', 'n', 'in')
    box.offer(token, _item(edge, 0))
    assert box.close(discard=True) == 1
    box.offer(token, _item(edge, 1))
    assert (inbox.dropped_total, edge.dropped, edge.packets) == (2, 2, 2)
    assert box.take() is None


def test_latency_percentiles_are_within_the_bucket_resolution():
    hist = LatencyHistogram()
    values = [1_000 * (i + 1) for i in range(1000)]  # 1 us .. 1 ms
    for v in values:
        hist.record(v)
    assert hist.percentile_ms(0.5) == pytest.approx(0.5, rel=0.1)
    assert hist.percentile_ms(0.99) == pytest.approx(0.99, rel=0.1)
    assert LatencyHistogram().percentile_ms(0.5) is None


def test_budget_is_shared_and_gives_back_unused_pulls():
    budget = EmissionBudget(3)
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    budget.give_back()
    assert budget.take() and budget.exhausted
    assert all(EmissionBudget(None).take() for _ in range(10))


def _snapshot(dropped: int = 0, errors: int = 0, counters: dict | None = None) -> dict:
    from schnitzel_stream_ros.observability.metrics import NodeMetrics

    src, sink = NodeMetrics('src', True, False), NodeMetrics('sink', False, True)
    src.produced, sink.consumed, sink.errors = 5, 5, errors
    for name, value in (counters or {}).items():
        sink.count(name, value)
    return runtime_snapshot('main', [(src, 0), (sink, dropped)], [])


@pytest.mark.parametrize(
    ('dropped', 'errors', 'counters', 'warnings', 'fatal', 'status'),
    [
        (0, 0, {}, [], [], 'ok'),
        (1, 0, {}, [], [], 'degraded'),
        (0, 2, {}, [], [], 'degraded'),
        (0, 0, {'errors_total': 1}, [], [], 'degraded'),  # counted by the plugin itself
        (0, 0, {'failed_total': 1}, [], [], 'degraded'),  # e.g. an HTTP post given up
        (0, 0, {'zone_refresh_failed_total': 2}, [], [], 'degraded'),
        (0, 0, {'dropped_total': 7, 'skipped_total': 3}, [], [], 'ok'),  # intended filtering (dedup)
        (0, 0, {}, ['close() failed'], [], 'degraded'),
        (3, 0, {}, [], ['inbox full'], 'error'),
    ],
)
def test_status_tells_the_truth(dropped, errors, counters, warnings, fatal, status):
    metrics = collect_metrics([_snapshot(dropped, errors, counters)])
    assert metrics['packets.source_emitted_total'] == 5
    assert metrics['packets.dropped_total'] == dropped
    assert metrics['node.sink.errors_total'] == errors + counters.get('errors_total', 0)
    assert decide_status(metrics, fatal, warnings) == status


def test_latency_record_uses_the_same_buckets_as_the_reference_function():
    from schnitzel_stream_ros.observability.metrics import _bucket_of

    rng = random.Random(5)
    edges = [0, 1, 7, 8, 15, 16, 17, 1000, 123_456_789, 2**70]
    for value in edges + [rng.randrange(10**10) for _ in range(2000)]:
        hist = LatencyHistogram()
        hist.record(value)
        assert hist.counts.index(1) == _bucket_of(value), value


def test_an_inline_claim_excludes_the_worker_and_keeps_arrival_order():
    box = Mailbox('n')
    token = box.add_inbox('in', Inbox('n.in', 8))
    edge = EdgeMetrics('/t', 'n', 'in')
    assert box.try_claim()  # idle, nothing waits: the caller may run the plugin itself
    assert not box.try_claim()  # never two at once
    box.offer(token, _item(edge, 1))  # arrives while the claim runs
    taken: list[int] = []
    worker = threading.Thread(target=lambda: taken.append(box.take()[1][0].payload))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and taken == []  # the worker waits while the node is claimed
    assert not box.idle
    box.release()
    worker.join(5)
    assert taken == [1]
    assert not box.try_claim()  # the worker holds an item now (busy)
    box.close()
    assert box.take() is None and box.idle


def test_take_more_gives_a_batch_of_one_port_in_arrival_order_and_stops_at_another_port():
    box = Mailbox('n')
    a = box.add_inbox('a', Inbox('n.a', 100, 'block'))
    b = box.add_inbox('b', Inbox('n.b', 100, 'block'))
    edge = EdgeMetrics('/t', 'n', 'a')
    for i in range(5):
        box.offer(a, _item(edge, i))
    box.offer(b, _item(edge, 'b0'))
    box.offer(a, _item(edge, 5))
    port, first = box.take()
    assert port == 'a' and first[0].payload == 0
    assert [item[0].payload for item in box.take_more('a', 2)] == [1, 2]  # bounded by the limit
    assert [item[0].payload for item in box.take_more('a', 100)] == [3, 4]  # stops before b0
    assert box.take_more('a', 100) == []
    assert box.take()[1][0].payload == 'b0'
    assert box.take()[1][0].payload == 5
    box.post(lambda: None)
    box.offer(a, _item(edge, 6))
    assert box.take_more('a', 10) == []  # a pending control runs first


def test_the_input_worker_hands_waiting_packets_to_process_batch_in_order():
    from schnitzel_stream_ros.plugin import Plugin
    from schnitzel_stream_ros.runtime.plugin_host import PluginHost
    from schnitzel_stream_ros.runtime.workers import InputWorker

    calls: list[list[int]] = []
    gate = threading.Event()

    class Batching(Plugin):
        def process(self, packet, port='in'):
            gate.wait(5)  # holds the worker while the rest gathers in the inbox
            calls.append([packet.payload])

        def process_batch(self, packets, port='in'):
            calls.append([p.payload for p in packets])

    host = PluginHost('sink', Batching, {}, is_source=False, is_sink=True)
    host.setup()
    box = Mailbox('sink')
    token = box.add_inbox('in', Inbox('sink.in', 1000, 'block'))
    edge = EdgeMetrics('/t', 'sink', 'in')
    worker = InputWorker(host, box, on_fatal=lambda _m: None)
    box.offer(token, _item(edge, 0))
    worker.start()
    deadline = time.monotonic() + 5
    while not box.busy and time.monotonic() < deadline:
        time.sleep(0.001)
    for i in range(1, 301):
        box.offer(token, _item(edge, i))
    gate.set()
    box.close()
    worker.thread.join(5)
    assert [x for call in calls for x in call] == list(range(301))  # all, once, in order
    assert calls[0] == [0] and len(calls) <= 3  # the 300 that waited came as one batch (or two)
    assert host.metrics.consumed == 301


def test_offer_nowait_never_waits_on_a_full_block_inbox_it_spills_then_counts_drops():
    box = Mailbox('n')
    token = box.add_inbox('in', Inbox('n.in', 2, 'block'))
    edge = EdgeMetrics('/t', 'n', 'in')
    t0 = time.monotonic()
    for i in range(7):  # 2 in the inbox, 2 in the spill, 3 dropped -- and no call waits
        box.offer_nowait(token, _item(edge, i))
    assert time.monotonic() - t0 < 0.1
    inbox = box.inboxes['in']
    assert (len(inbox.items), len(inbox.spill), inbox.dropped_new) == (2, 2, 3)
    assert (edge.packets, edge.dropped) == (7, 3)
    assert not box.idle
    taken = [box.take()[1][0].payload for _ in range(4)]  # spilled packets move in, in order
    assert taken == [0, 1, 2, 3]
    box.done()
    assert box.idle and not inbox.spill


def test_a_close_while_process_runs_is_deferred_until_it_returns():
    from schnitzel_stream_ros.plugin import Plugin
    from schnitzel_stream_ros.runtime.plugin_host import PluginHost

    inside, release = threading.Event(), threading.Event()
    events: list[str] = []

    class Stuck(Plugin):
        def process(self, packet, port='in'):
            events.append('process start')
            inside.set()
            release.wait(5)
            events.append('process end')

        def close(self):
            events.append('close')

    host = PluginHost('stuck', Stuck, {}, is_source=False, is_sink=True)
    host.setup()
    worker = threading.Thread(target=host.handle, args=(StreamPacket.new('raw', 's', 1), 'in'))
    worker.start()
    assert inside.wait(5)
    assert host.close(wait_sec=0.05) is False  # deferred, not run under the running process()
    assert events == ['process start']
    release.set()
    worker.join(5)
    assert events == ['process start', 'process end', 'close'] and host.closed
