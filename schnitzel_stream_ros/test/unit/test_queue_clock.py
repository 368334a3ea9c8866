"""Wall-clock jumps neither lose rows nor park them for long.

The wall clock is injected: changing the real system clock would disturb the whole machine (and
needs root), so these tests move a fake clock; the queue code uses it exactly where it would use
time.time()/time.monotonic().
"""

from __future__ import annotations

from schnitzel_stream_ros.delivery.queue import DurableQueue, Nack
from schnitzel_stream_ros.packet import StreamPacket


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(i: int) -> StreamPacket:
    return StreamPacket.new('event', 'cam0', {'i': i})


def test_backward_jump_cannot_park_a_retry_for_long(tmp_path):
    wall = FakeClock(2_000_000_000.0)
    with DurableQueue(tmp_path / 'q.db', wall_clock=wall, max_retry_delay_sec=60) as queue:
        seq = queue.enqueue(event(1))
        queue.claim(1)
        queue.nack([Nack(seq, 5.0, 'HTTP 503')])
        wall.now -= 86_400  # NTP fixes a clock that was a day ahead
        [row] = queue.claim(1)  # the retry time is implausibly far ahead: due now
        assert row.seq == seq


def test_small_backward_jump_delays_a_retry_by_at_most_the_cap(tmp_path):
    wall = FakeClock(2_000_000_000.0)
    with DurableQueue(tmp_path / 'q.db', wall_clock=wall, max_retry_delay_sec=60) as queue:
        seq = queue.enqueue(event(1))
        queue.claim(1)
        queue.nack([Nack(seq, 5.0, 'HTTP 503')])
        wall.now -= 30
        assert queue.claim(1) == []
        wall.now += 35.5  # 5 s of backoff + the 30 s the clock went back: bounded by the 60 s cap
        assert [r.seq for r in queue.claim(1)] == [seq]


def test_forward_jump_does_not_expire_leases(tmp_path):
    wall = FakeClock(2_000_000_000.0)
    mono = FakeClock(100.0)
    with DurableQueue(tmp_path / 'q.db', wall_clock=wall, mono_clock=mono) as queue:
        queue.enqueue(event(1))
        [row] = queue.claim(1, lease_sec=30)
        wall.now += 86_400
        assert queue.claim(1, lease_sec=30) == []  # lease time is monotonic: still held
        mono.now += 31
        assert [r.seq for r in queue.claim(1, lease_sec=30)] == [row.seq]


def test_order_is_by_seq_whatever_the_clock_says(tmp_path):
    wall = FakeClock(2_000_000_000.0)
    with DurableQueue(tmp_path / 'q.db', wall_clock=wall) as queue:
        seqs = []
        for i in range(5):
            seqs.append(queue.enqueue(event(i)))
            wall.now -= 3600  # every enqueue an hour "earlier"
        rows = queue.claim(10)
        assert [r.seq for r in rows] == seqs
        assert [r.packet().payload['i'] for r in rows] == list(range(5))
