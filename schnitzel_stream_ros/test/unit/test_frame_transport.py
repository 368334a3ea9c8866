"""Frame edges between containers: the graph rule (graph/frame_transport.py), the wiring it produces,
the load-time checks of its parameters, and the lane itself in one process (shm_lane/, real iceoryx2
shared memory: writer, reader, leases, hostile samples). Processes: test/integration/test_frame_lane.py.
"""
from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.frame_transport import EdgeTransport, FrameLane, decide, parse_transport
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.graph.wiring import load_requests
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.shm_lane import lane as lane_mod
from schnitzel_stream_ros.shm_lane.lane import FrameLaneReader, FrameLaneWriter, LaneSettings
from schnitzel_stream_ros.shm_lane.layout import (
    LOAN_META_RESERVE,
    MAGIC,
    VERSION,
    FrameHeader,
    check_header,
    pixel_offset,
)
from schnitzel_stream_ros.shm_lane.ros_glue import check_transport_param

REGISTRY = PluginRegistry(Allowlist())
SRC = 'schnitzel_stream_ros.testing.frame_lane_plugins:ChecksummedFrameSource'
SINK = 'schnitzel_stream_ros.testing.frame_lane_plugins:FrameCheckSink'


def _graph(edge: str = '', *, sink_container: str = 'detector', extra: str = '') -> str:
    return f"""
version: 2
nodes:
  - {{id: cam, plugin: '{SRC}', container: camera}}
  - {{id: check, plugin: '{SINK}', container: {sink_container}, config: {{path: /tmp/x.jsonl}}}}
{extra}
edges:
  - {{from: cam, to: check{edge}}}
"""


def _errors(text: str) -> list[str]:
    return _check(text)[1]


def _check(text: str):
    loaded = load_graph_text(text, 'g.yaml', env={})
    if loaded.errors:
        return None, [str(e) for e in loaded.errors]
    result = validate(loaded.graph, REGISTRY)
    return result.graph, [str(e) for e in result.errors]


def test_a_frame_edge_across_containers_runs_on_a_lane_by_default():
    graph, errors = _check(_graph())
    assert errors == []
    (edge,) = graph.edges
    assert edge.lane == FrameLane(pool=lane_mod.DEFAULT_POOL)
    requests = {r.node_name: r for r in load_requests(graph)}
    assert requests['cam'].parameters['transport.out.out'] == 'shm'
    assert requests['cam'].parameters['transport.out.out.pool'] == lane_mod.DEFAULT_POOL
    assert requests['check'].parameters['transport.in.in'] == 'shm'


def test_the_pool_comes_from_the_edge():
    graph, errors = _check(_graph(', transport: {kind: shm, pool: 8}'))
    assert errors == []
    assert graph.edges[0].lane == FrameLane(pool=8)


def test_transport_dds_keeps_the_old_refusal_of_raw_frames():
    errors = _errors(_graph(', transport: dds'))
    assert len(errors) == 1 and "raw kind 'frame' cannot cross" in errors[0], errors


def test_transport_shm_inside_one_container_is_refused():
    errors = _errors(_graph(', transport: shm', sink_container='camera'))
    assert len(errors) == 1 and 'transport shm joins two containers' in errors[0], errors


def test_an_edge_inside_one_container_has_no_lane():
    graph, errors = _check(_graph(sink_container='camera'))
    assert errors == [] and graph.edges[0].lane is None
    assert not any(k.startswith('transport.') for r in load_requests(graph) for k in r.parameters)


def test_transport_shm_on_a_non_frame_edge_is_refused():
    text = """
version: 2
nodes:
  - {id: src, plugin: SyntheticSource, container: a}
  - {id: out, plugin: PrintSink, container: b}
edges:
  - {from: src, to: out, transport: shm}
"""
    errors = _errors(text)
    assert len(errors) == 1 and 'transport shm carries frames only' in errors[0], errors


