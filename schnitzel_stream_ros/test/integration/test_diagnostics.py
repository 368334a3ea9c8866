"""`/diagnostics` and `~/edge_statistics` as a ROS tool sees them: a plain rclpy subscriber in this
test process, the graph running under `schnitzel-stream run` in two container groups (one in the
runner's process, one `component_container` child), real DDS on a leased domain.

Conditions are real: a source that stops emitting while staying alive, a plugin that raises on
every packet, a healthy chain next to them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from schnitzel_stream_ros.testing import processes

pytestmark = pytest.mark.integration

OK, WARN, ERROR = 0, 1, 2
PERIOD = 0.5
STALL_TIMEOUT = 2.0
STALL_AFTER = 100  # packets at 20/s: the stall begins ~5 s in, long after this test's subscriber matched

GRAPH = f"""
    version: 2
    namespace: /hx
    nodes:
      - {{id: good, plugin: 'runtime_test_plugins:EndlessSource', container: a, config: {{rate_hz: 50.0}}}}
      - {{id: ident, plugin: Identity, container: a}}
      - {{id: sink, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink', container: a,
         config: {{closed_marker: TMP/sink.txt}}}}
      - {{id: stall, plugin: 'health_test_plugins:StallingSource', container: a,
         config: {{packets: {STALL_AFTER}, rate_hz: 20.0, timeout_sec: {STALL_TIMEOUT}}}}}
      - {{id: stall_sink, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink', container: a,
         config: {{closed_marker: TMP/stall_sink.txt}}}}
      - {{id: slow, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink', container: a,
         config: {{closed_marker: TMP/slow.txt, delay_sec: 0.05}}}}
      - {{id: bad, plugin: 'health_test_plugins:RaiseAlways', container: b}}
      - {{id: backend, kind: sink, plugin: DurableForwarderSink, container: b,
         config: {{path: TMP/queue.db, url: 'http://127.0.0.1:CLOSED_PORT/events'}}}}
    edges:
      - {{from: good, to: ident}}
      - {{from: ident, to: sink}}
      - {{from: good, to: bad}}
      - {{from: good, to: slow, inbox: {{max: 2, overflow: drop_new}}}}   # 50/s into a 20/s sink
      - {{from: good, to: backend}}
      - {{from: stall, to: stall_sink}}
