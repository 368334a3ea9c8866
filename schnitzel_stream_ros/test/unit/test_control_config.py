"""Control plane configuration and read model without a network: binding rules, the token, rates, health."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from schnitzel_stream_ros.control.config import TOKEN_ENV, ControlConfigError, build_config, parse_bind
from schnitzel_stream_ros.control.site_view import MAX_EVENTS, SiteView
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.validate import validate

GRAPH = """
version: 2
namespace: /u
nodes:
  - {id: src, plugin: SyntheticSource, container: a}
  - {id: sink, kind: sink, plugin: JsonlSink, container: b, config: {path: /tmp/never-written.jsonl}}
edges:
  - {from: src, to: sink}
"""


@pytest.fixture
def graph():
    loaded = load_graph_text(GRAPH, 'g.yaml')
    return validate(loaded.graph).graph


@pytest.mark.parametrize(
    ('text', 'words'),
    [
        ('8765', 'expected HOST:PORT'),
        ('example.org:80', 'HOST must be an IP address or localhost'),
        ('127.0.0.1:http', 'PORT must be a number'),
        ('127.0.0.1:70000', 'PORT must be 0..65535'),
    ],
)
def test_bad_bind_addresses_are_one_line_errors(text, words):
    with pytest.raises(ControlConfigError, match=words):
        parse_bind(text)


def test_bind_forms():
    assert parse_bind('127.0.0.1:0') == ('127.0.0.1', 0)
    assert parse_bind('[::1]:8765') == ('::1', 8765)
    assert parse_bind('localhost:1') == ('localhost', 1)


def test_a_non_loopback_address_needs_tls(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    for bind in ('0.0.0.0:8765', '192.0.2.10:8765', '[::]:8765'):
        with pytest.raises(ControlConfigError, match='non-loopback address needs TLS'):
            build_config(bind, control_dir=tmp_path)
    assert not (tmp_path / 'token').exists()  # refused before anything was written
    cert, key = tmp_path / 'c.pem', tmp_path / 'k.pem'
    cert.write_text('x')
    key.write_text('x')
    config = build_config('0.0.0.0:8765', control_dir=tmp_path, tls_cert=str(cert), tls_key=str(key))
    assert config.scheme == 'https'
    with pytest.raises(ControlConfigError, match='go together'):
        build_config('0.0.0.0:8765', control_dir=tmp_path, tls_cert=str(cert))
    with pytest.raises(ControlConfigError, match='no such file'):
        build_config('127.0.0.1:1', control_dir=tmp_path, tls_cert='/nonexistent.pem', tls_key=str(key))


def test_the_token_file_is_created_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    first = build_config('127.0.0.1:0', control_dir=tmp_path / 'c')
    token_file = tmp_path / 'c' / 'token'
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(first.token) >= 32 and first.token_source == str(token_file)
    assert build_config('127.0.0.1:0', control_dir=tmp_path / 'c').token == first.token
    assert first.token not in repr(first)
    monkeypatch.setenv(TOKEN_ENV, 'from-the-environment-123')
    assert build_config('127.0.0.1:0', control_dir=tmp_path / 'c').token == 'from-the-environment-123'
    monkeypatch.setenv(TOKEN_ENV, 'short')
    with pytest.raises(ControlConfigError, match=f'{TOKEN_ENV}: the control token must be'):
        build_config('127.0.0.1:0', control_dir=tmp_path / 'c')
    monkeypatch.delenv(TOKEN_ENV)
    bad = tmp_path / 'bad'
    bad.write_text('has spaces in it, which no header carries')
    with pytest.raises(ControlConfigError, match=str(bad)):
        build_config('127.0.0.1:0', control_dir=tmp_path, token_file=bad)


def _snap(container: str, produced: int, consumed: int, edge_packets: int, dropped: int) -> dict:
    return {
        'container': container,
        'nodes': {
            'src': {
                'produced': produced,
                'consumed': 0,
                'inbox_dropped_total': 0,
                'errors_total': 0,
                'counters': {},
            },
            'sink': {
                'produced': 0,
                'consumed': consumed,
                'inbox_dropped_total': dropped,
                'errors_total': 0,
                'counters': {'breaker_state_code': 1},
            },
        },
        'edges': [
            {
                'topic': '/u/src/out',
                'dst': 'sink',
                'dst_port': 'in',
                'packets': edge_packets,
                'dropped_total': dropped,
                'inbox_depth': 3,
                'inbox_depth_max': 9,
                'latency_counts': [edge_packets],
                'latency_max_ns': 1000,
            }
        ],
        'transport': {},
        'topics': {},
        'state': {},
    }


def test_rates_and_drops_per_node_and_edge_come_from_counter_differences(graph, monkeypatch):
    import schnitzel_stream_ros.control.site_view as site_view

    clock = iter([100.0, 100.0, 102.0, 102.1])
    monkeypatch.setattr(site_view.time, 'monotonic', lambda: next(clock))
    view = SiteView(lambda: graph)
    view.observe([_snap('a', 10, 10, 10, 0)])
    view.observe([_snap('a', 30, 28, 30, 4)])  # 2 s later: 20 more packets, 4 drops
    metrics = view.metrics()
    assert metrics['nodes']['src']['rate'] == 10.0 and metrics['nodes']['sink']['consumed_rate'] == 9.0
    assert metrics['nodes']['sink']['breaker'] == 'open'
    edge = metrics['edges']['src.out->sink.in']
    assert (edge['rate'], edge['dropped_total'], edge['drop_rate'], edge['inbox_depth']) == (10.0, 4, 2.0, 3)
    version = view.version
    view.observe([_snap('a', 31, 31, 31, 4)])  # 0.1 s later: kept, rates not recomputed yet
    assert view.version == version and view.snapshots()[0]['nodes']['src']['produced'] == 31


def test_health_maps_diagnostics_names_to_nodes_and_containers_and_ages_to_stale(graph, monkeypatch):
    import schnitzel_stream_ros.control.site_view as site_view

    now = [50.0]
    monkeypatch.setattr(site_view.time, 'monotonic', lambda: now[0])
    view = SiteView(lambda: graph)
    view.add_statuses(
        [
            ('/u/a: src', 1, 'stalled', '/u/src', [('k', 'v')]),
            ('/u/a', 0, 'running', '/u/a', []),
            ('/u/b: sink', 2, 'raised', '/u/sink', []),
            ('someone else', 2, 'x', '', []),
        ]
    )
    health = view.health()
    assert health['nodes'] == {'src': 1, 'sink': 2} and health['containers'] == {'a': 0}
    assert health['worst'] == 2 and health['worst_name'] == 'ERROR'
    now[0] += 10.0  # nobody published for 10 s
    assert view.health()['nodes'] == {'src': 3, 'sink': 3}


def test_events_and_decisions_are_bounded_and_paged(graph):
    view = SiteView(lambda: graph)
    for i in range(MAX_EVENTS + 50):
        view.add_event('/u/events', {'n': i})
    view.add_decision('/u/c/decisions', {'knob': 'x'})
    events = view.events(0, 500)
    assert events['total'] == MAX_EVENTS + 50 and events['kept'] == MAX_EVENTS == len(events['events'])
    assert events['events'][0]['event'] == {'n': 50}
    last = events['events'][-1]['seq']
    assert view.events(last)['events'] == []
    assert view.decisions(last)['decisions'][0]['decision'] == {'knob': 'x'}


def test_the_page_is_packaged_with_no_outside_assets():
    static = Path(__file__).resolve().parents[2] / 'schnitzel_stream_ros' / 'control' / 'static'
    names = sorted(p.name for p in static.iterdir())
    assert names == ['index.html', 'page.css', 'page.js']
    for path in static.iterdir():
        text = path.read_text()
        assert 'http://' not in text.replace('http://www.w3.org/2000/svg', '') and 'https://' not in text, (
            path
        )
        assert 'innerHTML' not in text, path


def test_statuses_and_events_from_the_domain_are_bounded(graph):
    from schnitzel_stream_ros.control.site_view import MAX_TEXT, MAX_VALUES

    view = SiteView(lambda: graph)
    values = [(f'k{i}', 'v' * 10_000) for i in range(500)]
    view.add_statuses([('/u/a: src' + 'x' * 10_000, 7, 'm' * 100_000, 'h' * 10_000, values)])
    (status,) = view.health()['statuses']
    assert len(status['name']) == MAX_TEXT and len(status['message']) == MAX_TEXT
    assert len(status['values']) == MAX_VALUES and all(len(v) == MAX_TEXT for v in status['values'].values())
    assert status['level'] == 2  # an unknown level counts as an error, never as OK
    view.add_event('/u/events', {'big': 'x' * 100_000})
    view.add_event('/u/events', {'small': 1})
    events = view.events()
    assert [e['event'] for e in events['events']] == [{'small': 1}] and events['dropped_too_large'] == 1