def test_more_lane_readers_than_a_lane_serves_are_refused():
    extra = "\n".join(f"  - {{id: c{i}, plugin: '{SINK}', container: d{i}, config: {{path: /tmp/{i}.jsonl}}}}"
                      for i in range(2))
    more = '  - {from: cam, to: c0}\n  - {from: cam, to: c1}\n'
    text = _graph(extra=extra).replace('edges:\n', 'edges:\n' + more)
    errors = _errors(text)
    assert len(errors) == 1 and 'feeds more than 2 inputs' in errors[0], errors


def test_pools_of_one_output_must_agree():
    extra = f"  - {{id: c0, plugin: '{SINK}', container: d0, config: {{path: /tmp/0.jsonl}}}}"
    text = _graph(', transport: {kind: shm, pool: 8}', extra=extra).replace(
        'edges:\n', 'edges:\n  - {from: cam, to: c0, transport: {kind: shm, pool: 4}}\n')
    errors = _errors(text)
    assert len(errors) == 1 and 'conflicts with pool' in errors[0], errors


@pytest.mark.parametrize(('raw', 'problem'), [
    ('tcp', 'transport kind must be one of shm, dds'),
    ('{kind: shm, pool: 1}', 'transport pool must be an integer 2..64'),
    ('{kind: shm, pool: true}', 'transport pool must be an integer'),
    ('{kind: dds, pool: 4}', 'transport pool applies to kind shm only'),
    ('{kind: shm, size: 4}', "unknown transport key 'size'"),
    ('[shm]', 'transport must be'),
])
def test_bad_transport_values_are_one_line_at_the_edge(raw, problem):
    errors = _errors(_graph(f', transport: {raw}'))
    assert len(errors) == 1, errors
    assert errors[0].startswith('g.yaml:') and problem in errors[0] and 'cam->check' in errors[0], errors


def test_lane_parameters_are_wiring_but_a_plugins_own_transport_parameter_is_not():
    from schnitzel_stream_ros.graph.wiring import is_reserved_param

    assert is_reserved_param('transport.out.out') and is_reserved_param('transport.in.in.pool')
    assert not is_reserved_param('transport')  # OpenCvRtspSource's tcp/udp


def test_parse_transport_forms():
    assert parse_transport(None) == (None, '')
    assert parse_transport('shm') == (EdgeTransport('shm'), '')
    assert parse_transport({'kind': 'shm', 'pool': 6}) == (EdgeTransport('shm', 6), '')


def test_across_hosts_only_an_explicit_shm_is_refused_here():
    """Nodes on two hosts (graph/placement.py's `host:`): a lane is impossible; the default leaves
    the edge to the placement rule (compressed or blob-ref)."""
    frames = frozenset({'frame'})
    lane, problem = decide(EdgeTransport('shm'), frames, crosses_containers=True, packet_port=True,
                           hosts=('edge1', 'edge2'))
    assert lane is None and 'needs one host' in problem
    default = decide(None, frames, crosses_containers=True, packet_port=True, hosts=('edge1', 'edge2'))
    assert default == (None, '')
    assert decide(None, frames, crosses_containers=True, packet_port=True, hosts=('edge1', 'edge1'))[0]


@pytest.mark.parametrize(('name', 'value', 'problem'), [
    ('transport.out.out', 'shm', ''),
    ('transport.in.in.pool', 8, ''),
    ('transport.out.nope', 'shm', 'names no output port'),
    ('transport.in.in', 'dds', "must be 'shm'"),
    ('transport.in.in.pool', 1000, 'lane pool must be 2..64'),
    ('transport.sideways.in', 'shm', 'unknown wiring parameter'),
])
def test_load_time_check_of_transport_parameters(name, value, problem):
    found = check_transport_param(name, value, {'in': object()}, {'out': object()})
    assert (problem in found) if problem else found == ''


# -- the lane in one process (real iceoryx2 shared memory) ------------------------------------------
def _frame_packet(seq: int, shape=(48, 64, 3)) -> StreamPacket:
    frame = np.full(shape, seq % 256, np.uint8)
    return StreamPacket.new('frame', 'cam', frame, {'seq': seq})


