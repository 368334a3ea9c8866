"""A container's pace credits (runtime/pace_link.py) cannot stop silently, and a run cannot go unpaced unsaid.

Seen once in twelve two-container paced benchmark runs on the loaded machine: the consuming
container's credit reporter thread ran its first look before the container had its node table (the
thread started inside the container's constructor), died on the AttributeError, and never published a
credit; the source's container waited out the first-credit grace and ran unpaced (miss 0.869 against
0.333), with nothing in the run's report. Here a PaceLink on a real rclpy node publishes over real DDS
to a listener in the same process; the container's node table is played by a small callable (the
plugin nodes are not what is tested: only their counters are read), which fails for its first looks
exactly as the container's did. The reporter must go on and publish the credit, counting and saying
the errors. A source whose DDS topic no container credits goes on after the grace, counted and said.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node

from schnitzel_stream_ros.runtime import pace_link
from schnitzel_stream_ros.runtime.bus import Bus
from schnitzel_stream_ros.runtime.executors import Spinner, make_executor
from schnitzel_stream_ros.runtime.pace_link import PACE_TOPIC, READER_QOS, PaceLink, parse_credit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = '/pace_test/burst/out'


class Ros:
    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.container = Node('second', namespace='/pace_test', context=self.context)
        self.listener = Node('listener', namespace='/pace_test', context=self.context)
        self.credits: list[tuple[str, dict[str, int]]] = []
        self.listener.create_subscription(DiagnosticStatus, PACE_TOPIC, self._on, READER_QOS)
        executor = make_executor('single', self.context)
        executor.add_node(self.container)
        executor.add_node(self.listener)
        self.spinner = Spinner(executor, self.context, 'pace-test').start()

    def _on(self, msg: DiagnosticStatus) -> None:
        credit = parse_credit(msg)
        if credit is not None:
            self.credits.append(credit)

    def close(self) -> None:
        self.spinner.stop()
        self.container.destroy_node()
        self.listener.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def ros(ros_domain):
    r = Ros(ros_domain)
    yield r
    r.close()


def consumer_node(packets: int) -> SimpleNamespace:
    """A plugin node as the pace link reads it: idle, one input on a topic that comes over DDS."""
    return SimpleNamespace(idle=True, outputs=[],
                           subscribers=[SimpleNamespace(topic=TOPIC, edge=SimpleNamespace(packets=packets))])


def test_the_credit_reporter_survives_failing_looks_and_says_so(ros):
    bus = Bus()
    bus.topic(TOPIC)  # known to the container, published by none of its nodes: it comes over DDS
    failures = {'left': 3}

    def nodes() -> list:
        if failures['left']:  # what the container's lambda did before its node table existed
            failures['left'] -= 1
            raise AttributeError("'Container' object has no attribute '_nodes'")
        return [consumer_node(7)]

    warnings: list[str] = []
    link = PaceLink(ros.container, bus, nodes, on_warning=warnings.append)
    link.start()
    try:
        deadline = time.monotonic() + 60
        while not any(credit == ('/pace_test/second', {TOPIC: 7}) for credit in ros.credits):
            assert time.monotonic() < deadline, f'no credit published; warnings {warnings}'
            time.sleep(0.05)
    finally:
        link.close()
    assert link.counters['pace_credit_report_errors_total'] == 3
    assert link.counters['pace_credits_published_total'] >= 1
    assert len(warnings) == 3 and all('pace credit reporter: AttributeError' in w for w in warnings)


def test_a_topic_no_container_credits_goes_unpaced_after_the_grace_counted_and_said(ros, monkeypatch):
    monkeypatch.setattr(pace_link, 'FIRST_CREDIT_GRACE_SEC', 0.5)
    bus = Bus()
    source = SimpleNamespace(idle=True, subscribers=[],
                             outputs=[SimpleNamespace(topic=SimpleNamespace(name=TOPIC), dds_published=1)])
    warnings: list[str] = []
    link = PaceLink(ros.container, bus, lambda: [source], on_warning=warnings.append)
    link.start()
    try:
        stop = threading.Event()
        assert link.drained([source]) is False  # within the grace: the first packet waits for a credit
        assert link.wait(stop) is True  # then it goes on
        assert link.wait(stop) is True
    finally:
        link.close()
    assert link.counters['pace_credit_grace_expired_total'] == 1  # once per topic
    assert link.counters['pace_credit_timeouts_total'] == 0
    (warning,) = warnings
    assert f'no container credited topic {TOPIC} within 0.5 s' in warning
