"""The blackboard file (state/blackboard.py): the two write rules, watching in commit order, scope,
bounds, persistence across graph starts."""

from __future__ import annotations

import pytest

from schnitzel_stream_ros.state.blackboard import (
    MAX_VALUE_BYTES,
    Blackboard,
    BlackboardConflict,
    BlackboardError,
    BlackboardStore,
    start_of_graph,
)


def test_last_writer_wins_and_compare_and_set_per_write(tmp_path):
    store = BlackboardStore(tmp_path / 'b.db')
    one, two = Blackboard(store, '/site', '/site/a'), Blackboard(store, '/site', '/site/b')
    assert one.get('mode') == (None, 0)
    assert one.put('mode', 'patrol') == 1
    assert two.put('mode', 'dock') == 2  # last writer wins
    assert one.get('mode') == ('dock', 2)
    with pytest.raises(BlackboardConflict) as conflict:
        one.put('mode', 'patrol', expect=1)  # it read version 1; someone wrote since
    assert (conflict.value.expected, conflict.value.current) == (1, 2)
    assert one.get('mode') == ('dock', 2)  # nothing changed
    assert one.put('mode', 'patrol', expect=2) == 3
    assert one.put('fresh', 1, expect=0) == 1  # 0: the key must not exist yet


def test_a_watcher_sees_every_committed_version_in_order_under_its_prefix_and_scope(tmp_path):
    store = BlackboardStore(tmp_path / 'b.db')
    writer, watcher = Blackboard(store, '/site', 'w'), Blackboard(store, '/site', 'r')
    other_graph = Blackboard(store, '/lab', 'x')
    writer.put('occupancy/entrance', 1)
    watcher.watch('occupancy/')  # from now on
    for n in (2, 3):
        writer.put('occupancy/entrance', n)
    writer.put('mode', 'dock')
    other_graph.put('occupancy/entrance', 99)
    writer.put('occupancy/dock', 1)
    assert watcher.changes() == [
        ('occupancy/entrance', 2, 2), ('occupancy/entrance', 3, 3), ('occupancy/dock', 1, 1)
    ]
    assert watcher.changes() == []
    late = Blackboard(store, '/site', 'late')
    late.watch('occupancy/', from_start=True)
    assert [v for _k, v, _ver in late.changes(limit=2)] == [1, 2]  # bounded per call, the rest next
    assert [v for _k, v, _ver in late.changes()] == [3, 1]


def test_values_and_keys_are_bounded_and_must_be_json(tmp_path):
    board = Blackboard(BlackboardStore(tmp_path / 'b.db'), '/', 'w')
    with pytest.raises(BlackboardError, match='over 262144 bytes'):
        board.put('big', 'x' * MAX_VALUE_BYTES)
    with pytest.raises(BlackboardError, match=r'NaN|JSON'):
        board.put('nan', float('nan'))
    with pytest.raises(BlackboardError, match='non-empty text'):
        board.put('', 1)


def test_the_log_is_trimmed_to_max_versions_and_a_watcher_behind_it_is_told(tmp_path):
    store = BlackboardStore(tmp_path / 'b.db', max_versions=100)
    board = Blackboard(store, '/', 'w')
    watcher = Blackboard(store, '/', 'r')
    watcher.watch('k', from_start=True)
    for n in range(1500):
        board.put('k', n)
    seen = []
    while batch := watcher.changes():
        seen += batch
    assert watcher.missed > 0 and len(seen) + watcher.missed == 1500
    assert seen[-1] == ('k', 1499, 1500)  # the current version is always kept


def test_persistence_across_graph_starts(tmp_path):
    path = tmp_path / 'b.db'
    store = BlackboardStore(path)
    Blackboard(store, '/', 'w').put('mode', 'dock')
    store.close()
    start_of_graph(path, persist=True)
    assert Blackboard(BlackboardStore(path), '/', 'r').get('mode') == ('dock', 1)
    start_of_graph(path, persist=False)
    assert Blackboard(BlackboardStore(path), '/', 'r').get('mode') == (None, 0)