class _Collector:
    def __init__(self) -> None:
        self.packets: list[StreamPacket] = []
        self.cond = threading.Condition()

    def __call__(self, packet: StreamPacket, _t: int) -> None:
        with self.cond:
            self.packets.append(packet)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.packets) >= n, timeout), len(self.packets)


def _topic() -> str:
    return f'/unit/lane/{time.monotonic_ns()}'


def test_frames_and_packet_fields_arrive_as_shared_views():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        sent = [_frame_packet(i) for i in range(3)]
        for packet in sent:
            assert writer.write(packet)
            got.wait_for(sent.index(packet) + 1)
        for a, b in zip(sent, got.packets, strict=True):
            assert (b.packet_id, b.ts, b.kind, b.source_id, dict(b.meta)) == (
                a.packet_id, a.ts, a.kind, a.source_id, dict(a.meta))
            assert np.array_equal(a.payload, b.payload)
            assert not b.payload.flags.owndata and not b.payload.flags.writeable  # a shared, read-only view
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_leases_are_bounded_then_frames_are_copied_and_released_leases_return():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        for i in range(6):
            writer.write(_frame_packet(i))
            got.wait_for(i + 1)
        shared = [not p.payload.flags.owndata for p in got.packets]
        assert shared == [True, True, True, False, False, False]  # pool - 1 leases, then copies
        assert reader.counters()['copied_total'] == 3 and reader.held == 3
        assert all(int(p.payload[0, 0, 0]) == i for i, p in enumerate(got.packets))
        got.packets.clear()  # the plugin lets go of its frames: the leases go back to the pool
        writer.write(_frame_packet(6))
        got.wait_for(1)
        assert not got.packets[0].payload.flags.owndata
        assert reader.held == 1
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def _send_raw_sample(writer: FrameLaneWriter, slice_len: int, meta_json: bytes, *, height: int, width: int,
                     pixel_len: int, pixel_off: int, seq: int = 0) -> None:
    """Put a sample on the writer's lane by hand (3 channels of uint8, the writer's epoch), and ring."""
    sample = writer._publisher_for(slice_len).loan_slice_uninit(slice_len)
    header = sample.user_header().contents
    header.magic, header.version, header.dtype = MAGIC, VERSION, 0
    header.height, header.width, header.channels = height, width, 3
    header.meta_len, header.pixel_len, header.pixel_off = len(meta_json), pixel_len, pixel_off
    header.epoch, header.seq = writer._epoch, seq
    ctypes.memmove(sample.payload_ptr, meta_json, len(meta_json))
    sample.assume_init().send()
    writer._notifier.notify()


@contextlib.contextmanager
def _lane_after_one_frame() -> Iterator[tuple[FrameLaneWriter, FrameLaneReader, _Collector, list[str]]]:
    """A writer and a reader on a fresh lane, one good frame (seq 0) through; the refusals it warns."""
    topic, got = _topic(), _Collector()
    refusals: list[str] = []
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit', on_refused=refusals.append)
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        assert writer.write(_frame_packet(0))
        got.wait_for(1)
        yield writer, reader, got, refusals
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_a_sample_whose_header_lies_is_refused_and_never_read():
    with _lane_after_one_frame() as (writer, reader, got, refusals):
        # a hostile (or stale) sample on the same lane: its header claims more pixels than it carries
        _send_raw_sample(writer, 64, b'{}', height=480, width=640, pixel_len=480 * 640 * 3, pixel_off=64)
        assert writer.write(_frame_packet(1))
        got.wait_for(2)
        assert [p.meta['seq'] for p in got.packets] == [0, 1]
        assert reader.counters()['refused_total'] == 1
        assert 'shorter than its header says' in refusals[0]


_FIELDS = b'"packet_id":"p","ts":"2026-01-01T00:00:00Z","kind":"frame","source_id":"cam"'


