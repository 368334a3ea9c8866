"""WindowAggregateNode: known answers for tumbling, sliding and session windows, the watermark,
allowed lateness and late packets; the same numbers in the deterministic engine; window totals
after a crash and a restore from the checkpoint file equal those of an uninterrupted run."""

from __future__ import annotations

import json
import textwrap

from schnitzel_stream_ros.graph.state_config import StateSpec
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.nodes.windows.window_aggregate import WindowAggregateNode
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine
from schnitzel_stream_ros.runtime.plugin_host import PluginHost


def _at(sec: float, **payload) -> StreamPacket:
    whole, frac = divmod(sec, 1)
    ts = f'2026-01-01T00:{int(whole) // 60:02d}:{int(whole) % 60:02d}'
    ts += f'.{round(frac * 1e6):06d}Z' if frac else 'Z'
    return StreamPacket.new('sensor', 's', payload, ts=ts)


def _node(**params) -> tuple[WindowAggregateNode, SimpleContext]:
    ctx = SimpleContext(node_id='win', params=resolve_params(WindowAggregateNode, params))
    node = WindowAggregateNode(ctx)
    node.setup()
    return node, ctx


def _feed(node: WindowAggregateNode, packets) -> list[dict]:
    out = []
    for p in packets:
        out += [r.payload for r in node.process(p) or []]
    return out


def test_tumbling_counts_per_key_fire_when_the_watermark_passes_the_end():
    node, ctx = _node(size_sec=10.0, key_field='zone', distinct_field='track', value_field='v',
                      aggregates=['count', 'distinct_count', 'sum', 'min', 'max', 'mean', 'p50', 'p95'])
    packets = [_at(t, zone=z, track=k, v=v) for t, z, k, v in [
        (1, 'a', 1, 1.0), (2, 'a', 2, 2.0), (3, 'b', 1, 10.0), (9.5, 'a', 1, 3.0), (10, 'a', 3, 4.0),
        (12, 'b', 2, 5.0), (21, 'a', 1, 0.0)]]
    out = _feed(node, packets)
    assert [(r['key'], r['start'], r['end']) for r in out] == [
        ('a', '2026-01-01T00:00:00Z', '2026-01-01T00:00:10Z'),
        ('b', '2026-01-01T00:00:00Z', '2026-01-01T00:00:10Z'),
        ('a', '2026-01-01T00:00:10Z', '2026-01-01T00:00:20Z'),
        ('b', '2026-01-01T00:00:10Z', '2026-01-01T00:00:20Z'),
    ]
    a0 = out[0]
    got = (a0['count'], a0['distinct_count'], a0['sum'], a0['min'], a0['max'], a0['mean'])
    assert got == (3, 2, 6.0, 1.0, 3.0, 2.0)
    assert (a0['p50'], a0['p95'], a0['revision']) == (2.0, 3.0, 1)  # nearest rank of [1, 2, 3]
    assert out[1]['count'] == 1 and out[1]['p50'] == 10.0
    assert ctx.counters['accepted_total'] == 7 and 'late_total' not in ctx.counters


def test_sliding_windows_hold_each_packet_size_over_slide_times():
    node, _ = _node(window='sliding', size_sec=10.0, slide_sec=5.0)
    out = _feed(node, [_at(t) for t in (1, 6, 7, 12, 30)])
    counts = {(r['start'][-3:-1], r['end'][-3:-1]): r['count'] for r in out}
    # windows [-5,5) [0,10) [5,15) [10,20) [15,25) [20,30): empty ones never fire
    assert counts == {('55', '05'): 1, ('00', '10'): 3, ('05', '15'): 3, ('10', '20'): 1}
    # every packet is in exactly two windows; those of 30 s have not fired yet


def test_session_windows_merge_packets_closer_than_the_gap():
    node, _ = _node(window='session', gap_sec=5.0, key_field='k')
    out = _feed(node, [_at(0, k='x'), _at(3, k='x'), _at(4, k='y'), _at(7, k='x'), _at(20, k='x'),
                       _at(40, k='z')])
    got = [(r['key'], r['start'][-3:-1], r['end'][-3:-1], r['count']) for r in out]
    assert got == [('y', '04', '09', 1), ('x', '00', '12', 3), ('x', '20', '25', 1)]


