"""The control plane over HTTPS (what a non-loopback bind requires), on loopback with a throwaway certificate.

The server is the real one (uvicorn with the certificate) in this process; the plane has no ROS node
(`ros=False`: no DDS is needed to check TLS, the token and the audit line). Clients verify the
certificate; a plain-HTTP client gets no answer; a mutating call without the token is refused and
audited like over HTTP.
"""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from schnitzel_stream_ros.control.config import build_config
from schnitzel_stream_ros.control.plane import ControlPlane
from schnitzel_stream_ros.control.server import ControlServer
from schnitzel_stream_ros.graph.load import load_graph_text
from schnitzel_stream_ros.graph.validate import validate
from schnitzel_stream_ros.testing.tls import self_signed_certificate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GRAPH = """
version: 2
namespace: /tls
nodes:
  - {id: src, plugin: SyntheticSource}
  - {id: sink, kind: sink, plugin: PrintSink}
edges:
  - {from: src, to: sink}
"""


@pytest.fixture
def certificate(tmp_path):
    made = self_signed_certificate(tmp_path)
    if made is None:
        pytest.skip('openssl CLI not installed: cannot make a self-signed certificate')
    cert, key = made
    return cert, key


def test_https_with_the_token(tmp_path, certificate, monkeypatch):
    monkeypatch.delenv('SCHNITZEL_CONTROL_TOKEN', raising=False)
    cert, key = certificate
    graph = validate(load_graph_text(GRAPH, 'tls.yaml').graph).graph
    config = build_config(
        '127.0.0.1:0', control_dir=tmp_path / 'control', tls_cert=str(cert), tls_key=str(key)
    )
    plane = ControlPlane(config, graph=lambda: graph, submit=lambda: None, report=dict, ros=False)
    server = ControlServer(config, plane).start()
    try:
        assert server.url.startswith('https://127.0.0.1:')
        context = ssl.create_default_context(cafile=str(cert))

        def call(method: str, path: str, token: str | None) -> tuple[int, dict]:
            conn = http.client.HTTPSConnection('127.0.0.1', server.port, context=context, timeout=20)
            try:
                headers = {'content-type': 'application/json'}
                if token:
                    headers['authorization'] = f'Bearer {token}'
                conn.request(method, path, body=b'{}' if method != 'GET' else None, headers=headers)
                answer = conn.getresponse()
                return answer.status, json.loads(answer.read())
            finally:
                conn.close()

        status, doc = call('GET', '/api/graph', None)
        assert status == 200 and [n['id'] for n in doc['nodes']] == ['src', 'sink']
        assert call('POST', '/api/report/snapshot', None)[0] == 401
        status, body = call('POST', '/api/report/snapshot', config.token)
        assert status == 200 and body['path'] is None
        # the graph is not running (no reconciler): a one-line 503, not a hang
        conn = http.client.HTTPSConnection('127.0.0.1', server.port, context=context, timeout=20)
        conn.request(
            'POST',
            '/api/graph/validate',
            body=json.dumps({'graph_text': GRAPH}),
            headers={'content-type': 'application/json'},
        )
        answer = conn.getresponse()
        assert answer.status == 503 and 'not running' in json.loads(answer.read())['detail']
        conn.close()

        plain = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine)):
            plain.request('GET', '/api/graph')
            plain.getresponse()
        plain.close()
        untrusting = http.client.HTTPSConnection(
            '127.0.0.1', server.port, timeout=10, context=ssl.create_default_context()
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.request('GET', '/api/graph')
        untrusting.close()
    finally:
        server.stop()
        plane.close()
    audit = [json.loads(line) for line in (tmp_path / 'control' / 'audit.jsonl').read_text().splitlines()]
    assert [(a['status'], a['authenticated']) for a in audit] == [(401, False), (200, True)]
    assert config.token not in (tmp_path / 'control' / 'audit.jsonl').read_text()
