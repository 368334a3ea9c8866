"""Queue limits: an explicit policy when full (block or refuse), always counted, never a silent drop."""

from __future__ import annotations

import threading

import pytest

from schnitzel_stream_ros.delivery.errors import QueueFullError
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket


def event(i: int, size: int = 10) -> StreamPacket:
    return StreamPacket.new('event', 'cam0', {'i': i, 'pad': 'x' * size}, meta={'idempotency_key': f'k{i}'})


def test_refuse_policy_raises_counts_and_keeps_accepted_rows(tmp_path):
    with DurableQueue(tmp_path / 'q.db', node_id='q', max_rows=5, full_policy='refuse') as queue:
        seqs = [queue.enqueue(event(i)) for i in range(5)]
        with pytest.raises(QueueFullError, match=r"node 'q'.*max_rows=5.*not accepted"):
            queue.enqueue(event(5))
        assert queue.stats()['refused_total'] == 1
        assert queue.enqueue(event(2)) == seqs[2]  # a duplicate takes no room: still a no-op success
        assert queue.depth() == 5
        queue.claim(1)
        queue.ack([seqs[0]])
        assert queue.enqueue(event(5)) > seqs[-1]  # room again
        assert [r.idempotency_key for r in queue.claim(10)] == ['k1', 'k2', 'k3', 'k4', 'k5']


def test_block_policy_waits_for_room(tmp_path):
    with DurableQueue(tmp_path / 'q.db', max_rows=3, full_policy='block', block_timeout_sec=30) as queue:
        seqs = [queue.enqueue(event(i)) for i in range(3)]
        result: list[int] = []
        blocked = threading.Thread(target=lambda: result.append(queue.enqueue(event(3))))
        blocked.start()
        blocked.join(0.3)
        assert blocked.is_alive() and result == []  # waiting, not dropped, not refused
        queue.claim(1)
        queue.ack([seqs[0]])
        blocked.join(10)
        assert not blocked.is_alive() and len(result) == 1
        assert queue.depth() == 3 and queue.stats()['refused_total'] == 0


def test_block_policy_refuses_after_its_timeout(tmp_path):
    with DurableQueue(tmp_path / 'q.db', max_rows=2, full_policy='block', block_timeout_sec=0.2) as queue:
        queue.enqueue(event(0))
        queue.enqueue(event(1))
        with pytest.raises(QueueFullError, match=r'blocked 0\.2 s, then refused'):
            queue.enqueue(event(2))
        assert queue.stats()['refused_total'] == 1
        assert queue.depth() == 2


def test_byte_limit_and_events_that_can_never_fit(tmp_path):
    with DurableQueue(tmp_path / 'q.db', max_bytes=2000, full_policy='refuse') as queue:
        accepted = 0
        with pytest.raises(QueueFullError, match='max_bytes=2000'):
            for i in range(10):
                queue.enqueue(event(i, size=400))
                accepted += 1
        assert 3 <= accepted < 5
        assert queue.depth() == accepted and queue.stats()['queue_bytes'] <= 2000

    with DurableQueue(
        tmp_path / 'q2.db', max_bytes=1000, max_rows=10, full_policy='block', block_timeout_sec=30
    ) as queue:
        with pytest.raises(QueueFullError, match='exceed max_bytes=1000'):
            queue.enqueue(event(1, size=5000))  # refused at once: waiting cannot help
        with pytest.raises(QueueFullError, match='exceed max_rows=10'):
            queue.enqueue_many([event(i) for i in range(11)])
        assert queue.stats()['refused_total'] == 12
        assert queue.depth() == 0


def test_enqueue_many_is_all_or_nothing_at_the_limit(tmp_path):
    with DurableQueue(tmp_path / 'q.db', max_rows=10, full_policy='refuse') as queue:
        queue.enqueue_many([event(i) for i in range(7)])
        with pytest.raises(QueueFullError):
            queue.enqueue_many([event(i) for i in range(7, 11)])  # 4 new rows, room for 3
        assert queue.depth() == 7
        queue.enqueue_many([event(i) for i in range(4, 10)])  # 3 new + 3 duplicates: fits
        assert queue.depth() == 10
