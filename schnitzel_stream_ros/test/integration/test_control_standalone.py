"""`schnitzel-stream control`: the control plane as a process of its own beside a graph it does not run.

A two-container graph runs under `schnitzel-stream run` without --control (as under launch, nothing
hosts a control plane); `schnitzel-stream control GRAPH --control 127.0.0.1:0` serves the API for it:
metrics from the containers' report services, health from /diagnostics, a parameter set through the
node's service, a graph validated, diffed and applied through `_graph/apply`, an invalid one refused.
Stopping the control plane leaves the graph running.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from control_site import TOKEN

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

GRAPH = """
version: 2
namespace: /cps
nodes:
  - {id: src, plugin: SyntheticSource, container: front, config: {rate_hz: 20.0, count: 0, kind: event}}
  - {id: dedup, plugin: DedupPolicyNode, container: front}
  - {id: sink, kind: sink, plugin: JsonlSink, container: back, config: {path: TMP/sink.jsonl, body: payload}}
edges:
  - {from: src, to: dedup}
  - {from: dedup, to: sink}
"""


def test_a_standalone_control_plane_serves_a_graph_it_does_not_run(tmp_path, ros_env, ros_domain):
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python


    graph = tmp_path / 'g.yaml'
    graph.write_text(GRAPH.replace('TMP', str(tmp_path)))
    env = {**ros_env, 'SCHNITZEL_CONTROL_TOKEN': TOKEN}
    with (tmp_path / 'run.txt').open('w') as err:
        run = processes.start(
            [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', '200', '--quiet'],
            env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    with (tmp_path / 'control.txt').open('w') as err:
        control = processes.start(
            [
                sys.executable,
                '-m',
                'schnitzel_stream_ros',
                'control',
                str(graph),
                '--control',
                '127.0.0.1:0',
                '--control-dir',
                str(tmp_path / 'control'),
            ],
            env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    peer = RosPeer(ros_domain, 'standalone_test_peer')
    try:
        deadline = time.monotonic() + 60
        while not (
            found := re.search(r'on http://127\.0\.0\.1:(\d+)/', (tmp_path / 'control.txt').read_text())
        ):
            assert control.poll() is None and time.monotonic() < deadline, (
                tmp_path / 'control.txt'
            ).read_text()
            time.sleep(0.1)
        site = _Http(int(found.group(1)))
        assert 'for /cps/front, /cps/back' in (tmp_path / 'control.txt').read_text()

        def wait(predicate, what: str, timeout: float = 60.0):
            end = time.monotonic() + timeout
            while not (value := predicate()):
                assert run.poll() is None, (tmp_path / 'run.txt').read_text()[-2000:]
                assert time.monotonic() < end, f'timed out waiting for {what}'
                time.sleep(0.25)
            return value

        metrics = wait(
            lambda: (
                (m := site.call('GET', '/api/metrics')[1])['edges'].get('dedup.out->sink.in', {}).get('rate')
                and m
            ),
            'rates from the report services',
        )
        assert (
            metrics['nodes']['src']['container'] == 'front'
            and metrics['nodes']['sink']['container'] == 'back'
        )
        wait(
            lambda: site.call('GET', '/api/health')[1]['nodes'].keys() >= {'src', 'dedup', 'sink'},
            'health of every node',
        )

        assert site.call('PUT', '/api/nodes/src/params/rate_hz', {'value': 5.0})[0] == 200
        answer = peer.call(GetParameters, '/cps/src/get_parameters', GetParameters.Request(names=['rate_hz']))
        assert parameter_value_to_python(answer.values[0]) == 5.0

        bad = graph.read_text().replace('DedupPolicyNode', 'NoSuchThing')
        status, refused = site.call('POST', '/api/graph/apply', {'graph_text': bad, 'label': 'bad.yaml'})
        assert status == 422 and any('NoSuchThing' in line for line in refused['lines'])
        new = graph.read_text().replace(
            '{id: dedup, plugin: DedupPolicyNode, container: front}',
            '{id: dedup, plugin: DedupPolicyNode, container: front, config: {cooldown_sec: 2.5}}',
        )
        status, checked = site.call(
            'POST', '/api/graph/validate', {'graph_text': new, 'label': 'v2.yaml'}, token=None
        )
        assert status == 200 and checked['diff'] == ['set dedup: cooldown_sec=2.5'], checked
        status, applied = site.call('POST', '/api/graph/apply', {'graph_text': new, 'label': 'v2.yaml'})
        assert status == 200 and applied['applied'], applied
        answer = peer.call(
            GetParameters, '/cps/dedup/get_parameters', GetParameters.Request(names=['cooldown_sec'])
        )
        assert parameter_value_to_python(answer.values[0]) == 2.5
        assert site.call('GET', '/api/graph')[1]['nodes'][1]['params']['cooldown_sec'] == 2.5

        assert processes.stop(control, signal.SIGTERM, timeout=30) == 0
        time.sleep(1.0)
        assert run.poll() is None  # the graph runs on without its control plane
    finally:
        peer.close()
        processes.stop(control)
        processes.stop(run, timeout=30)
    assert TOKEN not in (tmp_path / 'control.txt').read_text()


class _Http:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method, path, body=None, token=TOKEN):
        import http.client
        import json

        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=60)
        try:
            headers = {'content-type': 'application/json'}
            if token:
                headers['authorization'] = f'Bearer {token}'
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            answer = conn.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            conn.close()
