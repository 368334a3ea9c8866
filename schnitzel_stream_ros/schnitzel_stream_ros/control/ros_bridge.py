"""The control plane's own rclpy node: it listens to the site and calls parameter services.

Its own context and executor thread (as the graph service's), so nothing here ever waits on the
runner's executor. It subscribes to
- `/diagnostics`: the health levels, exactly as the containers and the supervisor publish them;
- every topic of type `schnitzel_stream_msgs/msg/Event` (the site's typed events), every
  `*/decisions` topic of type `std_msgs/msg/String` (a controller's JSON decision records) and the
  image topics of the graph's annotated-image sinks (control/camera_frames.py),
  found by looking at the graph of topics every DISCOVERY_SEC, at most MAX_TOPICS of them.
Messages are hostile input: decisions longer than MAX_DECISION_BYTES or not JSON are counted and
dropped. Parameters are set through the node's standard `set_parameters` service, the way
`ros2 param set` does, so the node's own checks (types, ranges, read-only) decide.
"""

from __future__ import annotations

import json
import time
from typing import Any

from schnitzel_stream_ros.control.site_view import SiteView

EVENT_TYPE = 'schnitzel_stream_msgs/msg/Event'
DECISION_TYPE = 'std_msgs/msg/String'
DECISION_SUFFIX = '/decisions'
IMAGE_TYPE = 'sensor_msgs/msg/Image'
DISCOVERY_SEC = 2.0
MAX_TOPICS = 32
MAX_DECISION_BYTES = 64 * 1024
SERVICE_TIMEOUT_SEC = 5.0


class ParamRefused(Exception):
    """The node refused the value or could not be reached; the message is one line."""


def to_parameter_value(name: str, value: Any, current_type: int) -> Any:
    """JSON value -> rcl_interfaces ParameterValue of the type the node declared (dicts and lists
    travel as JSON text where the node holds a string, as graph files do)."""
    from rcl_interfaces.msg import ParameterType, ParameterValue

    v = ParameterValue()
    t = current_type
    if t == ParameterType.PARAMETER_BOOL and isinstance(value, bool):
        v.type, v.bool_value = t, value
    elif t == ParameterType.PARAMETER_INTEGER and isinstance(value, int) and not isinstance(value, bool):
        v.type, v.integer_value = t, value
    elif t == ParameterType.PARAMETER_DOUBLE and isinstance(value, int | float) and type(value) is not bool:
        v.type, v.double_value = t, float(value)
    elif t == ParameterType.PARAMETER_STRING and isinstance(value, str):
        v.type, v.string_value = t, value
    elif t == ParameterType.PARAMETER_STRING and isinstance(value, dict | list):
        v.type, v.string_value = t, json.dumps(value)
    elif t == ParameterType.PARAMETER_NOT_SET:
        raise ParamRefused(f"parameter '{name}' is not declared by the node")
    else:
        names = {1: 'bool', 2: 'integer', 3: 'double', 4: 'string'}
        raise ParamRefused(
            f"parameter '{name}': expected a {names.get(t, 'value of type ' + str(t))}, "
            f'got {type(value).__name__}'
        )
    return v


def parameter_value_to_json(v: Any) -> Any:
    from rclpy.parameter import parameter_value_to_python

    value = parameter_value_to_python(v)
    return list(value) if isinstance(value, tuple) or hasattr(value, 'tolist') else value


