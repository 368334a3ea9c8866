"""A small running site with its control plane, for the API, security and browser tests.

`schnitzel-stream run --control 127.0.0.1:0` of a two-container graph on a leased, localhost-only
ROS domain: a synthetic source through dedup into a JSONL tap (container front), and a finite
event source into a DurableForwarderSink (container back) whose backend — a real HTTP server on
loopback in this process — refuses every event with 400, so the queue fills with dead letters.
A RosPeer in the test process publishes typed Events and controller decisions as other nodes of
the site would, and reads parameters as `ros2 param get` does.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env
from schnitzel_stream_ros.testing.ros_peer import RosPeer

TOKEN = 'test-token-0123456789abcdef'
DEAD_LETTERS = 20

GRAPH = """
    version: 2
    namespace: /cpt
    nodes:
      - {id: src, plugin: SyntheticSource, container: front, config: {rate_hz: 20.0, count: 0, kind: event}}
      - {id: dedup, plugin: DedupPolicyNode, container: front}
      - {id: tap, kind: sink, plugin: JsonlSink, container: front,
         config: {path: TMP/tap.jsonl, body: payload}}
      - {id: evsrc, plugin: SyntheticSource, container: back,
         config: {rate_hz: 20.0, count: DEAD, kind: event}}
      - {id: backend, plugin: DurableForwarderSink, container: back,
         config: {path: TMP/queue.db, url: URL, retry_backoff_sec: 0.05}}
    edges:
      - {from: src, to: dedup}
      - {from: dedup, to: tap}
      - {from: evsrc, to: backend}
"""


class RefusingBackend:
    """A loopback HTTP backend that refuses every event for good (400): they become dead letters."""

    def __init__(self) -> None:
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get('content-length') or 0)
                self.rfile.read(min(length, 1 << 20))
                outer.refused += 1
                body = b'{"error": "schema mismatch"}'
                self.send_response(400)
                self.send_header('content-type', 'application/json')
                self.send_header('content-length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/events'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def graph_text(tmp: Path, url: str) -> str:
    return (
        textwrap.dedent(GRAPH).replace('TMP', str(tmp)).replace('URL', url).replace('DEAD', str(DEAD_LETTERS))
    )


class ControlSite:
    """The running site; `call()` speaks HTTP to its control plane."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.backend = RefusingBackend()
        self.lease = lease_domain()
        self.domain_id = self.lease.domain_id
        self.env = localhost_env(self.domain_id)
        self.env['SCHNITZEL_CONTROL_TOKEN'] = TOKEN
        self.graph_path = tmp / 'site.yaml'
        self.graph_path.write_text(graph_text(tmp, self.backend.url))
        self.control_dir = tmp / 'control'
        self.report = tmp / 'report.json'
        self.stderr_path = tmp / 'run.txt'
        with self.stderr_path.open('w') as err:
            self.proc = processes.start(
                [
                    sys.executable,
                    '-m',
                    'schnitzel_stream_ros',
                    'run',
                    str(self.graph_path),
                    '--duration',
                    '600',
                    '--quiet',
                    '--report-json',
                    str(self.report),
                    '--control',
                    '127.0.0.1:0',
                    '--control-dir',
                    str(self.control_dir),
                ],
                self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.port = self._wait_port()
        self.peer = RosPeer(self.domain_id, 'control_test_peer')
        # running: progress snapshots (they start after the start gate, with the graph service) show packets
        self.wait_for(
            lambda: self.call('GET', '/api/metrics')[1]['nodes'].get('src', {}).get('produced'),
            60,
            'the graph to run',
        )

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(
                r'control: operator page and API on http://127\.0\.0\.1:(\d+)/', self.stderr_path.read_text()
            )
            if found:
                return int(found.group(1))
            assert self.proc.poll() is None, self.stderr_path.read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError(
            'the control plane did not announce its address:\n' + self.stderr_path.read_text()
        )

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}/'

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
        try:
            sent = {'content-type': 'application/json', **(headers or {})}
            if token is not None:
                sent['authorization'] = f'Bearer {token}'
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            payload = response.read()
            try:
                return response.status, json.loads(payload)
            except ValueError:
                return response.status, payload.decode('utf-8', 'replace')
        finally:
            conn.close()

    def wait_for(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            assert self.proc.poll() is None, self.stderr_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f'timed out waiting for {what}'
            time.sleep(0.25)

    def audit_lines(self) -> list[dict[str, Any]]:
        path = self.control_dir / 'audit.jsonl'
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def param(self, fq_node: str, name: str) -> Any:
        """What `ros2 param get` shows: the node's GetParameters service, from another process's node."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        answer = self.peer.call(
            GetParameters, f'{fq_node}/get_parameters', GetParameters.Request(names=[name])
        )
        return parameter_value_to_python(answer.values[0])

    def close(self) -> str:
        try:
            self.peer.close()
        finally:
            processes.stop(self.proc, timeout=30)
            self.backend.close()
            self.lease.release()
        return self.stderr_path.read_text()
