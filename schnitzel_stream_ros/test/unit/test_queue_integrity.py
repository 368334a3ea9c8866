"""Damaged queue files are quarantined and a fresh queue starts; a full disk refuses clearly."""

from __future__ import annotations

import random
import sqlite3

import pytest

from schnitzel_stream_ros.delivery.errors import DiskFullError, QueueStorageError
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket


def event(i: int, size: int = 200) -> StreamPacket:
    return StreamPacket.new('event', 'cam0', {'i': i, 'pad': 'y' * size}, meta={'idempotency_key': f'k{i}'})


def filled_queue(path, rows: int = 800) -> None:
    with DurableQueue(path) as queue:
        queue.enqueue_many([event(i) for i in range(rows)])
    assert path.stat().st_size > rows * 150  # checkpointed into the main file on close


def scribble(path, start: int, length: int) -> None:
    rng = random.Random(7)
    with open(path, 'r+b') as handle:
        handle.seek(start)
        handle.write(bytes(rng.randrange(256) for _ in range(length)))


def reopen_and_check_quarantine(path) -> None:
    incidents: list[tuple[str, dict]] = []
    with DurableQueue(path, on_incident=lambda kind, detail: incidents.append((kind, detail))) as queue:
        moved = sorted(path.parent.glob('queue.db.corrupt-*'))
        assert len(moved) == 1, moved
        assert incidents and incidents[0][0] == 'quarantined'
        assert incidents[0][1]['moved_to'] == str(moved[0])
        assert queue.stats()['quarantined_total'] == 1
        assert queue.ledger()['quarantined_total'] == 1
        assert queue.incidents()[0]['kind'] == 'quarantined'
        assert queue.depth() == 0
        seq = queue.enqueue(event(1))  # a working, fresh queue
        assert [r.seq for r in queue.claim(5)] == [seq]
    with DurableQueue(path) as again:  # no crash loop: the fresh file is fine
        assert again.stats()['quarantined_total'] == 0
        assert again.depth() == 1
    assert len(list(path.parent.glob('queue.db.corrupt-*'))) == 1


def test_corrupted_pages_are_quarantined(tmp_path):
    path = tmp_path / 'queue.db'
    filled_queue(path)
    scribble(path, 4096 * 3, 4096 * 6)  # pages 4..9: b-tree pages of the packets table
    reopen_and_check_quarantine(path)


def test_truncated_file_is_quarantined(tmp_path):
    path = tmp_path / 'queue.db'
    filled_queue(path)
    with open(path, 'r+b') as handle:
        handle.truncate(path.stat().st_size // 2)
    reopen_and_check_quarantine(path)


def test_file_that_is_not_a_database_is_quarantined(tmp_path):
    path = tmp_path / 'queue.db'
    filled_queue(path, rows=50)
    scribble(path, 0, 100)  # the header
    reopen_and_check_quarantine(path)


def test_file_truncated_inside_the_header_is_quarantined(tmp_path):
    path = tmp_path / 'queue.db'
    filled_queue(path, rows=50)
    with open(path, 'r+b') as handle:
        handle.truncate(50)
    reopen_and_check_quarantine(path)


def test_on_corrupt_raise_leaves_the_file_alone(tmp_path):
    path = tmp_path / 'queue.db'
    filled_queue(path)
    scribble(path, 4096 * 3, 4096 * 6)
    with pytest.raises(QueueStorageError, match='is damaged'):
        DurableQueue(path, on_corrupt='raise')
    assert path.exists() and not list(tmp_path.glob('queue.db.corrupt-*'))


def test_disk_full_refuses_clearly_and_loses_no_accepted_row(tmp_path):
    path = tmp_path / 'queue.db'
    accepted: list[str] = []
    with DurableQueue(path, node_id='q', max_page_count=60) as queue:
        with pytest.raises(DiskFullError) as err:
            for i in range(10_000):
                queue.enqueue(event(i, size=900))
                accepted.append(f'k{i}')
        assert "node 'q'" in str(err.value) and 'full' in str(err.value)
        assert 'nothing of it was accepted' in str(err.value)
        assert queue.stats()['disk_full_total'] == 1
        assert len(accepted) > 50
        # acking frees pages: the queue accepts again without a restart
        rows = queue.claim(20)
        queue.ack([r.seq for r in rows])
        queue.enqueue(event(100_000, size=900))
        accepted = [*accepted[20:], 'k100000']
    conn = sqlite3.connect(path)
    stored = [r[0] for r in conn.execute('SELECT idempotency_key FROM packets ORDER BY seq')]
    conn.close()
    assert stored == accepted