@pytest.mark.parametrize(('meta_json', 'refusal'), [
    (b'[' * 50_000, 'nested too deeply'),  # the interpreter's stack, not a ValueError: killed the reader once
    (b'{' + _FIELDS + b',"meta":{"a":' + b'[' * 5_000 + b']' * 5_000 + b'}}', 'nested too deeply'),
    (b'{"\xff":1}', "'utf-8' codec"),
    (b'[1,2]', 'not an object'),
    (b'{"packet_id":1,"ts":"t","kind":"frame","source_id":"cam"}', 'packet_id is not a string'),
    (b'{' + _FIELDS + b',"meta":[1]}', 'meta is not an object'),
    (b'{' + _FIELDS + b'} trailing', 'Extra data'),
    (b' {' + _FIELDS + b',"meta":{"seq":-1}} ', ''),  # whitespace around: json's own rules accept it
])
def test_a_sample_whose_packet_json_is_hostile_is_refused_and_the_reader_goes_on(meta_json, refusal):
    with _lane_after_one_frame() as (writer, reader, got, refusals):
        # a sample whose header is right (and in sequence) and whose JSON is not what a writer writes
        pixel_off = pixel_offset(len(meta_json))
        _send_raw_sample(writer, pixel_off + 12, meta_json, height=2, width=2, pixel_len=12,
                         pixel_off=pixel_off, seq=1)
        writer._seq = 2
        assert writer.write(_frame_packet(2))
        got.wait_for(3 if not refusal else 2)
        assert [p.meta['seq'] for p in got.packets] == ([0, -1, 2] if not refusal else [0, 2])
        assert reader.counters()['refused_total'] == (1 if refusal else 0)
        assert reader.counters()['missed_total'] == (1 if refusal else 0)  # a refused seq is a gap as well
        if refusal:
            assert len(refusals) == 1 and refusal in refusals[0], refusals


def test_two_and_three_dimensional_frames_keep_their_shape():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        frames = [np.arange(12, dtype=np.uint16).reshape(3, 4), np.ones((3, 4, 1), np.uint8)]
        for i, frame in enumerate(frames):
            assert writer.write(StreamPacket.new('frame', 'cam', frame))
            got.wait_for(i + 1)
        for sent, packet in zip(frames, got.packets, strict=True):
            assert packet.payload.shape == sent.shape and packet.payload.dtype == sent.dtype
            assert np.array_equal(packet.payload, sent)
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_header_checks():
    header = FrameHeader(magic=MAGIC, version=VERSION, dtype=0, height=2, width=2, channels=3, meta_len=10,
                         pixel_len=12, pixel_off=64)
    assert check_header(header, 64 + 12) == ''
    assert 'shorter' in check_header(header, 64 + 11)
    header.pixel_off = 8  # pixels over the JSON
    assert 'overlaps the JSON' in check_header(header, 1000)
    header.pixel_off = 65
    assert 'not aligned' in check_header(header, 1000)
    header.pixel_off = 64
    header.pixel_len = 13
    assert 'does not match' in check_header(header, 1000)
    header.magic = 0
    assert 'not a frame-lane sample' in check_header(header, 1000)


def test_a_packet_the_lane_cannot_carry_is_refused_and_counted():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        with pytest.raises(TypeError, match='not JSON serializable'):  # meta is JSON by contract
            writer.write(StreamPacket.new('frame', 'cam', np.zeros((2, 2), np.uint8), {'x': {'y': object()}}))
        circular: list = []
        circular.append(circular)
        with pytest.raises(ValueError, match='circular'):
            writer.write(StreamPacket.new('frame', 'cam', np.zeros((2, 2), np.uint8), {'x': circular}))
        with pytest.raises(ValueError, match='2-D or 3-D'):
            writer.write(StreamPacket.new('frame', 'cam', np.zeros(4, np.uint8)))
        assert not writer.write(StreamPacket.new('frame', 'cam', 'not an array'))
        assert writer.counters()['refused_total'] == 4 and writer.counters()['written_total'] == 0
        # the encoder keeps nothing of the encodings that failed: the same meta, JSON this time, goes
        assert writer.write(StreamPacket.new('frame', 'cam', np.zeros((2, 2), np.uint8), {'x': {'y': 1}}))
        got.wait_for(1)
        assert got.packets[0].meta == {'x': {'y': 1}}
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_a_writer_without_readers_writes_nothing():
    writer = FrameLaneWriter(_topic(), LaneSettings(pool=4), domain='unit')
    try:
        assert not writer.write(_frame_packet(0))
        assert writer.counters()['no_reader_total'] == 1
    finally:
        writer.close()


