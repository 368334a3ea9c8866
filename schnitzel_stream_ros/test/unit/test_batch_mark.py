"""The batch mark of a call's outputs over DDS and its reassembly in the receiving container: in
order, reordered, missing, pushed out by the bounds, hostile marks (no DDS: the cross-container path
is tests/integration/test_paced_batches.py)."""

from __future__ import annotations

import threading

import pytest

from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.runtime import batch_mark
from schnitzel_stream_ros.runtime.batch_mark import (
    MAX_BATCH_COUNT,
    META_KEY,
    BatchAssembler,
    BatchMarker,
    parse_mark,
    strip_mark,
)
from schnitzel_stream_ros.runtime.bus import TransportCounters


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _assembler(timeout: float = 0.05):
    delivered: list[list] = []
    counters = TransportCounters()
    clock = _Clock()
    assembler = BatchAssembler(lambda items: delivered.append(list(items)), counters,
                               timeout_sec=timeout, clock=clock, reaper=False)
    return assembler, delivered, counters, clock


def test_the_marker_marks_calls_of_two_or_more_and_stripping_keeps_the_packet():
    marker = BatchMarker()
    packets = [StreamPacket.new('event', 's', i, {'k': i}) for i in range(3)]
    marked = marker.mark(packets)
    marks = [parse_mark(p.meta[META_KEY]) for p in marked]
    assert [m[2:] for m in marks] == [(0, 3), (1, 3), (2, 3)]
    assert len({m[:2] for m in marks}) == 1  # one stream, one call
    assert parse_mark(marker.mark(packets[:2])[0].meta[META_KEY])[1] == marks[0][1] + 1  # next call
    assert marker.mark(packets[:1]) == packets[:1]  # one packet: nothing to hold together
    plain = strip_mark(marked[1])
    assert (plain.packet_id, dict(plain.meta)) == (packets[1].packet_id, {'k': 1})


def test_a_batch_goes_in_once_complete_in_index_order_whatever_the_arrival_order():
    assembler, delivered, counters, _ = _assembler()
    for index in (2, 0):
        assembler.add(f'p{index}', ('s1', 7, index, 3))
    assert delivered == [] and assembler.held_packets == 2
    assembler.add('p1', ('s1', 7, 1, 3))
    assert delivered == [['p0', 'p1', 'p2']] and assembler.held_packets == 0
    assert counters.batches_incomplete_total == 0


def test_an_incomplete_batch_goes_in_at_its_timeout_or_when_its_stream_moves_on():
    assembler, delivered, counters, clock = _assembler(timeout=0.05)
    assembler.add('a0', ('s1', 1, 0, 3))
    assembler.add('a2', ('s1', 1, 2, 3))
    clock.now += 0.04
    assert assembler.expire() == pytest.approx(0.01) and delivered == []
    clock.now += 0.02
    assert assembler.expire() is None
    assert delivered == [['a0', 'a2']] and counters.batches_incomplete_total == 1
    assembler.add('a1', ('s1', 1, 1, 3))  # late for a batch already put in: in at once, on its own
    assert delivered[-1] == ['a1'] and assembler.held_packets == 0
    assembler.add('b0', ('s1', 2, 0, 2))
    assembler.add('c0', ('s1', 3, 0, 2))  # the next call of the stream: b lost its second packet
    assert delivered[-1] == ['b0'] and counters.batches_incomplete_total == 2
    assembler.add('old', ('s1', 2, 1, 2))  # an older call while call 3 is held: on its own
    assert delivered[-1] == ['old'] and assembler.held_packets == 1
    assembler.add('c1', ('s1', 3, 1, 2))
    assert delivered[-1] == ['c0', 'c1']


def test_a_batch_is_held_while_its_packets_keep_coming():
    assembler, delivered, _, clock = _assembler(timeout=0.05)
    for index in range(3):  # each packet 40 ms after the one before: slow, but coming
        assembler.add(index, ('s', 1, index, 4))
        clock.now += 0.04
        assert assembler.expire() is not None and delivered == []
    assembler.add(3, ('s', 1, 3, 4))
    assert delivered == [[0, 1, 2, 3]]


