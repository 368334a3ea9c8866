"""Core plugins, run without ROS through plugin.SimpleContext (real files in tmp_path)."""
from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time

import pytest

from schnitzel_stream_ros.codec.blob_ref import BlobRef
from schnitzel_stream_ros.nodes.core.blob_ref import BytesToFileRefNode, FileRefToBytesNode
from schnitzel_stream_ros.nodes.core.burst import BurstNode
from schnitzel_stream_ros.nodes.core.every_nth_sampler import EveryNthFrameSamplerNode
from schnitzel_stream_ros.nodes.core.identity import Identity
from schnitzel_stream_ros.nodes.core.json_file_sink import JsonFileSink, render_filename
from schnitzel_stream_ros.nodes.core.jsonl_sink import JsonlSink
from schnitzel_stream_ros.nodes.core.packet_record import NotJsonError
from schnitzel_stream_ros.nodes.core.print_sink import PrintSink
from schnitzel_stream_ros.nodes.core.static_source import StaticSource
from schnitzel_stream_ros.nodes.core.synthetic_source import SyntheticSource
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


def make(cls, node_id='n', **params):
    """A plugin instance with validated params and setup() done (as the runtime would)."""
    ctx = SimpleContext(node_id=node_id, params=resolve_params(cls, params))
    plugin = cls(ctx)
    plugin.setup()
    return plugin, ctx


def packet(kind='event', payload=None, **meta):
    return StreamPacket.new(kind, 'cam01', {'n': 1} if payload is None else payload, meta)


def as_list(result):
    if result is None:
        return []
    if isinstance(result, StreamPacket):
        return [result]
    return list(result)


def test_static_source_emits_configured_packets_in_order_with_defaults():
    source, _ = make(StaticSource, 'src', packets=[
        {'kind': 'demo', 'source_id': 'demo01', 'payload': {'v': 1}, 'ts': '2026-02-14T00:00:00Z',
         'meta': {'idempotency_key': 'k1'}},
        {'payload': {'v': 2}},
    ], kind='sensor')
    out = list(source.produce())
    assert [p.payload for p in out] == [{'v': 1}, {'v': 2}]
    assert (out[0].kind, out[0].source_id, out[0].ts, out[0].meta['idempotency_key']) == (
        'demo', 'demo01', '2026-02-14T00:00:00Z', 'k1')
    assert (out[1].kind, out[1].source_id) == ('sensor', 'src')  # defaults: kind param, node id
    assert out[0].packet_id != out[1].packet_id


def test_static_source_declares_the_kinds_it_is_configured_with():
    _, outputs = StaticSource.ports_for({'packets': [{'kind': 'frame'}, {'payload': 1}], 'kind': 'raw'})
    assert outputs[0].kinds == {'frame', 'raw'}
    assert StaticSource.check_params({'packets': [{'kind': 'x', 'ts': 'not a time'}]})


def test_identity_passes_the_same_object():
    node, _ = make(Identity)
    p = packet()
    assert node.process(p) is p


def test_burst_emits_count_new_packets_with_index_in_meta():
    node, _ = make(BurstNode, count=3, meta_key='copy')
    p = packet(kept='yes')
    out = as_list(node.process(p))
    assert [o.meta['copy'] for o in out] == [0, 1, 2]
    assert all(o.meta['kept'] == 'yes' and o.payload == p.payload and o.ts == p.ts for o in out)
    assert len({o.packet_id for o in out} | {p.packet_id}) == 4
    zero, _ = make(BurstNode, count=0)
    assert as_list(zero.process(p)) == []


def test_print_sink_prints_one_json_line_and_forwards_only_when_asked(capsys):
    sink, _ = make(PrintSink, prefix='DEV ')
    p = packet(payload={'frame': object()})  # not JSON: a dev sink prints str() instead of failing
    assert sink.process(p) is None
    line = capsys.readouterr().out
    assert line.startswith('DEV ') and line.endswith('\n')
    record = json.loads(line[len('DEV '):])
    assert record['packet_id'] == p.packet_id and record['kind'] == 'event'
    forwarding, _ = make(PrintSink, forward=True)
    assert forwarding.process(p) is p


