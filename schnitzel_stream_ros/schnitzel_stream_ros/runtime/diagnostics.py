"""`/diagnostics` and `~/edge_statistics` of one container: a timer, a snapshot, two messages.

One publisher pair per container process, driven by a timer on the container node — so it runs on
the control executor, never on the data path. Each tick reads the counters and gauges the runtime
keeps anyway (Container.snapshot(), the inboxes' sizes) and lets observability/health.py decide the
levels; nothing is added per packet. Topics (docs/diagnostics.md):

- `/diagnostics` (absolute: the aggregator and rqt_robot_monitor listen there), `DiagnosticArray`
  with one status for the container (`<container fq name>`) and one per node
  (`<container fq name>: <node id>`, hardware_id the node's fully qualified name);
- `~/edge_statistics` (`/<ns>/<container>/edge_statistics`), `DiagnosticArray` with one status per
  in-container edge (`<container fq name>: <topic> -> <node>.<port>`): packets, rate, drops, inbox
  depth, latency percentiles — the drops are what ROS topic statistics cannot see.

The period is the container parameter `diagnostics_period_sec` (default 1.0; 0 disables both
topics); sources without a stall threshold of their own use `diagnostics_stall_sec` (stall_threshold()).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from schnitzel_stream_ros.observability.health import (
    HealthMonitor,
    HealthRules,
    InboxView,
    NodeView,
    Status,
    stall_threshold,
)
from schnitzel_stream_ros.plugin import Role

if TYPE_CHECKING:
    from schnitzel_stream_ros.runtime.container import Container
    from schnitzel_stream_ros.runtime.ros_node import PluginNode

DIAGNOSTICS_TOPIC = '/diagnostics'
EDGE_STATISTICS_TOPIC = '~/edge_statistics'
#: Log a failing tick at most this often (the timer must keep running; it must not flood the log).
_LOG_EVERY_SEC = 60.0

# As diagnostic_updater publishes: reliable, volatile, a short history.
QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)


def node_view(node: PluginNode, container_started: bool, default_stall_sec: float) -> NodeView:
    """The facts of a node the snapshot does not carry: inbox sizes and policies, stall threshold."""
    spec = node.spec
    stall = 0.0
    if spec.role is Role.SOURCE:
        stall = stall_threshold(spec.plugin_cls, spec.params, default_stall_sec)
    return NodeView(
        fq_name=node.get_fully_qualified_name(),
        plugin=spec.plugin_ref,
        started=container_started and node.started,
        stall_sec=stall,
        inboxes=tuple(
            InboxView(port, inbox.maxsize, inbox.overflow.value, len(inbox), inbox.dropped_total)
            for port, inbox in list(node.mailbox.inboxes.items())
        ),
    )


def to_message(statuses: list[Status], stamp: Any) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [
        DiagnosticStatus(
            level=bytes([s.level]),
            name=s.name,
            message=s.message,
            hardware_id=s.hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in s.values],
        )
        for s in statuses
    ]
    return msg


class DiagnosticsPublisher:
    """The container's health on `/diagnostics` and its edges on `~/edge_statistics`, every period."""

    def __init__(self, container: Container, period_sec: float, rules: HealthRules) -> None:
        node = container.node
        self.container = container
        self.rules = rules
        self.monitor = HealthMonitor(node.get_fully_qualified_name(), rules)
        self.publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, QOS)
        self.edge_publisher = node.create_publisher(DiagnosticArray, EDGE_STATISTICS_TOPIC, QOS)
        self._failed_at: float | None = None
        self.ticks = 0
        self.timer = node.create_timer(period_sec, self.tick)

    def tick(self) -> None:
        """One sample; never raises (an exception here would stop the container's executor)."""
        try:
            container = self.container
            snapshot = container.snapshot()
            views = {
                node.get_name(): node_view(node, container.started, self.rules.stall_sec)
                for node in container.plugin_nodes()
            }
            health = self.monitor.update(time.monotonic(), snapshot, views, time.process_time())
            stamp = container.node.get_clock().now().to_msg()
            self.publisher.publish(to_message(health.statuses, stamp))
            if health.edges:
                self.edge_publisher.publish(to_message(health.edges, stamp))
            self.ticks += 1
        except Exception as exc:
            now = time.monotonic()
            if self._failed_at is None or now - self._failed_at >= _LOG_EVERY_SEC:
                self._failed_at = now
                self.container.log.error(f'diagnostics: sample failed: {type(exc).__name__}: {exc}')