class RosBridge:
    """The node, its subscriptions and parameter clients; `close()` ends it."""

    def __init__(self, view: SiteView, name: str = 'control_plane', *,
                 image_topics: Any = None, frames: Any = None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node

        from schnitzel_stream_ros.runtime.container_handles import init_context
        from schnitzel_stream_ros.runtime.diagnostics import DIAGNOSTICS_TOPIC, QOS
        from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

        self.view = view
        self.image_topics = image_topics or (lambda: set())  # the graph's annotated-image topics, now
        self.frames = frames
        self.context = init_context()
        self.node = Node(name, context=self.context)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, QOS)
        self.topics: dict[str, Any] = {}
        self.image_subscriptions: dict[str, Any] = {}
        self.dropped_decisions = 0
        self.dropped_events = 0
        self._clients: dict[tuple[str, str], Any] = {}
        self.node.create_timer(DISCOVERY_SEC, self._discover)
        executor = make_executor('single', self.context)
        executor.add_node(self.node)
        self.spinner = Spinner(executor, self.context, 'control-plane').start()

    # -- listening ------------------------------------------------------------------------------
    def _on_diagnostics(self, msg: Any) -> None:
        self.view.add_statuses(
            (s.name, s.level[0] if isinstance(s.level, bytes) else int(s.level), s.message, s.hardware_id,
             [(kv.key, kv.value) for kv in s.values])
            for s in msg.status
        )

    def _discover(self) -> None:
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from schnitzel_stream_msgs.msg import Event

        images = self.image_topics() if self.frames is not None and self.frames.wanted() else set()
        for topic in [t for t in self.image_subscriptions if t not in images]:  # nobody looks: stop receiving
            self.node.destroy_subscription(self.image_subscriptions.pop(topic))
        for topic, types in self.node.get_topic_names_and_types():
            if IMAGE_TYPE in types and topic in images and topic not in self.image_subscriptions:
                # depth 1: only the newest frame matters
                self.image_subscriptions[topic] = self.node.create_subscription(
                    Image, topic, lambda msg, t=topic: self.frames.offer(t, msg), 1)
            if topic in self.topics or len(self.topics) >= MAX_TOPICS:
                continue
            if EVENT_TYPE in types:
                self.topics[topic] = self.node.create_subscription(
                    Event, topic, lambda msg, t=topic: self._on_event(t, msg), 50)
            elif DECISION_TYPE in types and topic.endswith(DECISION_SUFFIX):
                self.topics[topic] = self.node.create_subscription(
                    String, topic, lambda msg, t=topic: self._on_decision(t, msg), 50)

    def _on_event(self, topic: str, msg: Any) -> None:
        from schnitzel_stream_ros.codec.event_protocol import msg_to_event

        try:
            self.view.add_event(topic, msg_to_event(msg))
        except Exception:  # a malformed message is counted and not shown
            self.dropped_events += 1

    def _on_decision(self, topic: str, msg: Any) -> None:
        data = msg.data
        if len(data) > MAX_DECISION_BYTES:
            self.dropped_decisions += 1
            return
        try:
            decision = json.loads(data)
        except ValueError:
            self.dropped_decisions += 1
            return
        self.view.add_decision(topic, decision)

    # -- parameters -----------------------------------------------------------------------------
    def call(self, srv_type: Any, service: str, request: Any, timeout: float) -> Any:
        """One service call with a deadline (one client per service is kept: discovery happens once)."""
        client = self._clients.get((service, srv_type.__name__))
        if client is None:
            client = self._clients[(service, srv_type.__name__)] = self.node.create_client(srv_type, service)
        if not client.wait_for_service(timeout_sec=timeout):
            raise ParamRefused(f'{service}: not available')
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise ParamRefused(f'{service}: no answer within {timeout:g} s')
            time.sleep(0.01)
        return future.result()

    def get_parameters(self, fq_node: str, names: list[str],
                       timeout: float = SERVICE_TIMEOUT_SEC) -> dict[str, Any]:
        """name -> (type, value) as the node holds them now."""
        from rcl_interfaces.srv import GetParameters

        request = GetParameters.Request(names=names)
        answer = self.call(GetParameters, f'{fq_node}/get_parameters', request, timeout)
        return {n: (v.type, parameter_value_to_json(v)) for n, v in zip(names, answer.values, strict=False)}

    def set_parameter(self, fq_node: str, name: str, value: Any, timeout: float = SERVICE_TIMEOUT_SEC) -> Any:
        """Set one parameter through the node's service; returns the value the node then holds."""
        from rcl_interfaces.msg import Parameter
        from rcl_interfaces.srv import SetParameters

        current_type = self.get_parameters(fq_node, [name], timeout)[name][0]
        param = Parameter(name=name, value=to_parameter_value(name, value, current_type))
        request = SetParameters.Request(parameters=[param])
        answer = self.call(SetParameters, f'{fq_node}/set_parameters', request, timeout)
        result = answer.results[0]
        if not result.successful:
            reason = ' '.join((result.reason or 'refused').split())
            raise ParamRefused(f"node {fq_node}: parameter '{name}': {reason}")
        return self.get_parameters(fq_node, [name], timeout)[name][1]

    def close(self) -> None:
        import contextlib

        import rclpy

        self.spinner.stop()
        self.node.destroy_node()
        with contextlib.suppress(Exception):
            rclpy.shutdown(context=self.context)