def test_late_packets_within_the_lateness_update_the_window_beyond_it_go_to_the_late_port():
    node, ctx = _node(size_sec=10.0, allowed_lateness_sec=5.0, watermark_delay_sec=2.0)
    out = _feed(node, [_at(1), _at(5), _at(12)])  # watermark 10: [0,10) fires with 2
    assert [(r['count'], r['revision']) for r in out] == [(2, 1)]
    out = _feed(node, [_at(8)])  # late but within 5 s of lateness: revision 2 with 3
    assert [(r['count'], r['revision']) for r in out] == [(3, 2)]
    out = _feed(node, [_at(17), _at(9)])  # watermark 15 = end + lateness: [0,10) is closed
    assert out == [] and ctx.counters['late_total'] == 1
    assert [p.ts for p in ctx.outputs['late']] == ['2026-01-01T00:00:09Z']


GRAPH = """
    version: 2
    nodes:
      - {id: src, plugin: StaticSource, config: {packets: PACKETS}}
      - {id: win, plugin: WindowAggregateNode,
         config: {size_sec: 10.0, key_field: zone, value_field: v, aggregates: [count, sum, p95]}}
      - {id: out, kind: sink, plugin: JsonlSink, config: {path: OUT, body: payload}}
    edges:
      - {from: src, to: win}
      - {from: win, to: out}
"""


def _stream(n: int) -> list[StreamPacket]:
    return [_at(i * 0.7, zone='ab'[i % 2], v=float(i % 7)) for i in range(n)]


def _totals(results) -> dict:
    final = {}
    for r in results:
        final[(r['key'], r['start'])] = (r['count'], r['sum'], r['p95'])
    return final


def test_a_restore_from_the_checkpoint_after_a_crash_gives_the_totals_of_an_uninterrupted_run(tmp_path):
    packets = _stream(200)
    node, _ = _node(size_sec=10.0, key_field='zone', value_field='v', aggregates=['count', 'sum', 'p95'])
    expected = _totals(_feed(node, packets))
    params = resolve_params(WindowAggregateNode, {'size_sec': 10.0, 'key_field': 'zone', 'value_field': 'v',
                                                  'aggregates': ['count', 'sum', 'p95'], 'write_ahead': True})
    spec = StateSpec(str(tmp_path / 'state.db'), checkpoint_sec=3600)
    results: list[dict] = []

    def host() -> PluginHost:
        h = PluginHost('win', WindowAggregateNode, params, is_source=False, is_sink=False, state=spec,
                       state_node='/win')
        h.connect('out', lambda p: results.append(p.payload))
        h.setup()
        return h

    first = host()
    for p in packets[:93]:
        first.handle(p, 'in')
    first.closed = True  # kill -9: no close(), no final checkpoint
    second = host()
    assert second.metrics.counters['state_restored'] == 93
    for p in packets[93:]:
        second.handle(p, 'in')
    assert _totals(results) == expected and len(expected) == 26  # [130, 140) has not fired


def test_the_deterministic_engine_gives_the_same_exact_numbers_on_every_run(tmp_path):
    records = [{'ts': p.ts, 'kind': 'sensor', 'source_id': 's', 'payload': p.payload} for p in _stream(50)]
    outs = []
    for run in range(2):
        out = tmp_path / f'out{run}.jsonl'
        text = textwrap.dedent(GRAPH).replace('PACKETS', json.dumps(records)).replace('OUT', str(out))
        (tmp_path / 'graph.yaml').write_text(text)
        graph = compile_graph(tmp_path / 'graph.yaml')
        outcome = DeterministicEngine(graph).run()
        assert not outcome.errors, outcome.errors
        outs.append(out.read_text())
    assert outs[0] == outs[1] and '"p95"' in outs[0]
