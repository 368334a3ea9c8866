"""Outputs of one call arrive together: Mailbox.put_many under each overflow policy, and the
PluginHost handing all outputs of one call to its route at once (no DDS)."""

from __future__ import annotations

import threading
import time

import pytest

from schnitzel_stream_ros.graph.model import DropWeights
from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Plugin, Port
from schnitzel_stream_ros.runtime.inbox import Inbox, InboxOverflowError, Item
from schnitzel_stream_ros.runtime.mailbox import Mailbox
from schnitzel_stream_ros.runtime.plugin_host import MAX_CALL_BATCH, PluginError, PluginHost

WAIT_SEC = 30.0  # generous: the machine is shared; every wait below ends on an event, not a timer


def _items(edge: EdgeMetrics, n: int, groups: list[str] | None = None) -> list[Item]:
    return [(StreamPacket.new('event', 's', i, {'group_id': groups[i]} if groups else {}), 0, edge)
            for i in range(n)]


def _mailbox(maxsize: int, overflow: str, weights: DropWeights | None = None):
    mailbox = Mailbox('n')
    inbox = Inbox('n.in', maxsize, overflow, weights)
    return mailbox, inbox, mailbox.add_inbox('in', inbox)


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SEC
    while not condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.001)


def _payloads(inbox: Inbox) -> list[int]:
    return [item[0].payload for item in inbox.items]


def test_an_idle_worker_takes_nothing_before_the_whole_batch_is_in_so_exactly_min_copies_fit():
    """drop_new, inbox 2, three copies, the worker waiting in take(): per-packet offers would let it
    take the first copy at once and fit three; put_many fits exactly two, every time."""
    edge = EdgeMetrics('/t', 'n', 'in')
    for _round in range(20):
        mailbox, inbox, token = _mailbox(2, 'drop_new')
        taken: list[tuple[int, int]] = []

        def worker(mailbox=mailbox, inbox=inbox, taken=taken) -> None:
            while (job := mailbox.take()) is not None:
                taken.append((job[1][0].payload, inbox.depth_max))

        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        _until(lambda mailbox=mailbox: mailbox._worker_waiting, 'the worker to wait')
        wakes: list[int] = []
        notify = mailbox._has_work.notify
        mailbox._has_work.notify = lambda n=1, notify=notify, wakes=wakes: (wakes.append(n), notify(n))
        mailbox.put_many(token, _items(edge, 3))
        woken = len(wakes)
        mailbox.close()
        thread.join(WAIT_SEC)
        assert [payload for payload, _ in taken] == [0, 1]
        assert taken[0][1] == 2  # both were in before the worker took the first
        assert inbox.dropped_new == 1 and woken == 1  # the consumer woken once, after


def test_drop_oldest_and_weighted_drop_apply_the_policy_to_each_packet_in_order():
    weights = DropWeights('group_id', (('a', 1.0), ('b', 2.0)), 1.5)
    groups = ['b', 'a', 'a', 'b', 'a', 'zz']
    for overflow, ranks in (('drop_oldest', None), ('weighted_drop', weights)):
        edge_many, edge_one = EdgeMetrics('/t', 'n', 'in'), EdgeMetrics('/t', 'n', 'in')
        mailbox, inbox, token = _mailbox(3, overflow, ranks)
        mailbox.put_many(token, _items(edge_many, 6, groups))
        one_by_one = Inbox('n.in', 3, overflow, ranks)
        for item in _items(edge_one, 6, groups):
            one_by_one.offer(item)
        assert _payloads(inbox) == _payloads(one_by_one)
        assert (inbox.dropped_oldest, inbox.dropped_weighted) == (one_by_one.dropped_oldest,
                                                                  one_by_one.dropped_weighted)
        assert (edge_many.packets, edge_many.dropped) == (6, 3)
    assert _payloads(inbox) == [0, 3, 5]  # weighted: the a's went first (5 is 'zz', default 1.5)


def test_error_raises_at_the_first_packet_that_finds_no_room_and_keeps_what_got_in():
    edge = EdgeMetrics('/t', 'n', 'in')
    mailbox, inbox, token = _mailbox(2, 'error')
    with pytest.raises(InboxOverflowError, match=r"inbox 'n\.in' is full"):
        mailbox.put_many(token, _items(edge, 4))
    assert [mailbox.take()[1][0].payload for _ in range(2)] == [0, 1]  # taken in order, tokens intact
    # the 3rd is refused; the 4th, the rest of the call's batch, is counted as discarded: none unseen
    assert (edge.packets, edge.dropped, inbox.dropped_new, inbox.discarded) == (4, 2, 1, 1)


