"""Delivery from a process of its own (`delivery_process: true`, delivery/delivery_process.py).

The node keeps the queue and commits every write; a child process claims, POSTs and sends its
outcomes back. What an operator relies on, each against the real reference backend on loopback
and a real queue file: events are delivered and the node reports the delivery counters; a killed
delivery process is restarted and nothing is lost; it ends with its node, and with its container
when that dies by kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.delivery.consumer_queue import settle_request_parts
from schnitzel_stream_ros.delivery.http_client import HttpTarget
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink, forwarder_config
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import resolve_params
from schnitzel_stream_ros.runtime.plugin_host import PluginHost

pytestmark = pytest.mark.integration

TIMEOUT_SEC = 90.0


@pytest.fixture
def backend():
    running = serve_in_thread()
    yield running
    running.stop()


def _event(i: int) -> StreamPacket:
    return StreamPacket.new('event', 'cam1', {'i': i}, meta={'idempotency_key': f'ev-{i}'})


def _sink(tmp_path: Path, url: str, **params) -> PluginHost:
    config = resolve_params(
        DurableForwarderSink,
        {'path': str(tmp_path / 'q.db'), 'url': url, 'delivery_process': True, **params},
    )
    host = PluginHost('deliver', DurableForwarderSink, config, is_source=False, is_sink=True)
    host.setup()
    return host


def _wait(condition, what: str, timeout: float = TIMEOUT_SEC) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ('Z', 'X')  # a zombie has ended; its reaper may be slow


def test_events_are_delivered_from_a_process_of_its_own_and_the_node_reports_its_counters(tmp_path, backend):
    host = _sink(tmp_path, backend.url + '/events')
    try:
        sink = host.plugin
        pid = sink.forwarder.pid
        assert pid is not None and pid != os.getpid() and not _gone(pid)
        # nothing of the delivery runs in this process: no forwarder threads here
        assert not [t.name for t in threading.enumerate() if 'forwarder' in t.name]
        host.handle_batch([_event(i) for i in range(500)], 'in')
        _wait(lambda: len(backend.keys()) == 500, 'all 500 events at the backend')
        _wait(lambda: sink._metrics()['posted_total'] == 500, 'the node to report 500 posted')
        metrics = sink._metrics()
        assert backend.keys() == {f'ev-{i}' for i in range(500)}
        assert metrics['queue_depth'] == 0 and metrics['acked_total'] == 500  # committed by this node
        assert metrics['delivery_process_running'] == 1
        assert metrics['delivery_process_restarts_total'] == 0
        assert metrics['breaker_state'] == 'closed'
    finally:
        host.close()
    assert _gone(pid)  # ended with its node


def test_a_killed_delivery_process_is_restarted_and_loses_nothing(tmp_path, backend):
    backend.set_control(mode='slow', delay_ms=20)  # rows are in flight when the kill comes
    host = _sink(tmp_path, backend.url + '/events', concurrency=2, batch_size=16)
    try:
        sink = host.plugin
        first = sink.forwarder.pid
        host.handle_batch([_event(i) for i in range(400)], 'in')
        _wait(lambda: sink._metrics()['posted_total'] >= 20, 'the first deliveries reported')
        before = sink._metrics()['posted_total']
        os.kill(first, signal.SIGKILL)
        _wait(lambda: sink.forwarder.pid not in (None, first), 'a new delivery process')
        backend.set_control(mode='ok')
        _wait(lambda: sink.queue.depth() == 0, 'the queue to empty')
        assert backend.keys() == {f'ev-{i}' for i in range(400)}  # every event, none lost
        _wait(lambda: sink._metrics()['delivery_process_restarts_total'] == 1, 'the restart counted')
        # the node's counter sums both processes: what the killed one had reported plus what the
        # new one reports (the killed one's last half second of POSTs went unreported)
        def summed() -> bool:
            now = sink.forwarder._child.last_metrics.get('posted_total', 0)
            return now > 0 and sink._metrics()['posted_total'] >= before + now

        _wait(summed, 'the delivery counters of both processes')
        metrics = sink._metrics()
        assert metrics['delivery_process_running'] == 1
        assert metrics['acked_total'] == 400
    finally:
        host.close()


def test_live_knobs_reach_the_delivery_process(tmp_path, backend):
    backend.set_control(mode='slow', delay_ms=30)
    host = _sink(tmp_path, backend.url + '/events')  # 4 workers x 128 rows: 40 rows all in flight
    try:
        sink = host.plugin
        sink.on_params({'concurrency': 1, 'batch_size': 1})
        # the surplus workers end at their next idle poll (0.25 s); nothing to observe until then
        time.sleep(1.5)
        host.handle_batch([_event(i) for i in range(40)], 'in')
        seen: list[int] = []

        def drained() -> bool:
            seen.append(sink._metrics()['in_flight'])  # the delivery process's leases
            return sink.queue.depth() == 0

        _wait(drained, 'the queue to empty')
        assert backend.keys() == {f'ev-{i}' for i in range(40)}
        assert max(seen) == 1  # one worker, one row per claim (the defaults would lease all 40)
    finally:
        host.close()


def test_bad_requests_on_the_pipe_are_refused_and_the_next_one_is_served(tmp_path, monkeypatch):
    from schnitzel_stream_ros.delivery import delivery_process

    monkeypatch.setattr(delivery_process, 'WORKER_MODULE', 'scripted_delivery_worker')
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the child gets this import path
    url = 'http://127.0.0.1:9/e'
    params = resolve_params(DurableForwarderSink, {'path': str(tmp_path / 'q.db'), 'url': url})
    queue = DurableQueue(tmp_path / 'q.db', node_id='deliver')
    queue.enqueue(_event(0))  # seq 1
    target = HttpTarget(url)
    process = delivery_process.DeliveryProcess(queue, target, forwarder_config(params), params)
    try:
        process.start()
        answers_path = tmp_path / 'q.db.answers'
        _wait(answers_path.exists, 'the scripted delivery process to write the answers')
        refused, done = json.loads(answers_path.read_text())
        assert refused['type'] == 'failed' and refused['id'] == 1 and 'not a row seq' in refused['error']
        assert done == {'type': 'done', 'id': 2, 'result': [1, 0, 0]}
        assert queue.depth() == 0  # the good settle was committed by this process
    finally:
        process.stop()
        queue.close()


CONTAINER = textwrap.dedent(
    """
    import sys, time
    from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
    from schnitzel_stream_ros.plugin import resolve_params
    from schnitzel_stream_ros.runtime.plugin_host import PluginHost
    config = resolve_params(DurableForwarderSink, {'path': sys.argv[1], 'url': sys.argv[2],
                                                   'delivery_process': True})
    host = PluginHost('deliver', DurableForwarderSink, config, is_source=False, is_sink=True)
    host.setup()
    print(host.plugin.forwarder.pid, flush=True)
    time.sleep(600)
    """
)


def test_the_delivery_process_dies_with_its_container(tmp_path, backend):
    container = subprocess.Popen(
        [sys.executable, '-c', CONTAINER, str(tmp_path / 'q.db'), backend.url + '/events'],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(container.stdout.readline())
        assert not _gone(child)
        container.kill()  # kill -9: no cleanup runs in the container
        container.wait(10)
        _wait(lambda: _gone(child), 'the delivery process to end with its container', timeout=30)
    finally:
        if container.poll() is None:
            container.kill()
            container.wait(10)


def test_a_malformed_settle_from_the_pipe_is_refused_whole():
    good = {'acks': [1, 2], 'nacks': [[3, 1.5, 'HTTP 503']], 'deads': [[4, 'rejected', 400, True]]}
    acks, nacks, deads, linger = settle_request_parts(good)
    assert acks == [1, 2] and nacks[0].seq == 3 and deads[0].http_status == 400 and linger == 0.0
    for bad in ({'acks': [1, 'x']}, {'acks': [-1]}, {'acks': [True]}, {'nacks': [[1, 'soon', '']]}):
        with pytest.raises((TypeError, ValueError)):
            settle_request_parts(bad)
