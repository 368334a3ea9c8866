"""Checkpoints of stateful plugins (runtime/checkpoints.py, state/store.py) on a real SQLite file.

What a restart relies on: a node set up again restores what the last checkpoint holds, a state
version the plugin cannot read is refused with one line (at load and at hot-replace), a checkpoint
over the size bound is not written (the previous one stays), and a checkpoint is written ahead of
every event a dedup lets through.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest

from schnitzel_stream_ros.graph.state_config import StateSpec
from schnitzel_stream_ros.nodes.compute.iou_tracker import ID_BLOCK, IouTrackerNode
from schnitzel_stream_ros.nodes.policy.dedup import DedupPolicyNode
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Plugin, resolve_params
from schnitzel_stream_ros.runtime.plugin_host import PluginError, PluginHost
from schnitzel_stream_ros.state.store import CheckpointStore, StateStoreError


def _event(track: int, ts: str) -> StreamPacket:
    payload = {'camera_id': 'cam0', 'event_type': 'ZONE_INTRUSION', 'track_id': track, 'ts': ts,
               'severity': 'MEDIUM'}
    return StreamPacket.new('event', 'cam0', payload, ts=ts)


def _host(cls: type[Plugin], path, params=None, **spec) -> tuple[PluginHost, list[StreamPacket]]:
    host = PluginHost('n', cls, resolve_params(cls, params or {}), is_source=False, is_sink=False,
                      state=StateSpec(str(path), **spec), state_node='/t/n')
    out: list[StreamPacket] = []
    host.connect('out', out.append)
    host.setup()
    return host, out


def _crash(host: PluginHost) -> None:
    """A kill -9: the instance is gone without close() (no final checkpoint)."""
    host.closed = True


def test_dedup_cooldowns_survive_a_crash_because_each_pass_is_written_ahead(tmp_path):
    path = tmp_path / 'state.db'
    params = {'cooldown_sec': 10.0, 'clock': 'event_ts'}
    host, out = _host(DedupPolicyNode, path, params, checkpoint_sec=3600)  # no periodic checkpoint
    host.handle(_event(1, '2026-01-01T00:00:00Z'), 'in')
    host.handle(_event(2, '2026-01-01T00:00:01Z'), 'in')
    assert len(out) == 2
    _crash(host)
    again, out2 = _host(DedupPolicyNode, path, params, checkpoint_sec=3600)
    assert again.metrics.counters['state_restored'] == 2  # the second write-ahead checkpoint
    again.handle(_event(1, '2026-01-01T00:00:09Z'), 'in')  # inside the cooldown: dropped
    again.handle(_event(2, '2026-01-01T00:00:11Z'), 'in')  # 10 s after its pass: passes
    assert [p.payload['track_id'] for p in out2] == [2]


def test_a_fresh_node_without_checkpoint_starts_empty_and_a_clean_stop_writes_the_last_state(tmp_path):
    path = tmp_path / 'state.db'
    host, _ = _host(IouTrackerNode, path, {}, checkpoint_sec=3600)
    assert host.metrics.counters['state_restored'] == 0
    box = {'x1': 0.0, 'y1': 0.0, 'x2': 10.0, 'y2': 10.0}
    host.handle(StreamPacket.new('detection', 'cam0', [{'bbox': box, 'object_type': 'PERSON'}]), 'in')
    host.close()  # clean stop: final checkpoint
    row = CheckpointStore(path).read('/t/n')
    assert row is not None and row.plugin.endswith(':IouTrackerNode') and row.version == 1
    cam = row.state['cameras']['cam0']
    assert cam['tracks'][0][0] == 1 and cam['id_limit'] == 1 + ID_BLOCK
    again, out2 = _host(IouTrackerNode, path, {}, checkpoint_sec=3600)
    moved = {'x1': 1.0, 'y1': 0.0, 'x2': 11.0, 'y2': 10.0}
    new = {'x1': 500.0, 'y1': 0.0, 'x2': 510.0, 'y2': 10.0}
    again.handle(StreamPacket.new('detection', 'cam0', [{'bbox': moved, 'object_type': 'PERSON'},
                                                        {'bbox': new, 'object_type': 'PERSON'}]), 'in')
    # the known person keeps id 1; a new one gets an id past the reserved block, never a used one
    assert [d['track_id'] for d in out2[0].payload] == [1, 1 + ID_BLOCK]


class _V2Dedup(DedupPolicyNode):
    STATE_VERSION = 2


def test_a_state_version_the_plugin_cannot_read_is_refused_with_the_reason(tmp_path):
    path = tmp_path / 'state.db'
    host, _ = _host(_V2Dedup, path, {'clock': 'event_ts'})
    host.handle(_event(1, '2026-01-01T00:00:00Z'), 'in')
    host.close()
    # the same node id, now a plugin that writes version 2 and finds... a different class first
    with pytest.raises(PluginError) as refused:
        _host(DedupPolicyNode, path, {'clock': 'event_ts'})
    assert 'was written by' in str(refused.value) and 'state clear' in str(refused.value)
    # same class name on both sides, only the version differs: refused by the version check
    store = CheckpointStore(path)
    row = store.read('/t/n')
    store.write('/t/n', 'schnitzel_stream_ros.nodes.policy.dedup:DedupPolicyNode', 2,
                '{"clock": "event_ts", "entries": []}', 0.1)
    with pytest.raises(PluginError) as refused:
        _host(DedupPolicyNode, path, {'clock': 'event_ts'})
    message = str(refused.value)
    assert '\n' not in message and 'state version 2 cannot be read' in message
    assert 'DedupPolicyNode reads state version 1' in message and row is not None


def test_hot_replace_hands_state_over_and_refuses_a_version_it_cannot_read(tmp_path):
    host, out = _host(DedupPolicyNode, tmp_path / 'state.db', {'clock': 'event_ts'})
    host.handle(_event(1, '2026-01-01T00:00:00Z'), 'in')
    same = host.prepare_replacement(DedupPolicyNode, dict(host.params))
    old = host.take_over(same)
    assert old is not None and host.plugin is same.plugin
    host.handle(_event(1, '2026-01-01T00:00:05Z'), 'in')  # the cooldown came along
    assert len(out) == 1
    newer = host.prepare_replacement(_V2Dedup, dict(host.params))  # reads only version 2
    with pytest.raises(PluginError, match='state version 1 cannot be read'):
        host.take_over(newer)
    assert host.plugin is same.plugin  # nothing changed


def test_a_checkpoint_over_max_bytes_is_not_written_and_counted(tmp_path, caplog):
    path = tmp_path / 'state.db'
    host, _ = _host(DedupPolicyNode, path, {'clock': 'event_ts'}, max_bytes=1024)
    host.handle(_event(1, '2026-01-01T00:00:00Z'), 'in')
    seq = CheckpointStore(path).read('/t/n').seq
    with caplog.at_level(logging.WARNING):
        for i in range(2, 60):
            host.handle(_event(i, '2026-01-01T00:00:00Z'), 'in')
    assert host.metrics.counters['state_oversize_total'] > 0
    assert 'over state.max_bytes 1024' in caplog.text
    assert CheckpointStore(path).read('/t/n').seq > seq  # the small ones before were written
    assert CheckpointStore(path).read('/t/n').bytes <= 1024


def test_keyed_state_is_bounded_by_max_keys_and_evictions_are_counted(tmp_path):
    host, _ = _host(DedupPolicyNode, tmp_path / 'state.db', {'clock': 'event_ts'}, max_keys=5)
    for i in range(12):
        host.handle(_event(i, '2026-01-01T00:00:00Z'), 'in')
    assert len(host.plugin.gate) == 5
    assert host.metrics.counters['state_evicted_total'] == 7


def test_a_damaged_checkpoint_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / 'state.db'
    path.write_bytes(b'this is not sqlite' * 100)
    with pytest.raises(StateStoreError) as bad:
        CheckpointStore(path)
    assert str(path) in str(bad.value) and '\n' not in str(bad.value)
    with pytest.raises(PluginError, match='damaged'):
        _host(DedupPolicyNode, path, {})
    sqlite3.connect(tmp_path / 'other.db').close()


def test_a_replacement_without_declared_state_takes_over_and_the_state_is_simply_dropped(tmp_path):
    from schnitzel_stream_ros.nodes.core.identity import Identity

    host, _ = _host(DedupPolicyNode, tmp_path / 'state.db', {'clock': 'event_ts'})
    host.handle(_event(1, '2026-01-01T00:00:00Z'), 'in')
    plain = host.prepare_replacement(Identity, {})
    host.take_over(plain)  # Identity keeps no state: nothing to refuse
    assert host.plugin is plain.plugin


class _SlowOnceDedup(DedupPolicyNode):
    """A dedup whose third snapshot takes 200 ms (a slow disk or a large state, once)."""

    snapshots = 0

    def snapshot_state(self):
        type(self).snapshots += 1
        if type(self).snapshots == 3:
            time.sleep(0.2)
        return super().snapshot_state()


def test_checkpoint_time_percentiles_cover_every_checkpoint_not_only_the_last(tmp_path):
    host, out = _host(_SlowOnceDedup, tmp_path / 'state.db', {'clock': 'event_ts'}, checkpoint_sec=3600)
    for track in range(1, 7):  # six passes: six write-ahead checkpoints, the third one slow
        host.handle(_event(track, '2026-01-01T00:00:00Z'), 'in')
    assert len(out) == 6
    host.refresh_state()  # what a snapshot (run report, /diagnostics) does
    counters = host.metrics.counters
    assert counters['state_checkpoints_total'] == 6
    assert counters['state_checkpoint_ms'] < 100  # the last one was fast ...
    assert counters['state_checkpoint_max_ms'] >= 200  # ... the slow one is still seen
    assert counters['state_checkpoint_p99_ms'] >= 180  # its bucket (within ~9 %)
    assert counters['state_checkpoint_p50_ms'] < 100
