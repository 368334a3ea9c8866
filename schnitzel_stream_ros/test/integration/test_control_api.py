"""The control plane's HTTP API over real HTTP against a running graph (control_site.py).

Every read endpoint with live data; each action with its effect checked from outside (parameters
through the node's parameter service as `ros2 param get` reads them, graph edits by the graph the
API and the containers then show, dead letters in the queue file); the token refused when missing
or wrong on every mutating route the OpenAPI schema lists; audit lines; an invalid graph refused
with the validator's lines and nothing changed; concurrent actions serialised; body size limits
(declared and chunked); no directory traversal out of the static files; the token in no log, page
or audit line. One site serves the whole module (starting it is the expensive part).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time

import pytest
from control_site import DEAD_LETTERS, TOKEN, ControlSite, graph_text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    running = ControlSite(tmp_path_factory.mktemp('control'))
    try:
        yield running
    finally:
        log = running.close()
        assert TOKEN not in log, 'the token must never be logged'


def test_read_endpoints_show_the_running_site(site):
    status, graph = site.call('GET', '/api/graph', token=None)
    assert status == 200
    assert [n['id'] for n in graph['nodes']] == ['src', 'dedup', 'tap', 'evsrc', 'backend']
    assert {e['label'] for e in graph['edges']} == {
        'src.out->dedup.in',
        'dedup.out->tap.in',
        'evsrc.out->backend.in',
    }
    assert {c['name']: c['nodes'] for c in graph['containers']} == {
        'front': ['src', 'dedup', 'tap'],
        'back': ['evsrc', 'backend'],
    }
    assert graph['nodes'][0]['dynamic_params'] == ['rate_hz']

    metrics = site.wait_for(
        lambda: (
            (m := site.call('GET', '/api/metrics')[1])['edges'].get('src.out->dedup.in', {}).get('rate') and m
        ),
        30,
        'a rate on the edge src -> dedup',
    )
    assert metrics['nodes']['src']['rate'] > 0 and metrics['nodes']['src']['container'] == 'front'
    assert metrics['edges']['src.out->dedup.in']['packets'] > 0

    health = site.wait_for(
        lambda: (
            (h := site.call('GET', '/api/health')[1])['nodes'].keys()
            >= {'src', 'dedup', 'tap', 'evsrc', 'backend'}
            and h
        ),
        30,
        'a level for every node',
    )
    assert set(health['containers']) == {'front', 'back'}
    assert all(s['level'] in (0, 1, 2, 3) for s in health['statuses'])

    queues = site.wait_for(
        lambda: [
            q for q in site.call('GET', '/api/queues')[1]['queues'] if q.get('dead_letters') == DEAD_LETTERS
        ],
        60,
        f'{DEAD_LETTERS} dead letters in the queue',
    )
    (queue,) = queues
    assert (
        queue['node'] == 'backend'
        and queue['depth'] == 0
        and queue['breaker'] in ('closed', 'open', 'half-open')
    )
    assert queue['oldest_age_sec'] == 0.0
    status, dead = site.call('GET', '/api/queues/backend/dead-letters?limit=5')
    assert status == 200 and dead['total'] == DEAD_LETTERS and len(dead['dead_letters']) == 5
    assert dead['dead_letters'][0]['http_status'] == 400
    assert site.backend.refused >= DEAD_LETTERS

    status, schema = site.call('GET', '/api/openapi.json')
    assert status == 200 and '/api/graph/apply' in schema['paths']


def test_events_and_decisions_published_on_the_domain_appear(site):
    from std_msgs.msg import String

    from schnitzel_stream_msgs.msg import Event
    from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_msg

    events = site.peer.node.create_publisher(Event, '/cpt/robot/events', 10)
    decisions = site.peer.node.create_publisher(String, '/cpt/controller/decisions', 10)
    other = site.peer.node.create_publisher(String, '/cpt/controller/chatter', 10)
    before = site.call('GET', '/api/events')[1]['total']

    def published() -> bool:
        event = build_event(
            site_id='S1',
            camera_id='cam9',
            ts='2026-01-01T00:00:00Z',
            object_type='PERSON',
            bbox={'x1': 1, 'y1': 2, 'x2': 3, 'y2': 4},
            confidence=0.9,
            track_id=1,
        )
        events.publish(event_to_msg(event))
        decisions.publish(String(data=json.dumps({'knob': 'det.every_n', 'value': 2, 'reason': 'cpu'})))
        decisions.publish(String(data='not json {'))
        decisions.publish(String(data='[' + '1,' * 40000 + '1]'))  # larger than a decision may be
        other.publish(String(data=json.dumps({'knob': 'x'})))
        got = site.call('GET', '/api/events')[1]
        made = site.call('GET', '/api/decisions')[1]
        return got['total'] > before and made['total'] > 0

    site.wait_for(published, 30, 'an event and a decision through the control plane')
    got = site.call('GET', '/api/events?limit=1')[1]['events'][-1]
    assert got['topic'] == '/cpt/robot/events' and got['event']['camera_id'] == 'cam9'
    made = site.call('GET', '/api/decisions')[1]['decisions']
    assert {d['topic'] for d in made} == {'/cpt/controller/decisions'}  # not chatter: not a decision topic
    assert all(d['decision'] == {'knob': 'det.every_n', 'value': 2, 'reason': 'cpu'} for d in made)
    assert site.call('GET', '/api/events?limit=0')[0] == 422


def _mutating_routes(site) -> list[tuple[str, str]]:
    schema = site.call('GET', '/api/openapi.json')[1]
    routes = [
        (method.upper(), path)
        for path, ops in schema['paths'].items()
        for method in ops
        if method in ('post', 'put', 'patch', 'delete') and path != '/api/graph/validate'
    ]
    return [(m, p.replace('{node_id}', 'backend').replace('{name}', 'rate_hz')) for m, p in routes]


def test_every_mutating_route_refuses_without_the_token_and_is_audited(site):
    routes = _mutating_routes(site)
    assert len(routes) == 5  # set param, apply, redrive, purge, snapshot
    before = len(site.audit_lines())
    for method, path in routes:
        for token in (None, 'wrong-token-0123456789', TOKEN + 'x'):
            status, body = site.call(method, path, {'value': 1, 'seqs': None, 'graph_text': 'x'}, token=token)
            assert status == 401, (method, path, token, body)
            assert '\n' not in body['detail']
    refused = site.audit_lines()[before:]
    assert len(refused) == 3 * len(routes)
    assert all(line['status'] == 401 and not line['authenticated'] for line in refused)
    assert {(line['method'], line['path']) for line in refused} == set(routes)
    assert site.call('GET', '/api/queues/backend/dead-letters')[1]['total'] == DEAD_LETTERS  # nothing changed


def test_set_a_dynamic_parameter_through_the_node(site):
    status, body = site.call('PUT', '/api/nodes/src/params/rate_hz', {'value': 7.5})
    assert status == 200 and body['value'] == 7.5
    assert site.param('/cpt/src', 'rate_hz') == 7.5
    status, listed = site.call('GET', '/api/nodes/src/params')
    assert status == 200 and listed['params'][0]['value'] == 7.5

    refusals = [
        ('/api/nodes/src/params/rate_hz', {'value': 'fast'}, 400, "parameter 'rate_hz': expected a double"),
        ('/api/nodes/src/params/rate_hz', {'value': -1.0}, 400, 'rate_hz'),
        ('/api/nodes/src/params/count', {'value': 5}, 400, 'count'),  # not dynamic: read-only
        ('/api/nodes/nope/params/rate_hz', {'value': 1.0}, 404, "no node 'nope'"),
        ('/api/nodes/src/params/rate_hz', {}, 422, 'body.value'),
    ]
    for path, body, code, words in refusals:
        status, answer = site.call('PUT', path, body)
        assert status == code, (path, body, answer)
        assert words in answer['detail'] and '\n' not in answer['detail'], answer
    assert site.param('/cpt/src', 'rate_hz') == 7.5  # nothing refused changed anything
    lines = [line for line in site.audit_lines() if line['path'] == '/api/nodes/src/params/rate_hz']
    ok = [line for line in lines if line['status'] == 200]
    assert ok and ok[-1]['what'] == 'set src.rate_hz = 7.5' and ok[-1]['result'] == 'src.rate_hz is now 7.5'
    assert ok[-1]['authenticated'] and ok[-1]['who'].startswith('127.0.0.1:')
    refused = [line for line in lines if line['status'] == 400]
    assert refused and refused[0]['result'].startswith('refused: ')


def test_invalid_graph_is_refused_with_validator_lines_and_changes_nothing(site):
    before = site.call('GET', '/api/graph')[1]
    text = graph_text(site.tmp, site.backend.url).replace('DedupPolicyNode', 'NoSuchPlugin')
    text = text.replace('count: 0', 'count: -5')
    status, checked = site.call(
        'POST', '/api/graph/validate', {'graph_text': text, 'label': 'bad.yaml'}, token=None
    )
    assert status == 200 and checked['valid'] is False
    assert len(checked['lines']) >= 2 and all(line.startswith('bad.yaml:') for line in checked['lines'])
    assert any('NoSuchPlugin' in line for line in checked['lines'])
    status, refused = site.call('POST', '/api/graph/apply', {'graph_text': text, 'label': 'bad.yaml'})
    assert status == 422 and refused['detail'] == 'refused: the new graph is invalid'
    assert refused['lines'] == checked['lines']
    status, _ = site.call('POST', '/api/graph/apply', {'graph_text': 'version: [', 'label': 'broken.yaml'})
    assert status == 422
    assert site.call('GET', '/api/graph')[1] == before
    assert site.param('/cpt/dedup', 'cooldown_sec') == 10.0
    audit = [line for line in site.audit_lines() if line['path'] == '/api/graph/apply']
    assert audit[-1]['status'] == 422 and audit[-1]['result'] == 'refused: the new graph is invalid'


def test_apply_shows_the_diff_then_changes_the_running_graph(site):
    text = graph_text(site.tmp, site.backend.url).replace(
        '{id: dedup, plugin: DedupPolicyNode, container: front}',
        '{id: dedup, plugin: DedupPolicyNode, container: front, config: {cooldown_sec: 3.0}}',
    )
    text = text.replace(
        '  - {from: dedup, to: tap}\n', '  - {from: dedup, to: tap}\n  - {from: src, to: tap2}\n'
    )
    text = text.replace(
        '\nedges:',
        '\n  - {id: tap2, kind: sink, plugin: JsonlSink, container: front,\n'
        f'     config: {{path: {site.tmp}/tap2.jsonl, body: payload}}}}\nedges:',
    )
    status, checked = site.call(
        'POST', '/api/graph/validate', {'graph_text': text, 'label': 'v2.yaml'}, token=None
    )
    assert status == 200 and checked['valid'] and checked['applicable'], checked
    assert any('add node tap2' in line for line in checked['diff']), checked
    assert 'set dedup: cooldown_sec=3.0' in checked['diff'], checked
    assert 'tap2' not in [n['id'] for n in site.call('GET', '/api/graph')[1]['nodes']]  # a dry run
    status, applied = site.call('POST', '/api/graph/apply', {'graph_text': text, 'label': 'v2.yaml'})
    assert status == 200 and applied['applied'], applied
    assert 'tap2' in [n['id'] for n in site.call('GET', '/api/graph')[1]['nodes']]
    assert site.param('/cpt/dedup', 'cooldown_sec') == 3.0
    site.wait_for(
        lambda: (site.tmp / 'tap2.jsonl').exists() and (site.tmp / 'tap2.jsonl').stat().st_size > 0,
        30,
        'packets in the added node',
    )
    audit = [
        line for line in site.audit_lines() if line['path'] == '/api/graph/apply' and line['status'] == 200
    ]
    assert audit and 'tap2' in audit[-1]['result']


def test_dead_letters_redrive_and_purge(site):
    site.wait_for(
        lambda: site.call('GET', '/api/queues/backend/dead-letters')[1]['total'] == DEAD_LETTERS,
        60,
        'all dead letters',
    )
    rows = site.call('GET', '/api/queues/backend/dead-letters?limit=3')[1]['dead_letters']
    first, second = rows[0]['seq'], rows[1]['seq']
    refused_before = site.backend.refused
    status, moved = site.call('POST', '/api/queues/backend/dead-letters/redrive', {'seqs': [first]})
    assert status == 200 and moved['moved'] == 1 and moved['dead_letters_left'] == DEAD_LETTERS - 1
    # delivered again (the backend refuses it again: a dead letter once more)
    site.wait_for(lambda: site.backend.refused > refused_before, 30, 'the re-driven event at the backend')
    site.wait_for(
        lambda: site.call('GET', '/api/queues/backend/dead-letters')[1]['total'] == DEAD_LETTERS,
        30,
        'the re-driven event dead again',
    )
    status, purged = site.call('POST', '/api/queues/backend/dead-letters/purge', {'seqs': [second]})
    assert status == 200 and purged == {'purged': 1, 'dead_letters_left': DEAD_LETTERS - 1}
    assert site.call('POST', '/api/queues/nope/dead-letters/purge', {'seqs': None})[0] == 404
    assert site.call('POST', '/api/queues/backend/dead-letters/purge', {'seqs': 'all'})[0] == 422
    status, purged = site.call('POST', '/api/queues/backend/dead-letters/purge', {'seqs': None})
    assert status == 200 and purged == {'purged': DEAD_LETTERS - 1, 'dead_letters_left': 0}
    queue = site.call('GET', '/api/queues')[1]['queues'][0]
    site.wait_for(
        lambda: site.call('GET', '/api/queues')[1]['queues'][0]['dead_letters'] == 0,
        5,
        'the queue summary to follow',
    )
    assert queue['node'] == 'backend'
    audit = [
        line for line in site.audit_lines() if '/dead-letters/' in line['path'] and line['status'] == 200
    ]
    assert [line['what'] for line in audit[-3:]] == [
        'redrive 1 seqs of backend',
        'purge 1 seqs of backend',
        'purge all of backend',
    ]


def test_concurrent_actions_are_serialised(site):
    before = len(site.audit_lines())
    answers: list[int] = []

    def act(i: int) -> None:
        if i % 2:
            answers.append(site.call('POST', '/api/report/snapshot')[0])
        else:
            answers.append(site.call('PUT', '/api/nodes/src/params/rate_hz', {'value': 10.0 + i})[0])

    threads = [threading.Thread(target=act, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [200] * 8
    lines = sorted(site.audit_lines()[before:], key=lambda line: line['when'])
    assert len(lines) == 8
    for earlier, later in itertools.pairwise(lines):
        assert earlier['finished'] <= later['when'], (
            earlier,
            later,
        )  # one after the other, never overlapping


def test_snapshot_of_the_run_report(site):
    status, answer = site.call('POST', '/api/report/snapshot')
    assert status == 200
    report = answer['report']
    assert report['stop_reason'] == 'running (snapshot)' and report['status'] in ('ok', 'degraded')
    assert report['metrics']['packets.source_emitted_total'] > 0
    written = json.loads((site.tmp / 'report.live.json').read_text())
    assert written['ts'] == report['ts'] and answer['path'] == str(site.tmp / 'report.live.json')


def test_request_size_limits_and_malformed_bodies(site):
    huge = json.dumps({'graph_text': 'x' * (3 << 20)}).encode()
    status, body = site.call('POST', '/api/graph/validate', raw=huge, token=None)
    assert status == 413 and 'larger than' in body['detail']
    # the same without a Content-Length (chunked): refused once it grows past the limit
    conn = http.client.HTTPConnection('127.0.0.1', site.port, timeout=30)
    try:
        conn.request(
            'POST',
            '/api/graph/validate',
            body=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]),
            headers={'content-type': 'application/json'},
            encode_chunked=True,
        )
        assert conn.getresponse().status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close the connection while the client still sends: refused all the same
    finally:
        conn.close()
    status, body = site.call('PUT', '/api/nodes/src/params/rate_hz', raw=b'{"value": ', headers={})
    assert status == 422 and '\n' not in body['detail']
    status, body = site.call('POST', '/api/graph/validate', {'graph_text': 'x' * ((1 << 20) + 1)}, token=None)
    assert status == 422 and 'graph_text' in body['detail']
    status, _ = site.call('GET', '/api/graph')  # still serving
    assert status == 200


def test_no_traversal_out_of_the_static_files_and_no_token_in_pages(site):
    for path in (
        '/static/../plane.py',
        '/static/%2e%2e/plane.py',
        '/static/..%2fplane.py',
        '/static/%2e%2e%2f%2e%2e%2fconfig.py',
        '/static//etc/passwd',
        '/static/../../../../etc/passwd',
    ):
        status, body = site.call('GET', path, token=None)
        assert status == 404, (path, status)
        assert 'import' not in str(body) and 'root:' not in str(body)
    for path in (
        '/',
        '/static/page.js',
        '/static/page.css',
        '/api/graph',
        '/api/health',
        '/api/openapi.json',
    ):
        status, body = site.call('GET', path, token=None)
        assert status == 200 and TOKEN not in str(body), path
    assert TOKEN not in (site.control_dir / 'audit.jsonl').read_text()
    assert not (site.control_dir / 'token').exists()  # taken from the environment: no file written


def test_server_push_sends_updates_at_most_twice_a_second(site):
    conn = http.client.HTTPConnection('127.0.0.1', site.port, timeout=30)
    try:
        conn.request('GET', '/api/stream')
        response = conn.getresponse()
        assert response.status == 200 and response.getheader('content-type').startswith('text/event-stream')
        stamps, updates = [], []
        while len(updates) < 6:
            line = response.fp.readline().decode()
            if line.startswith('data: '):
                stamps.append(time.monotonic())
                updates.append(json.loads(line[6:]))
        assert {'metrics', 'health', 'events', 'decisions', 'queues'} <= updates[-1].keys()
        span = stamps[-1] - stamps[0]
        assert span >= 5 * 0.5 * 0.9, f'{len(stamps)} updates in {span:.2f} s: more than 2 a second'
        assert updates[-1]['metrics']['nodes']['src']['rate'] > 0
    finally:
        conn.close()


def test_at_most_eight_pages_watch_at_once(site):
    from schnitzel_stream_ros.control.app import MAX_STREAMS

    open_streams = []
    try:
        for _ in range(MAX_STREAMS):
            conn = http.client.HTTPConnection('127.0.0.1', site.port, timeout=30)
            conn.request('GET', '/api/stream')
            response = conn.getresponse()
            assert response.status == 200
            response.fp.readline()  # the stream has begun (counted)
            open_streams.append(conn)
        status, body = site.call('GET', '/api/stream', token=None)
        assert status == 503 and 'watching already' in body['detail']
    finally:
        for conn in open_streams:
            conn.close()
    site.wait_for(lambda: _stream_opens(site), 15, 'a stream slot once the pages left')


def _stream_opens(site) -> bool:
    conn = http.client.HTTPConnection('127.0.0.1', site.port, timeout=30)
    try:
        conn.request('GET', '/api/stream')
        return conn.getresponse().status == 200
    finally:
        conn.close()