def test_jsonl_sink_appends_lines_and_counts(tmp_path):
    path = tmp_path / 'deep' / 'events.jsonl'
    sink, ctx = make(JsonlSink, 'jsonl', path=str(path), body='payload')
    sink.process(packet(payload={'n': 1}))
    sink.process(packet(payload={'n': 'ü'}))
    sink.close()
    lines = path.read_text(encoding='utf-8').splitlines()
    assert [json.loads(x) for x in lines] == [{'n': 1}, {'n': 'ü'}]
    assert ctx.counters['written_total'] == 2
    again, _ = make(JsonlSink, path=str(path))  # appends, whole packet by default
    again.process(packet())
    again.close()
    assert json.loads(path.read_text().splitlines()[-1])['source_id'] == 'cam01'


def test_jsonl_sink_refuses_non_json_naming_node_kind_and_source(tmp_path):
    sink, _ = make(JsonlSink, 'lane', path=str(tmp_path / 'x.jsonl'))
    expected = r"node 'lane': packet kind 'frame' from source_id 'cam01' is not JSON"
    with pytest.raises(NotJsonError, match=expected):
        sink.process(StreamPacket.new('frame', 'cam01', b'raw'))
    sink.close()
    assert (tmp_path / 'x.jsonl').read_text() == ''  # nothing half-written


def test_json_file_sink_writes_one_file_per_packet_inside_its_dir(tmp_path):
    sink, ctx = make(JsonFileSink, 'files', dir=str(tmp_path), forward=True)
    first = sink.process(StreamPacket.new('event', '../../etc/cam', {'a': 1}))
    sink.process(StreamPacket.new('event', 'cam', {'a': 2}))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ['000000__.._.._etc_cam_event.json', '000001_cam_event.json']
    assert json.loads((tmp_path / names[0]).read_text()) == {'a': 1}
    assert first.meta['file'] == {'path': str(tmp_path / names[0]), 'node_id': 'files'}
    assert ctx.counters['written_total'] == 2


def test_json_file_sink_template_cannot_name_a_path():
    with pytest.raises(ValueError, match='not a plain file name'):
        render_filename('../{kind}.json', kind='x')
    assert JsonFileSink.check_params({'filename_template': '{nope}.json'})
    assert render_filename('{seq:03d}_{source_id}.json', seq=7, source_id='a/b') == '007_a_b.json'


def test_bytes_to_file_ref_and_back_round_trip(tmp_path):
    to_ref, ctx = make(BytesToFileRefNode, 'to_ref', dir=str(tmp_path), content_type='image/jpeg')
    data = b'\x00\x01jpeg-bytes'
    original = StreamPacket.new('bytes', 'cam01', data)
    ref_packet = to_ref.process(original)
    assert ref_packet.kind == 'bytes_ref' and ref_packet.packet_id == original.packet_id
    ref = BlobRef.from_payload(ref_packet.payload)
    assert (ref.size_bytes, ref.sha256, ref.content_type) == (len(data), hashlib.sha256(data).hexdigest(),
                                                              'image/jpeg')
    assert (tmp_path / ref.path).read_bytes() == data
    assert ref.path == f'cam01/{original.packet_id}.bin'
    assert ctx.counters['written_total'] == 1
    json.dumps(ref_packet.payload)  # portable

    back, _ = make(FileRefToBytesNode, 'back', dir=str(tmp_path))
    restored = back.process(ref_packet)
    assert (restored.kind, restored.payload) == ('bytes', data)