def test_block_with_a_batch_larger_than_the_room_waits_per_packet_and_loses_nothing():
    edge = EdgeMetrics('/t', 'n', 'in')
    mailbox, inbox, token = _mailbox(2, 'block')
    taken: list[int] = []

    def worker() -> None:
        while (job := mailbox.take()) is not None:
            taken.append(job[1][0].payload)

    consumer = threading.Thread(target=worker, daemon=True)
    consumer.start()
    producer = threading.Thread(target=mailbox.put_many, args=(token, _items(edge, 50)), daemon=True)
    producer.start()
    producer.join(WAIT_SEC)
    assert not producer.is_alive(), 'put_many of a block batch larger than the inbox deadlocked'
    mailbox.close()
    consumer.join(WAIT_SEC)
    assert taken == list(range(50)) and inbox.dropped_total == 0


def test_put_many_nowait_never_waits_a_full_block_inbox_spills_then_counts():
    edge = EdgeMetrics('/t', 'n', 'in')
    mailbox, inbox, token = _mailbox(2, 'block')
    mailbox.put_many_nowait(token, _items(edge, 5))  # 2 in, 2 spilled, 1 dropped; returns at once
    assert (len(inbox), len(inbox.spill), inbox.dropped_new, edge.packets) == (2, 2, 1, 5)
    assert [mailbox.take()[1][0].payload for _ in range(4)] == [0, 1, 2, 3]
    mailbox, inbox, token = _mailbox(2, 'drop_new')
    mailbox.put_many_nowait(token, _items(edge, 3))
    assert (_payloads(inbox), inbox.dropped_new) == ([0, 1], 1)


def test_a_closed_mailbox_discards_and_counts_a_batch():
    edge = EdgeMetrics('/t', 'n', 'in')
    mailbox, inbox, token = _mailbox(4, 'drop_new')
    mailbox.close()
    mailbox.put_many(token, _items(edge, 3))
    assert (inbox.discarded, edge.dropped, len(inbox)) == (3, 3, 0)


class _Copies(Plugin):
    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'),)

    def process(self, packet, port='in'):
        n = packet.payload
        for i in range(abs(n)):
            yield packet.derive(payload=i)
        if n < 0:
            raise RuntimeError('half-way')


class _Route:
    """A route that records how it was called: one packet, or a whole call's outputs."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, packet: StreamPacket) -> None:
        self.calls.append([packet.payload])

    def many(self, packets: list[StreamPacket]) -> None:
        self.calls.append([p.payload for p in packets])


def _host() -> tuple[PluginHost, _Route]:
    host = PluginHost('copies', _Copies, {}, is_source=False, is_sink=False)
    route = _Route()
    host.connect('out', route)
    host.setup()
    return host, route


def test_the_host_routes_all_outputs_of_one_call_as_one_batch():
    host, route = _host()
    host.handle(StreamPacket.new('raw', 's', 3), 'in')
    host.handle(StreamPacket.new('raw', 's', 1), 'in')
    assert route.calls == [[0, 1, 2], [0]]  # a single output takes the plain route: no batch cost
    assert host.metrics.produced == 4
    host.handle(StreamPacket.new('raw', 's', MAX_CALL_BATCH + 2), 'in')
    assert [len(c) for c in route.calls[2:]] == [MAX_CALL_BATCH, 2]  # bounded: chunks of MAX_CALL_BATCH


def test_outputs_before_a_plugin_raises_half_way_are_still_delivered():
    host, route = _host()
    with pytest.raises((PluginError, RuntimeError), match='half-way'):
        host.handle(StreamPacket.new('raw', 's', -2), 'in')
    assert route.calls == [[0, 1]] and host.metrics.produced == 2


def test_a_route_without_many_gets_the_packets_one_by_one():
    host = PluginHost('copies', _Copies, {}, is_source=False, is_sink=False)
    got: list[int] = []
    host.connect('out', lambda packet: got.append(packet.payload))
    host.setup()
    host.handle(StreamPacket.new('raw', 's', 3), 'in')
    assert got == [0, 1, 2] and host.metrics.produced == 3