"""


class DiagnosticsListener:
    """Records every DiagnosticStatus of the given topics with its arrival time (monotonic)."""

    def __init__(self, domain_id: int, topics: tuple[str, ...]) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node('diagnostics_listener', context=self.context)
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str, dict]] = []  # (t, topic, status)
        for topic in topics:
            self.node.create_subscription(DiagnosticArray, topic, self._callback(topic), 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _callback(self, topic: str):
        def on_message(msg: DiagnosticArray) -> None:
            t = time.monotonic()
            with self.lock:
                for s in msg.status:
                    self.seen.append((t, topic, {
                        'name': s.name,
                        'level': s.level[0] if isinstance(s.level, bytes) else int(s.level),
                        'message': s.message,
                        'hardware_id': s.hardware_id,
                        'values': {kv.key: kv.value for kv in s.values},
                    }))
        return on_message

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def statuses(self, name: str, topic: str = '/diagnostics') -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, s) for t, tp, s in self.seen if tp == topic and s['name'] == name]

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.05)
        with self.lock:
            last = {s['name']: (s['level'], s['message']) for _, _, s in self.seen[-40:]}
        raise AssertionError(f'timed out waiting for {what}; last statuses: {last}')

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]  # closed again on return: connections are refused


def _first(statuses, predicate):
    return next(((t, s) for t, s in statuses if predicate(s)), None)


def test_diagnostics_levels_from_real_conditions(tmp_path, plugin_env, ros_domain):
    graph = tmp_path / 'graph.yaml'
    graph.write_text(
        textwrap.dedent(GRAPH).replace('TMP', str(tmp_path)).replace('CLOSED_PORT', str(_closed_port()))
    )
    listener = DiagnosticsListener(ros_domain, ('/diagnostics', '/hx/a/edge_statistics'))
    log = (tmp_path / 'run.log').open('w')
    run = processes.start(
        [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', '60', '--quiet',
         '--diagnostics-period', str(PERIOD)],
        plugin_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # the stalled source: OK while it emits and for a while after, WARN once its timeout passed
        listener.wait_for(
            lambda: _first(
                listener.statuses('/hx/a: stall'),
                lambda s: s['level'] == OK and 0 < int(s['values']['produced']) < STALL_AFTER,
            ),
            20,
            'the stalling source OK while it still emits',
        )

        def stalled():
            statuses = listener.statuses('/hx/a: stall')
            settled = _first(statuses, lambda s: s['values'].get('produced') == str(STALL_AFTER))
            warn = _first(statuses, lambda s: s['level'] == WARN)
            return (settled, warn) if settled and warn else None

        (t_settled, settled), (t_warn, warn) = listener.wait_for(stalled, 45, 'the stalled source to WARN')
        assert settled['level'] == OK, settled  # its last packet was less than one period ago
        assert t_warn > t_settled
        # the last packet came at most one period before `settled`; the WARN must follow within the
        # timeout plus two sampling periods (and some slack for a loaded machine)
        assert t_warn - t_settled <= STALL_TIMEOUT + 2 * PERIOD + 1.5, (t_warn - t_settled, warn)
        assert warn['message'].startswith('stalled: no packet for')
        assert warn['message'].endswith(f'(timeout {STALL_TIMEOUT:g} s)')
        assert float(warn['values']['last_packet_age_sec']) >= STALL_TIMEOUT  # rounded to 0.1 s
        assert warn['values']['stall_timeout_sec'] == f'{STALL_TIMEOUT:g}'
        assert warn['hardware_id'] == '/hx/stall'

        # the raising plugin (in the component_container child process): ERROR, with its error count
        _, err = listener.wait_for(
            lambda: _first(listener.statuses('/hx/b: bad'), lambda s: s['level'] == ERROR), 20, 'bad ERROR'
        )
        assert 'plugin raised' in err['message']
        assert int(err['values']['errors_total']) > 0
        assert err['values']['plugin'] == 'health_test_plugins:RaiseAlways'

        # the healthy chain: OK, with its rates, inbox depth and edge latency
        def healthy_ident():
            return _first(
                listener.statuses('/hx/a: ident'),
                lambda s: s['level'] == OK
                and s['values'].get('latency_p99_ms')
                and s['values'].get('consumed_per_sec'),  # empty in the first sample: no window yet
            )

        _, ident = listener.wait_for(healthy_ident, 20, 'ident OK with a latency')
        values = ident['values']
        assert ident['message'] == 'OK' and ident['hardware_id'] == '/hx/ident'
        assert float(values['consumed_per_sec']) > 0
        assert float(values['latency_p99_ms']) > 0
        for key in ('inbox_depth', 'inbox_max', 'inbox_dropped_total', 'errors_total', 'consumed',
                    'produced'):
            assert values[key].isdigit(), (key, values)
        assert values['errors_total'] == '0' and values['inbox_max'] == '64'
        good = listener.statuses('/hx/a: good')
        assert good and all(s['level'] == OK for _, s in good), [s['message'] for _, s in good]
        assert good[-1][1]['message'].startswith('producing ')

        # a consumer slower than its producer behind a drop_new inbox: WARN on the node and its edge
        _, slow = listener.wait_for(
            lambda: _first(listener.statuses('/hx/a: slow'), lambda s: s['level'] == WARN), 20, 'slow WARN'
        )
        assert 'inbox dropped' in slow['message'] and int(slow['values']['inbox_dropped_total']) > 0
        _, slow_edge = listener.wait_for(
            lambda: _first(
                listener.statuses('/hx/a: /hx/good/out -> slow.in', '/hx/a/edge_statistics'),
                lambda s: s['level'] == WARN,
            ),
            10,
            'the dropping edge WARN',
        )
        assert int(slow_edge['values']['dropped_total']) > 0 and slow_edge['values']['inbox_max'] == '2'

        # the durable sink whose backend refuses connections: circuit open, ERROR, queue depth shown
        _, backend = listener.wait_for(
            lambda: _first(
                listener.statuses('/hx/b: backend'),
                lambda s: s['level'] == ERROR and 'backend unreachable' in s['message'],
            ),
            20,
            'backend unreachable ERROR',
        )
        assert backend['message'].startswith('backend unreachable: circuit ')
        assert backend['values']['breaker_state_code'] in ('1', '2') and 'queue_depth' in backend['values']

        # one status per container, from both processes
        for container in ('/hx/a', '/hx/b'):
            rows = listener.statuses(container)
            assert rows and rows[-1][1]['level'] == OK, (container, rows[-1:] if rows else None)
            assert rows[-1][1]['message'].startswith('running ')
        assert listener.statuses('/hx/b')[-1][1]['values']['nodes'] == '2'

        # per-edge statistics with drops, depth and latency
        edge = listener.wait_for(
            lambda: _first(
                listener.statuses('/hx/a: /hx/ident/out -> sink.in', '/hx/a/edge_statistics'),
                lambda s: int(s['values']['packets']) > 0,
            ),
            10,
            'edge statistics of ident -> sink',
        )[1]
        for key in ('packets_per_sec', 'dropped_total', 'inbox_depth', 'inbox_max', 'overflow',
                    'latency_p50_ms', 'latency_p99_ms'):
            assert key in edge['values'], (key, edge)
        assert edge['level'] == OK
        assert (edge['values']['dropped_total'], edge['values']['overflow']) == ('0', 'drop_new')
    finally:
        processes.stop(run)
        log.close()
        listener.close()


ONE_GROUP = """
    version: 2
    namespace: NS
    nodes:
      - {id: src, plugin: 'runtime_test_plugins:EndlessSource', config: {rate_hz: 20.0}}
      - {id: ident, plugin: Identity}
    edges:
      - {from: src, to: ident}
