"""`config.pace_sources` across containers: each container publishes what it has taken in and drained.

One container's DrainPacer (workers.py) sees its own nodes only. When the graph spans containers, a
packet published over DDS to another container has not "left the graph" until that container has
received it and drained it too. So with pacing on, every container:
- counts, per input topic that reaches it over DDS, the packets its inputs were offered (accepted
  or dropped by the inbox policy: a dropped packet has left the graph as well);
- whenever those counts moved and the container is drained — its own nodes idle with nothing offered
  while looking, and its own DDS outputs credited by their receivers in turn — publishes them as a
  *credit* on `<graph namespace>/_schnitzel/pace` (diagnostic_msgs/DiagnosticStatus: name = the
  container, values = [topic, count]); again every HEARTBEAT_SEC. Counts are cumulative, so a credit
  lost in DDS is made good by the next one, and the writer keeps its last credit for late joiners
  (transient local): a container whose subscription matched late learns the count at once;
- its source waits before each pull until its own container is drained in that sense, i.e. every
  topic it published over DDS is credited, by every container that reported the topic, up to the
  count published.
The start gate (runtime/start_gate.py) opens a paced graph only once every container that takes a
crossing topic in has been heard crediting it (`pace_reporters` in the container's snapshot), so a
source does not start before its pace link works. A topic no container reports (only outside
listeners, `ros2 topic echo`; or a gate that timed out) is waited for once, at its first packet, for
FIRST_CREDIT_GRACE_SEC, then not: counted in `transport.pace_credit_grace_expired_total` and said
in the run's warnings, as the packets on that topic then go unpaced until a credit comes. A credit
that stays short — a packet lost in DDS, a container that died — holds the source REMOTE_TIMEOUT_SEC
at most; the shortfall is then written off (counted in `transport.pace_credit_timeouts_total` and
`transport.pace_credit_written_off_total`, and a warning) so the next packets are paced again
against the live count. The credit reporter survives its own errors (counted in
`transport.pace_credit_report_errors_total`, a warning): a reporter that died silently once left a
run unpaced with nothing said. Credits are hostile input: bounded (MAX_CREDIT_VALUES topics,
MAX_REPORTERS containers), parsed as non-negative integers, others ignored.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from schnitzel_stream_ros.runtime.workers import DrainPacer

PACE_TOPIC = '_schnitzel/pace'
HEARTBEAT_SEC = 0.5
#: between two looks of the credit reporter (what a credit costs the remote source at most, plus DDS)
REPORT_POLL_SEC = 0.0003
#: between two looks while no input of the container comes from another process
IDLE_POLL_SEC = 0.05
FIRST_CREDIT_GRACE_SEC = 2.0
REMOTE_TIMEOUT_SEC = 5.0
MAX_CREDIT_VALUES = 256
MAX_REPORTERS = 64
MAX_NAME_CHARS = 512
MAX_COUNT = 2**63 - 1
#: after an error of the credit reporter, before it looks again
REPORT_ERROR_PAUSE_SEC = 0.05
#: a writer keeps only its newest credit (cumulative counts: older ones say nothing more); transient
#: local, so a subscription that matches later gets it at once instead of at the next heartbeat
WRITER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
READER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=64, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


def parse_credit(msg: Any) -> tuple[str, dict[str, int]] | None:
    """(container, {topic: count}) of one credit message, or None when it is not one of ours."""
    name = getattr(msg, 'name', None)
    values = getattr(msg, 'values', None)
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or values is None:
        return None
    counts: dict[str, int] = {}
    for item in list(values)[:MAX_CREDIT_VALUES]:
        key, value = getattr(item, 'key', None), getattr(item, 'value', None)
        if not isinstance(key, str) or not key.startswith('/') or len(key) > MAX_NAME_CHARS:
            continue
        if not isinstance(value, str) or not value.isdigit() or len(value) > 19 or int(value) > MAX_COUNT:
            continue
        counts[key] = int(value)
    return name, counts


class PaceLink(DrainPacer):
    """A container's pacer when its graph may span containers (see the module docstring).

    `nodes()` gives the container's PluginNodes: their `subscribers` (LocalSubscribers: `topic`,
    `edge.packets`) and `outputs` (OutputPorts: `topic.name`, `dds_published`); `bus` is the
    container's Bus (a topic without a publisher in the container comes in over DDS); `on_warning`
    takes the warnings a run report must show (once each). The credit reporter runs from `start()`,
    which the container calls once `nodes()` can answer."""

    def __init__(self, node: Any, bus: Any, nodes: Callable[[], list[Any]],
                 on_warning: Callable[[str], None] | None = None) -> None:
        super().__init__(nodes)
        self.node = node
        self.bus = bus
        self.name = node.get_fully_qualified_name()
        self.on_warning = on_warning or (lambda message: node.get_logger().warning(message))
        self.counters = {'pace_credits_published_total': 0, 'pace_credit_timeouts_total': 0,
                         'pace_credit_written_off_total': 0, 'pace_credits_ignored_total': 0,
                         'pace_credit_grace_expired_total': 0, 'pace_credit_report_errors_total': 0}
        self._credits: dict[str, dict[str, int]] = {}  # reporting container -> {topic: count}
        self._written_off: dict[str, int] = {}  # topic -> packets given up on (lost in DDS, dead peer)
        self._first_seen: dict[str, float] = {}
        self._grace_expired: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.publisher = node.create_publisher(DiagnosticStatus, PACE_TOPIC, WRITER_QOS)
        self.subscription = node.create_subscription(DiagnosticStatus, PACE_TOPIC, self._on_credit,
                                                     READER_QOS)
        self.thread = threading.Thread(target=self._report_loop, name='pace-credit', daemon=True)

    def start(self) -> None:
        if not self.thread.is_alive() and not self._stop.is_set():
            self.thread.start()

    def reporters(self) -> dict[str, int]:
        """topic -> containers heard crediting it (what the start gate waits for)."""
        out: dict[str, int] = {}
        with self._lock:
            for counts in self._credits.values():
                for topic in counts:
                    out[topic] = out.get(topic, 0) + 1
        return out

    # -- what this container took in and drained --------------------------------------------------
    def _received(self, nodes: list[Any]) -> dict[str, int]:
        """Per topic that comes in over DDS: the fewest packets any of its local inputs was offered."""
        counts: dict[str, int] = {}
        remote = {topic.name for topic in self.bus.topics() if not topic.publishers}
        for node in nodes:
            for sub in node.subscribers:
                if sub.topic in remote:
                    seen = counts.get(sub.topic)
                    counts[sub.topic] = sub.edge.packets if seen is None else min(seen, sub.edge.packets)
        return counts

    def _report_loop(self) -> None:
        """Report until closed. An error of one look is counted and said, and the next look comes:
        a reporter that ends leaves the sources of other containers unpaced (or held), and that once
        happened with nothing in the run's report."""
        while not self._stop.is_set():
            try:
                self._report()
                return
            except Exception as exc:
                if self._stop.is_set() or not self.node.context.ok():  # the process is ending
                    return
                self.counters['pace_credit_report_errors_total'] += 1
                self.on_warning(f'container {self.name}: pace credit reporter: {type(exc).__name__}: {exc} '
                                '(counted in transport.pace_credit_report_errors_total; reporting goes on)')
                self._stop.wait(REPORT_ERROR_PAUSE_SEC)

    def _report(self) -> None:
        last: dict[str, int] = {}
        last_sent = 0.0
        poll = REPORT_POLL_SEC
        while not self._stop.wait(poll):
            nodes = self.nodes()
            received = self._received(nodes)  # read before the drain check: what it counts is done
            # a container without inputs from other processes (one-container graphs) looks rarely
            poll = REPORT_POLL_SEC if received else IDLE_POLL_SEC
            if not received:
                continue
            now = time.monotonic()
            if received == last and now - last_sent < HEARTBEAT_SEC:
                continue
            if not self.drained(nodes):
                continue
            msg = DiagnosticStatus(name=self.name, values=[KeyValue(key=t, value=str(c))
                                                           for t, c in sorted(received.items())])
            if self._stop.is_set():
                return
            self.publisher.publish(msg)
            self.counters['pace_credits_published_total'] += 1
            last, last_sent = received, now

    def _on_credit(self, msg: Any) -> None:
        credit = parse_credit(msg)
        if credit is None:
            self.counters['pace_credits_ignored_total'] += 1
            return
        name, counts = credit
        if name == self.name:
            return
        with self._lock:
            if name not in self._credits and len(self._credits) >= MAX_REPORTERS:
                self.counters['pace_credits_ignored_total'] += 1
                return
            self._credits[name] = counts

    # -- what the source waits for ------------------------------------------------------------------
    def _published(self, nodes: list[Any]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in nodes:
            for port in node.outputs:
                if port.dds_published:
                    counts[port.topic.name] = counts.get(port.topic.name, 0) + port.dds_published
        return counts

    def _shortfall(self, nodes: list[Any]) -> dict[str, int]:
        """topic -> packets published over DDS that a reporting container has not credited yet."""
        now = time.monotonic()
        short: dict[str, int] = {}
        with self._lock:
            credits = list(self._credits.values())
        for topic, published in self._published(nodes).items():
            target = published - self._written_off.get(topic, 0)
            reported = [c[topic] for c in credits if topic in c]
            if not reported:
                first = self._first_seen.setdefault(topic, now)
                if now - first < FIRST_CREDIT_GRACE_SEC:
                    short[topic] = target
                elif self._first_grace_expiry(topic):  # the source's thread and the reporter's look
                    self.on_warning(
                        f'container {self.name}: pace: no container credited topic {topic} within '
                        f'{FIRST_CREDIT_GRACE_SEC:g} s of its first packet: packets on it go unpaced until '
                        'one does (fine for outside listeners only; a container that consumes it is not '
                        'reporting)')
                continue
            missing = target - min(reported)
            if missing > 0:
                short[topic] = missing
        return short

    def _first_grace_expiry(self, topic: str) -> bool:
        """Count a topic's grace expiry once; True the first time."""
        with self._lock:
            if topic in self._grace_expired:
                return False
            self._grace_expired.add(topic)
            self.counters['pace_credit_grace_expired_total'] += 1
            return True

    def drained(self, nodes: list[Any]) -> bool:
        before = self._offered(nodes)
        if not all(node.idle for node in nodes) or self._offered(nodes) != before:
            return False
        return not self._shortfall(nodes)

    def wait(self, stop: threading.Event) -> bool:
        """Until this container and the containers its packets went to are drained (True), or stop."""
        deadline = time.monotonic() + REMOTE_TIMEOUT_SEC
        while not stop.is_set():
            nodes = self.nodes()
            if self.drained(nodes):
                return True
            if time.monotonic() >= deadline and all(node.idle for node in nodes):
                short = self._shortfall(nodes)
                self.counters['pace_credit_timeouts_total'] += 1
                for topic, missing in short.items():
                    self._written_off[topic] = self._written_off.get(topic, 0) + missing
                    self.counters['pace_credit_written_off_total'] += missing
                    self.on_warning(
                        f'container {self.name}: pace: topic {topic}: credits stayed short for '
                        f'{REMOTE_TIMEOUT_SEC:g} s; the packets not credited were written off (counted in '
                        'transport.pace_credit_written_off_total) and the source went on')
                return True
            stop.wait(self.POLL_SEC)
        return False

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2.0)
