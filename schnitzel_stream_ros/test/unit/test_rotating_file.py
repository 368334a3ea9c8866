"""Rotation of the files a long-running site writes: JSONL sinks and the run timeline (real files)."""

from __future__ import annotations

import json
import time

import pytest

from schnitzel_stream_ros.nodes.core.jsonl_sink import JsonlSink
from schnitzel_stream_ros.observability.rotating_file import RotatingLines
from schnitzel_stream_ros.observability.timeline import TimelineWriter
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


def lines_of(path) -> list[str]:
    return path.read_text(encoding='utf-8').splitlines() if path.exists() else []


def test_size_rotation_never_splits_a_line_and_keeps_the_newest_files(tmp_path):
    path = tmp_path / 'out.jsonl'
    out = RotatingLines(path, max_bytes=100, keep=2)
    written = [json.dumps({'n': n, 'pad': 'é' * (n % 7)}) for n in range(60)]  # multi-byte text too
    for line in written:
        out.write(line)
    out.close()
    files = [out.old_file(2), out.old_file(1), path]
    kept = [line for f in files for line in lines_of(f)]
    assert kept == written[-len(kept):]  # the newest lines, in order, each whole
    for f in files:
        assert f.stat().st_size <= 100
        assert all(json.loads(line) for line in lines_of(f))
    assert not out.old_file(3).exists()
    assert out.rotations >= 10 and out.deleted == out.rotations - 2


def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(tmp_path):
    out = RotatingLines(tmp_path / 'x', max_bytes=10, keep=5)
    for line in ('a', 'b' * 50, 'c'):
        out.write(line)
    out.close()
    assert [lines_of(f) for f in (out.old_file(2), out.old_file(1), out.path)] == [['a'], ['b' * 50], ['c']]


def test_age_rotation(tmp_path):
    out = RotatingLines(tmp_path / 'aged', max_age_sec=0.05, keep=1)
    out.write('old')
    time.sleep(0.1)
    out.write('new')
    out.close()
    assert lines_of(out.old_file(1)) == ['old'] and lines_of(out.path) == ['new']


def test_appending_continues_an_existing_file_and_counts_its_size(tmp_path):
    path = tmp_path / 'again.jsonl'
    path.write_text('x' * 90 + '\n')
    out = RotatingLines(path, max_bytes=100, keep=1)
    out.write('y' * 20)  # 91 + 21 > 100: the existing content rotates out first
    out.close()
    assert lines_of(out.old_file(1)) == ['x' * 90] and lines_of(path) == ['y' * 20]


def test_bad_limits_are_refused(tmp_path):
    with pytest.raises(ValueError, match='must be >= 0'):
        RotatingLines(tmp_path / 'z', max_bytes=-1)


def test_jsonl_sink_rotates_with_retention_and_counts(tmp_path):
    path = tmp_path / 'events.jsonl'
    ctx = SimpleContext('sink', resolve_params(JsonlSink, {'path': str(path), 'max_bytes': 2000, 'keep': 2}))
    sink = JsonlSink(ctx)
    sink.setup()
    for n in range(200):
        sink.process(StreamPacket.new('demo', 'src', {'n': n}))
    sink.close()
    kept = [json.loads(line)['payload']['n'] for f in (path.with_name('events.jsonl.2'),
            path.with_name('events.jsonl.1'), path) for line in lines_of(f)]
    assert kept == list(range(200 - len(kept), 200)) and len(kept) > 20
    assert ctx.counters['written_total'] == 200 and ctx.counters['rotations_total'] >= 3
    assert not path.with_name('events.jsonl.3').exists()


def test_timeline_rotates_past_its_size_limit(tmp_path):
    path = tmp_path / 'timeline.jsonl'
    timeline = TimelineWriter(path, max_bytes=1000, keep=1)
    snap = {'nodes': {'src': {'produced': 1, 'consumed': 0, 'counters': {'x': 1}}}, 'edges': []}
    for _ in range(50):
        timeline.record([snap], force=True)
    timeline.close()
    rows = [json.loads(line) for f in (path.with_name('timeline.jsonl.1'), path) for line in lines_of(f)]
    assert 5 <= len(rows) < 50 and [r['t'] for r in rows] == sorted(r['t'] for r in rows)
    assert path.stat().st_size <= 1000 and not path.with_name('timeline.jsonl.2').exists()


def test_timeline_counts_its_rotations_and_forgets_nodes_that_went(tmp_path):
    path = tmp_path / 'timeline.jsonl'
    timeline = TimelineWriter(path, max_bytes=2000, keep=1)
    for step in range(300):  # node churn (hot-replace under new ids): memory stays at the live set
        snap = {'nodes': {f'n{step}': {'produced': step, 'consumed': 0}},
                'edges': [{'topic': f'/t{step}', 'dst': f'n{step}', 'dst_port': 'in', 'packets': step}]}
        timeline.record([snap], force=True)
    timeline.close()
    assert len(timeline._last_counts) == 1 and len(timeline._last_edges) == 1
    counts = timeline.counts()
    assert counts['rotations'] >= 5 and counts['deleted_files'] == counts['rotations'] - 1


def test_audit_log_is_bounded_and_counts_its_rotations(tmp_path):
    from schnitzel_stream_ros.control.audit import AuditLog

    audit = AuditLog(tmp_path / 'audit.jsonl', max_bytes=2000, keep=2)
    for i in range(100):
        audit.write(who='op', authenticated=True, method='PUT', path=f'/api/nodes/n{i}', what='x',
                    started=0.0, finished=0.1, status=200, result='ok')  # fmt: skip
    audit.close()
    counts = audit.counts()
    assert counts['written'] == 100 and counts['rotations'] >= 3
    assert counts['deleted_files'] == counts['rotations'] - 2
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']
