"""Sinks that write a file per packet keep their directory bounded (issue 26): JsonFileSink and
BytesToFileRefNode on real directories, the oldest files deleted first, every deletion counted,
the files of an earlier run taken into account."""

from __future__ import annotations

import json

from schnitzel_stream_ros.nodes.core.blob_ref import BytesToFileRefNode, FileRefToBytesNode
from schnitzel_stream_ros.nodes.core.json_file_sink import JsonFileSink
from schnitzel_stream_ros.observability.file_retention import FileRetention
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


def event(i: int) -> StreamPacket:
    return StreamPacket(f'p{i}', '2026-01-01T00:00:00Z', 'event', 'cam1', {'i': i}, {})


def run_json_sink(out, n: int, start: int = 0, **config):
    ctx = SimpleContext('files', resolve_params(JsonFileSink, {'dir': str(out), **config}))
    node = JsonFileSink(ctx)
    node.setup()
    for i in range(start, start + n):
        node.process(event(i))
    node.close()
    return ctx


def test_json_file_sink_keeps_the_newest_max_files_and_counts_the_rest(tmp_path):
    out = tmp_path / 'packets'
    ctx = run_json_sink(out, 50, max_files=20, filename_template='{packet_id}.json')
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f'p{i}.json' for i in range(30, 50))
    assert ctx.counters['files_deleted_total'] == 30 and ctx.counters['written_total'] == 50
    assert json.loads((out / 'p49.json').read_text()) == {'i': 49}
    # the next run counts what the last one left: still 20 files, the oldest of the old run went first
    ctx = run_json_sink(out, 5, start=100, max_files=20, filename_template='{packet_id}.json')
    names = {p.name for p in out.iterdir()}
    assert len(names) == 20 and {'p100.json', 'p104.json', 'p49.json'} <= names and 'p34.json' not in names
    assert ctx.counters['files_deleted_total'] == 5


def test_json_file_sink_byte_budget(tmp_path):
    out = tmp_path / 'packets'
    ctx = run_json_sink(out, 40, max_files=0, max_bytes=200, filename_template='{packet_id}.json', indent=0)
    total = sum(p.stat().st_size for p in out.iterdir())
    assert total <= 200 and (out / 'p39.json').exists()
    assert ctx.counters['files_deleted_total'] == 40 - len(list(out.iterdir()))


def test_blob_writer_keeps_its_directory_bounded_and_new_refs_stay_readable(tmp_path):
    blobs = tmp_path / 'blobs'
    ctx = SimpleContext('blobs', resolve_params(BytesToFileRefNode, {'dir': str(blobs), 'max_files': 10,
                                                                     'max_bytes': 1 << 20}))  # fmt: skip
    node = BytesToFileRefNode(ctx)
    node.setup()
    refs = [node.process(StreamPacket(f'b{i}', '2026-01-01T00:00:00Z', Kind.BYTES, 'cam1', bytes(100), {}))
            for i in range(25)]  # fmt: skip
    node.close()
    files = [p for p in blobs.rglob('*') if p.is_file()]
    assert len(files) == 10 and ctx.counters['files_deleted_total'] == 15
    reader_ctx = SimpleContext('read', resolve_params(FileRefToBytesNode, {'dir': str(blobs)}))
    reader = FileRefToBytesNode(reader_ctx)
    reader.setup()
    assert reader.process(refs[-1]).payload == bytes(100)  # the newest blobs are all there


def test_retention_never_deletes_the_file_just_written(tmp_path):
    big = tmp_path / 'big.bin'
    big.write_bytes(bytes(1000))
    retention = FileRetention(tmp_path, max_files=5, max_bytes=10)
    assert big.exists() and retention.deleted == 0  # one file over the byte budget stays: the newest
    small = tmp_path / 'small.bin'
    small.write_bytes(b'x')
    retention.added(small, 1)
    assert not big.exists() and small.exists() and retention.deleted == 1