# -- frames written in place: samples lent to the source (FrameLaneWriter.loan_frame) ---------------
def test_a_frame_written_into_a_lent_sample_is_sent_without_a_copy():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        for i in range(3):
            buf = writer.loan_frame((48, 64, 3), np.uint8)
            assert buf is not None and buf.flags.writeable and buf.flags.c_contiguous
            assert writer.is_lent(buf)
            buf[...] = np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3) % 251 + i
            expected = buf.copy()
            assert writer.write(StreamPacket.new('frame', 'cam', buf, {'seq': i}))
            assert not buf.flags.writeable  # sent: the source cannot write into it any more
            got.wait_for(i + 1)
            assert np.array_equal(got.packets[i].payload, expected)
            assert got.packets[i].meta['seq'] == i
        counters = writer.counters()
        assert counters['zero_copy_total'] == 3 and counters['written_total'] == 3
        assert counters['loans_open'] == 0
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_only_a_frame_that_starts_at_its_lent_sample_is_sent_in_place():
    """The array lent is found by identity; a view is judged by where it starts: one starting at the
    sample (a reshape) is still sent in place, one starting inside it (a crop) is copied."""
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        buf = writer.loan_frame((8, 8, 3), np.uint8)
        buf[...] = 7
        assert writer.write(StreamPacket.new('frame', 'cam', buf))
        assert writer.counters()['zero_copy_total'] == 1
        buf = writer.loan_frame((8, 8, 3), np.uint8)
        buf[...] = 8
        assert writer.write(StreamPacket.new('frame', 'cam', buf.reshape(8, 24)))  # same start: in place
        assert writer.counters()['zero_copy_total'] == 2
        buf = writer.loan_frame((8, 8, 3), np.uint8)
        buf[...] = np.arange(8, dtype=np.uint8)[:, None, None]
        assert writer.write(StreamPacket.new('frame', 'cam', buf[2:]))  # a crop: copied, the loan goes back
        del buf
        got.wait_for(3)
        assert writer.counters()['zero_copy_total'] == 2 and writer.counters()['written_total'] == 3
        assert np.array_equal(got.packets[0].payload, np.full((8, 8, 3), 7, np.uint8))
        assert np.array_equal(got.packets[1].payload, np.full((8, 24), 8, np.uint8))
        assert np.array_equal(got.packets[2].payload[:, 0, 0], np.arange(2, 8, dtype=np.uint8))
        assert writer.loan_frame((8, 8, 3), np.uint8) is not None  # the cropped loan came back
        assert writer.counters()['loans_returned_total'] == 1
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_a_lent_sample_never_sent_goes_back_to_the_pool():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        for _ in range(20):  # far more than the pool: every dropped loan must have come back
            buf = writer.loan_frame((48, 64), np.uint16)
            assert buf is not None
            buf[...] = 1
            del buf
        buf = writer.loan_frame((48, 64), np.uint16)
        assert buf is not None
        buf[...] = 9
        assert writer.write(StreamPacket.new('frame', 'cam', buf))
        got.wait_for(1)
        assert int(got.packets[0].payload[5, 5]) == 9 and got.packets[0].payload.dtype == np.uint16
        counters = writer.counters()
        assert counters['loaned_total'] == 21 and counters['loans_returned_total'] == 20
        assert counters['zero_copy_total'] == 1 and counters['loans_open'] == 0
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_lent_samples_are_bounded_and_plain_memory_is_used_beyond():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        held = [writer.loan_frame((8, 8, 3)) for _ in range(lane_mod.MAX_OPEN_LOANS)]
        assert all(b is not None for b in held)
        assert writer.loan_frame((8, 8, 3)) is None  # the source then gets plain memory (Plugin.frame_buffer)
        assert writer.counters()['loan_declined_total'] == 1
        # a frame in plain memory still goes out (copied), beside the lent samples
        assert writer.write(_frame_packet(0, (8, 8, 3)))
        held.pop()
        assert writer.loan_frame((8, 8, 3)) is not None
        assert writer.counters()['loans_returned_total'] >= 1
    finally:
        writer.close()
        reader.close()