def test_batches_of_several_streams_are_held_apart():
    assembler, delivered, _, _ = _assembler()
    assembler.add('x0', ('sx', 1, 0, 2))
    assembler.add('y0', ('sy', 1, 0, 2))
    assembler.add('y1', ('sy', 1, 1, 2))
    assembler.add('x1', ('sx', 1, 1, 2))
    assert delivered == [['y0', 'y1'], ['x0', 'x1']]


@pytest.mark.parametrize('value', [
    None, 'abc', 5, {'stream': 's'}, ['s', 1, 0], ['s', 1, 0, 2, 9],
    ['', 1, 0, 2], ['s' * 65, 1, 0, 2], [7, 1, 0, 2],
    ['s', True, 0, 2], ['s', 1.0, 0, 2], ['s', -1, 0, 2], ['s', 2**60, 0, 2],
    ['s', 1, 2, 2], ['s', 1, -1, 2], ['s', 1, 0, 1], ['s', 1, 0, MAX_BATCH_COUNT + 1], ['s', 1, 0, '2'],
])
def test_hostile_marks_do_not_parse(value):
    assert parse_mark(value) is None


def test_contradicting_marks_go_in_alone_and_are_counted():
    assembler, delivered, counters, _ = _assembler()
    assembler.add('p0', ('s', 1, 0, 3))
    assembler.add('dup', ('s', 1, 0, 3))  # index 0 again
    assembler.add('other', ('s', 1, 1, 4))  # another count for the same call
    assert delivered == [['dup'], ['other']] and counters.batch_marks_invalid_total == 2
    assembler.add('p1', ('s', 1, 1, 3))
    assembler.add('p2', ('s', 1, 2, 3))
    assert delivered[-1] == ['p0', 'p1', 'p2']  # the batch itself is unharmed


def test_time_the_whole_process_stood_still_does_not_count_against_a_held_batch():
    """The reaper meant to wake at the deadline but woke 0.4 s late: the process was descheduled, the
    batch's other packets may be waiting in DDS for the receiving thread, so it is held on."""
    assembler, delivered, counters, clock = _assembler(timeout=0.1)
    assembler.add('p0', ('s', 1, 0, 2))
    planned = clock.now + 0.1
    clock.now = planned + 0.4
    assert assembler.wake(planned) == pytest.approx(0.1) and delivered == []
    assembler.add('p1', ('s', 1, 1, 2))
    assert delivered == [['p0', 'p1']] and counters.batches_incomplete_total == 0
    assembler.add('q0', ('s', 2, 0, 2))  # a reaper on time (5 ms late): the batch is short
    planned = clock.now + 0.1
    clock.now = planned + 0.005
    assert assembler.wake(planned) is None
    assert delivered[-1] == ['q0'] and counters.batches_incomplete_total == 1


def test_holding_is_bounded_by_streams_and_packets_and_loses_nothing(monkeypatch):
    monkeypatch.setattr(batch_mark, 'MAX_STREAMS', 4)
    monkeypatch.setattr(batch_mark, 'MAX_HELD_PACKETS', 10)
    assembler, delivered, counters, _ = _assembler()
    for stream in range(6):  # six streams, one packet each of a batch of 2
        assembler.add(stream, (f's{stream}', 1, 0, 2))
        assert assembler.held_packets <= 4
    assert delivered == [[0], [1]] and counters.batches_incomplete_total == 2  # the oldest pushed out
    for index in range(8):
        assembler.add(f'big{index}', ('sbig', 1, index, 9))
        assert assembler.held_packets <= 10
    assembler.flush()
    assert sorted(len(d) for d in delivered) == [1, 1, 1, 1, 1, 1, 8]  # everything that arrived went in


def test_the_reaper_puts_in_an_incomplete_batch_after_the_timeout_on_its_own():
    got = threading.Event()
    delivered: list[list[str]] = []
    counters = TransportCounters()

    def deliver(items):
        delivered.append(list(items))
        got.set()

    assembler = BatchAssembler(deliver, counters, timeout_sec=0.05)
    assembler.add('only', ('s', 1, 0, 2))
    assert got.wait(30.0), 'an incomplete batch was never put in'
    assert delivered == [['only']] and counters.batches_incomplete_total == 1
    assembler.close()
    assembler.add('late', ('s', 2, 0, 2))  # closed: nothing is held any more
    assert delivered[-1] == ['late']