"""


def test_runner_process_container_publishes_and_period_zero_disables(tmp_path, plugin_env, ros_domain):
    # one container group runs inside the runner's own process (LocalContainerHandle); two runs side by
    # side on one domain: the default period publishes, --diagnostics-period 0 publishes nothing
    listener = DiagnosticsListener(ros_domain, ('/diagnostics',))
    runs, logs = [], []
    try:
        for ns, period in (('/on', '1'), ('/off', '0')):
            graph = tmp_path / f'{ns[1:]}.yaml'
            graph.write_text(textwrap.dedent(ONE_GROUP).replace('NS', ns))
            logs.append((tmp_path / f'{ns[1:]}.log').open('w'))
            runs.append(processes.start(
                [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', '8',
                 '--quiet', '--diagnostics-period', period,
                 '--report-json', str(tmp_path / f'{ns[1:]}.json')],
                plugin_env,
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
            ))
        listener.wait_for(
            lambda: len(listener.statuses('/on/main: ident')) >= 3, 30, 'three samples of the /on run'
        )
        assert listener.statuses('/on/main')[-1][1]['values']['nodes'] == '2'
        for run in runs:
            assert run.wait(30) == 0
        with listener.lock:
            names = {s['name'] for _, _, s in listener.seen}
        assert not [n for n in names if n.startswith('/off')], names
        report = json.loads((tmp_path / 'off.json').read_text())
        assert report['metrics']['node.ident.consumed'] > 0  # the silent run did run
    finally:
        for run in runs:
            processes.stop(run)
        for log in logs:
            log.close()
        listener.close()


CAMERA = """
    version: 2
    namespace: /cams
    nodes:
      - {id: cam, plugin: OpenCvRtspSource,
         config: {url: 'URL', timeout_sec: CAM_TIMEOUT, reconnect_backoff_sec: 0.5}}
      - {id: frames, kind: sink, plugin: 'runtime_test_plugins:MarkClosedSink',
         config: {closed_marker: TMP/frames.txt}}
    edges:
      - {from: cam, to: frames, inbox: {max: 1, overflow: drop_oldest}}
"""
CAM_TIMEOUT = 3.0


@pytest.mark.timeout(120)
def test_hung_rtsp_camera_turns_warn_within_its_timeout_then_ok_again(tmp_path, plugin_env, ros_domain):
    from schnitzel_stream_ros.testing.rtsp_server import RtspServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = RtspServer('videotestsrc', mount='cam', fps=10)
    server.start()
    graph = tmp_path / 'cams.yaml'
    graph.write_text(
        textwrap.dedent(CAMERA).replace('URL', server.url).replace('TMP', str(tmp_path))
        .replace('CAM_TIMEOUT', str(CAM_TIMEOUT))
    )
    listener = DiagnosticsListener(ros_domain, ('/diagnostics', '/cams/main/edge_statistics'))
    log = (tmp_path / 'run.log').open('w')
    run = processes.start(
        [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', '90', '--quiet',
         '--diagnostics-period', str(PERIOD)],
        plugin_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    name = '/cams/main: cam'
    try:
        listener.wait_for(
            lambda: _first(
                listener.statuses(name),
                lambda s: s['level'] == OK and s['values'].get('connected') == '1'
                and float(s['values'].get('produced_per_sec') or 0) > 0,
            ),
            40,
            'the camera OK and connected',
        )
        hung = time.monotonic()
        server.pause()  # SIGSTOP: the TCP connection stays open, no frame comes
        t_warn, warn = listener.wait_for(
            lambda: _first(
                [(t, s) for t, s in listener.statuses(name) if t > hung], lambda s: s['level'] == WARN
            ),
            20,
            'the hung camera to WARN',
        )
        assert t_warn - hung <= CAM_TIMEOUT + 2 * PERIOD + 1.5, (t_warn - hung, warn)
        assert 'stalled: no packet for' in warn['message'] or 'stalls_total' in warn['message'], warn
        time.sleep(0.5)
        resumed = time.monotonic()
        server.resume()
        # reconnected, frames again, and once the stall is older than the hold time (10 s): OK
        _, back = listener.wait_for(
            lambda: _first(
                [(t, s) for t, s in listener.statuses(name) if t > resumed], lambda s: s['level'] == OK
            ),
            40,
            'the camera OK again after SIGCONT',
        )
        assert int(back['values']['stalls_total']) >= 1 and int(back['values']['epoch']) >= 2
        assert back['values']['connected'] == '1'
        # the keep-freshest edge behind the camera sheds frames by design: never WARN
        edges = listener.statuses('/cams/main: /cams/cam/out -> frames.in', '/cams/main/edge_statistics')
        assert edges and all(s['level'] == OK for _, s in edges)
    finally:
        processes.stop(run)
        log.close()
        listener.close()
        server.stop()