def test_file_ref_to_bytes_verifies_and_stays_inside_its_dir(tmp_path):
    to_ref, _ = make(BytesToFileRefNode, dir=str(tmp_path / 'blobs'))
    ref_packet = to_ref.process(StreamPacket.new('bytes', 'cam', b'abc'))
    ref = BlobRef.from_payload(ref_packet.payload)
    (tmp_path / 'blobs' / ref.path).write_bytes(b'abd')  # replaced behind our back
    back, _ = make(FileRefToBytesNode, 'back', dir=str(tmp_path / 'blobs'))
    with pytest.raises(ValueError, match=r"node 'back' \(source_id 'cam'\): payload.ref.sha256"):
        back.process(ref_packet)
    no_dir, _ = make(FileRefToBytesNode, 'nodir')
    with pytest.raises(ValueError, match=r'is relative: set config\.dir'):
        no_dir.process(ref_packet)
    outside = (tmp_path / 'secret.bin')
    outside.write_bytes(b'abc')
    escaping = {'ref': {**ref.to_payload()['ref'], 'path': str(outside)}}
    with pytest.raises(ValueError, match='escapes the blob root'):
        back.process(ref_packet.derive(payload=escaping))


def test_bytes_to_file_ref_refuses_escaping_names_and_non_bytes(tmp_path):
    to_ref, _ = make(BytesToFileRefNode, 'to_ref', dir=str(tmp_path))
    with pytest.raises(ValueError, match="node 'to_ref': blob path"):
        to_ref.process(StreamPacket.new('bytes', '../../outside', b'x'))
    with pytest.raises(TypeError, match="expected a bytes payload, got dict"):
        to_ref.process(StreamPacket.new('bytes', 'cam', {'not': 'bytes'}))


def test_every_nth_sampler_keeps_every_nth_and_counts():
    node, ctx = make(EveryNthFrameSamplerNode, every_n=3, offset=1)
    frames = [StreamPacket.new('frame', 'cam', {'frame': None, 'frame_idx': i}) for i in range(8)]
    kept = [f.payload['frame_idx'] for f in frames if node.process(f) is not None]
    assert kept == [1, 4, 7]
    assert (ctx.counters['kept_total'], ctx.counters['dropped_total']) == (3, 5)
    meta_only = StreamPacket.new('frame', 'cam', None, {'frame_idx': 4})
    assert node.process(meta_only) is meta_only
    with pytest.raises(TypeError, match='without an integer frame_idx'):
        node.process(StreamPacket.new('frame', 'cam', {'frame': None}))


def test_synthetic_source_finite_unthrottled_payloads():
    source, _ = make(SyntheticSource, 'syn', rate_hz=0.0, count=5, payload_bytes=10)
    out = list(source.produce())
    assert [p.payload['seq'] for p in out] == [0, 1, 2, 3, 4]
    assert out[0].payload['data'] == 'x' * 10 and out[0].kind == 'raw' and out[0].source_id == 'syn'
    assert out[3].meta['idempotency_key'] == 'synthetic:syn:3'
    raw, _ = make(SyntheticSource, rate_hz=0.0, count=2, payload_bytes=4, payload='bytes')
    assert [(p.kind, p.payload) for p in raw.produce()] == [('bytes', b'\x00' * 4)] * 2


def test_synthetic_source_is_rate_limited_by_schedule():
    """Packets are spaced by the schedule (checked as order of events, not as a wall-clock bound)."""
    source, _ = make(SyntheticSource, rate_hz=50.0, count=4)
    stamps = []
    for _ in source.produce():
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 4 and all(g > 0.0 for g in gaps)
    assert stamps[-1] - stamps[0] >= 3 / 50.0 * 0.9  # it waited for the schedule, never ran ahead


def test_synthetic_source_stops_when_asked():
    source, ctx = make(SyntheticSource, rate_hz=1.0, count=0)
    produced = []

    def run():
        produced.extend(source.produce())

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.05)
    ctx.stop_event.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(produced) == 1  # the first packet is due at once, the second only after 1 s
