"""Damaged queue files are quarantined and a fresh queue starts; a full disk refuses clearly."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest

from schnitzel_stream_ros.delivery.errors import DiskFullError, QueueStorageError
from schnitzel_stream_ros.delivery.queue import DeadLetter, DurableQueue
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
        salvaged = incidents[0][1].get('salvaged_rows', 0)
        assert queue.depth() == salvaged  # what could be read of the damaged file, nothing else
        seq = queue.enqueue(event(10**6))  # a working, fresh queue
        assert seq in [r.seq for r in queue.claim(10**6)]
    with DurableQueue(path) as again:  # no crash loop: the fresh file is fine
        assert again.stats()['quarantined_total'] == 0
        assert again.depth() == salvaged + 1
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


def test_a_damaged_page_in_the_middle_of_a_backlog_is_salvaged_with_its_keys(tmp_path):
    path = tmp_path / 'queue.db'
    filled_queue(path, rows=3000)
    page = (path.stat().st_size // 2) // 4096 * 4096
    scribble(path, page, 4096)  # one 4 KB page in the middle
    incidents: list[dict] = []
    with DurableQueue(path, on_incident=lambda _kind, detail: incidents.append(detail)) as queue:
        [detail] = incidents
        [moved] = sorted(tmp_path.glob('queue.db.corrupt-*'))
        assert detail['moved_to'] == str(moved) and moved.exists()  # kept for inspection
        rows = queue.claim(10_000)
        keys = {r.idempotency_key for r in rows}
        assert detail['salvaged_rows'] == len(rows) == queue.depth() == queue.ledger()['salvaged_total']
        assert len(rows) >= 2900, len(rows)  # one page holds a few dozen rows at most
        assert {f'k{i}' for i in range(50)} <= keys  # rows before the damaged page
        assert {f'k{i}' for i in range(2950, 3000)} <= keys  # and after it
        for row in rows:  # intact rows, original keys, payload as enqueued
            i = int(row.idempotency_key[1:])
            assert row.packet().payload == {'i': i, 'pad': 'y' * 200}
        assert [r.seq for r in rows] == sorted(r.seq for r in rows)
        assert [int(r.idempotency_key[1:]) for r in rows] == sorted(int(r.idempotency_key[1:]) for r in rows)


def test_salvage_by_hand_from_the_cli(tmp_path, capsys):
    from schnitzel_stream_ros.delivery import deadletter_cli

    damaged = tmp_path / 'queue.db'
    filled_queue(damaged, rows=1000)
    with DurableQueue(damaged) as queue:
        queue.dead_letter([DeadLetter(s.seq, 'rejected: HTTP 400', 400) for s in queue.claim(3)])
    scribble(damaged, (damaged.stat().st_size // 2) // 4096 * 4096, 4096)
    target = tmp_path / 'fresh.db'
    assert deadletter_cli.main(['salvage', str(damaged), '--into', str(target)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['rows'] >= 900 and report['dead_letters'] == 3
    with DurableQueue(target) as queue:
        assert queue.depth() == report['rows'] and queue.dead_count() == 3
        assert {d.idempotency_key for d in queue.list_dead()} == {'k0', 'k1', 'k2'}
        seq = queue.enqueue(event(5000))
        assert seq > max(d.seq for d in queue.list_dead())  # never collides with a dead letter
    assert damaged.exists()  # only read