def test_lending_needs_a_reader_and_a_frame_shape():
    topic = _topic()
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        assert writer.loan_frame((8, 8, 3)) is None  # nobody reads: no shared memory spent
        reader = FrameLaneReader(topic, _Collector(), LaneSettings(pool=4), domain='unit')
        try:
            assert writer.readers(refresh=True) == 1
            assert writer.loan_frame((8,)) is None and writer.loan_frame((8, 8), np.complex64) is None
            assert writer.loan_frame((8, 8)) is not None
        finally:
            reader.close()
    finally:
        writer.close()


def test_a_lent_frame_whose_json_does_not_fit_in_front_is_copied():
    topic, got = _topic(), _Collector()
    reader = FrameLaneReader(topic, got, LaneSettings(pool=4), domain='unit')
    writer = FrameLaneWriter(topic, LaneSettings(pool=4), domain='unit')
    try:
        buf = writer.loan_frame((16, 16, 3))
        buf[...] = 3
        big = {'note': 'x' * (LOAN_META_RESERVE + 10)}
        assert writer.write(StreamPacket.new('frame', 'cam', buf, big))
        got.wait_for(1)
        assert got.packets[0].meta['note'] == big['note']
        assert int(got.packets[0].payload.sum()) == 3 * 16 * 16 * 3
        assert writer.counters()['zero_copy_total'] == 0 and writer.counters()['written_total'] == 1
    finally:
        got.packets.clear()
        writer.close()
        reader.close()


def test_plugin_frame_buffer_is_plain_memory_outside_a_lane():
    from schnitzel_stream_ros.plugin import Plugin, SimpleContext
    from schnitzel_stream_ros.runtime.plugin_host import PluginError, PluginHost

    plugin = Plugin(SimpleContext())  # a context without frame_buffer (a unit test of a plugin)
    buf = plugin.frame_buffer((4, 5, 3))
    assert buf.shape == (4, 5, 3) and buf.dtype == np.uint8 and buf.flags.writeable and buf.flags.owndata
    host = PluginHost('n', Plugin, {}, is_source=True, is_sink=False)  # an ordinary route: plain memory
    buf = host.ctx.frame_buffer((2, 3), 'uint16', 'out')
    assert buf.shape == (2, 3) and buf.dtype == np.uint16 and buf.flags.owndata
    with pytest.raises(PluginError, match="unknown output port 'nope'"):
        host.ctx.frame_buffer((2, 3), 'uint8', 'nope')


def test_the_check_sink_can_write_running_counts_instead_of_a_line_per_frame(tmp_path):
    """The flood benchmark counts frames from these lines (bench/shm_frames_bench.py)."""
    import json

    from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
    from schnitzel_stream_ros.testing.frame_lane_plugins import FrameCheckSink

    path = tmp_path / 'checks.jsonl'
    params = resolve_params(FrameCheckSink, {'path': str(path), 'check': False, 'summary_every_sec': 1e-9})
    sink = FrameCheckSink(SimpleContext(params=params))
    sink.setup()
    view = np.frombuffer(bytearray(12), np.uint8).reshape(2, 2, 3)  # a shared view: owns no memory
    for seq in range(5):
        sink.process(StreamPacket.new('frame', 'cam', view if seq % 2 else np.zeros((2, 2, 3), np.uint8),
                                      {'seq': seq * 10}))
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(n['frames'], n['shared'], n['seq']) for n in lines] == [
        (1, 0, 0), (2, 1, 10), (3, 1, 20), (4, 2, 30), (5, 2, 40)]
    assert lines == sorted(lines, key=lambda n: n['recv_ns'])
