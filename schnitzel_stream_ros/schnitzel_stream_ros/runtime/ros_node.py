"""A plugin as a real rclpy node: name, namespace, parameters, logger, topics — and its threads.

The container creates one PluginNode per load request. To ROS it is an ordinary node: `ros2 node
list` shows it, `ros2 param` describes and changes its parameters, its output ports are publishers
on `~/<port>` (remappable), its inputs are subscriptions when their topic comes from outside the
container. To the plugin it is invisible: the plugin only sees its PluginContext (plugin_host.py).

Life cycle, driven by the container: __init__ (declare parameters, plugin setup(), wire ports —
any failure raises LoadError and leaves nothing behind) -> start() (worker/source threads) ->
stop_sources() -> close_inputs() -> join() -> close() (plugin close(), always) -> destroy().
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLInvalidROSArgsError
from rclpy.context import Context
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import decode_packet, encode_packet
from schnitzel_stream_ros.graph.model import Reliability
from schnitzel_stream_ros.graph.wiring import is_reserved_param, ros_param_value
from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Role
from schnitzel_stream_ros.runtime.bus import Bus, LocalSubscriber, OutputPort
from schnitzel_stream_ros.runtime.hot_replace import ReplaceRefused, run_swap, wiring_problems
from schnitzel_stream_ros.runtime.inbox import Inbox
from schnitzel_stream_ros.runtime.load_spec import LoadError, NodeLoadSpec
from schnitzel_stream_ros.runtime.mailbox import Mailbox
from schnitzel_stream_ros.runtime.node_restart import NodeRestarts
from schnitzel_stream_ros.runtime.plugin_host import DeliveryError, PluginError, PluginHost
from schnitzel_stream_ros.runtime.ros_parameters import RosParameters
from schnitzel_stream_ros.runtime.ros_params import (
    check_change,
    declare_parameters,
    redeclare_plugin_parameters,
    unchanged_parameter,
    update_wiring_parameters,
)
from schnitzel_stream_ros.runtime.workers import (
    CostMeter,
    EmissionBudget,
    InputWorker,
    SourceWorker,
    run_inline,
)

Notify = Callable[[str], None]


def _full_schema(spec: NodeLoadSpec) -> dict[str, Any]:
    """The plugin's parameters plus those that exist only on the running node (Plugin.runtime_params)."""
    schema: dict[str, Any] = dict(spec.plugin_cls.param_schema())
    for param in spec.plugin_cls.runtime_params(spec.params):
        if param.dynamic and not param.required and param.name not in schema:
            schema[param.name] = param
    return schema


def qos_profile(reliability: Reliability, depth: int) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE
        if reliability is Reliability.RELIABLE
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def _payload_as(msg_cls: type) -> Callable[[StreamPacket], Any]:
    """Ports of other ROS types publish the payload as is (docs/wiring.md), if it is of that type."""

    def payload(packet: StreamPacket) -> Any:
        if not isinstance(packet.payload, msg_cls):
            raise TypeError(
                f'payload is {type(packet.payload).__name__}, the port publishes {msg_cls.__name__}'
            )
        return packet.payload

    return payload


class PluginNode(Node):
    """One graph node hosted in our container."""

    def __init__(
        self,
        spec: NodeLoadSpec,
        *,
        context: Context,
        bus: Bus,
        budget: EmissionBudget,
        on_fatal: Notify,
        on_warning: Notify,
        message_info: bool = True,
        inline: bool = True,
    ) -> None:
        cli_args = ['--ros-args']
        for rule in spec.remap_rules:
            cli_args += ['-r', rule]
        try:  # as rclcpp_components: the request's rules only, never the container's command line
            super().__init__(
                spec.node_name,
                namespace=spec.namespace,
                context=context,
                cli_args=cli_args,
                use_global_arguments=False,
            )
        except RCLInvalidROSArgsError as exc:  # rcl's own verdict on a remap rule (e.g. wildcards)
            reason = str(exc).split(', at ')[0].removeprefix('Failed to parse ROS arguments: ')
            raise LoadError(f"node '{spec.node_name}': remap_rules refused by ROS: {reason}") from None
        self.spec = spec
        self.bus = bus
        self.on_fatal = on_fatal
        self.on_warning = on_warning
        self.budget = budget
        self.message_info = message_info
        role = spec.role
        self.host = PluginHost(
            spec.node_name,
            spec.plugin_cls,
            spec.params,
            is_source=role is Role.SOURCE,
            is_sink=role is Role.SINK,
            logger=self.get_logger(),
        )
        self.mailbox = Mailbox(spec.node_name)
        self.restarts = NodeRestarts(self.host, self.mailbox, spec.restart)
        self.cost = CostMeter(inline)  # cheap nodes may run inline in DDS callbacks (unless isolated)
        self.outputs: list[OutputPort] = []
        self.subscribers: list[LocalSubscriber] = []
        self._bridges: dict[int, Any] = {}  # id(LocalSubscriber) -> rclpy Subscription while bridged
        self.input_worker: InputWorker | None = None
        self.source_worker: SourceWorker | None = None
        self.started = False
        self._decode_warned = False
        self._redeclaring = False  # a hot-replace re-declares parameters: checks stand aside
        self.replaced_total = 0
        try:
            if spec.log_level:
                self.get_logger().set_level(LoggingSeverity(spec.log_level))
            schema = self._schema = _full_schema(spec)
            given = {k: v for k, v in spec.ros_params.items() if k in schema or is_reserved_param(k)}
            declare_parameters(self, schema, spec.params, given)
            self.host.parameters = RosParameters(self, self._post_to_plugin)
            self.add_on_set_parameters_callback(self._check_params)
            self.add_post_set_parameters_callback(self._params_changed)
            self.host.setup()
            self._wire_outputs()
            self._wire_inputs()
        except (PluginError, ValueError) as exc:
            message = (
                str(exc)
                if str(exc).startswith(f"node '{spec.node_name}'")
                else f"node '{spec.node_name}': {exc}"
            )
            try:
                self.host.close()  # close() always runs, also when setup() failed half-way
            except PluginError as close_exc:
                message += f'; {close_exc}'
            self.destroy()
            raise LoadError(message) from exc
        except BaseException:
            self.destroy()
            raise

    # -- wiring ---------------------------------------------------------------------------------
    def _wire_outputs(self) -> None:
        for name, wiring in self.spec.outputs.items():
            msg_cls = wiring.msg_cls or StreamPacketMsg
            publisher = self.create_publisher(
                msg_cls, f'~/{name}', qos_profile(wiring.reliability, wiring.depth)
            )
            topic = self.bus.topic(publisher.topic_name)
            port = OutputPort(
                self.get_name(),
                name,
                topic,
                publisher,
                encode_packet if wiring.msg_cls is None else _payload_as(wiring.msg_cls),
                self.bus.transport,
                self.on_warning,
            )
            self.outputs.append(port)
            self.host.connect(name, port)
            self.bus.attach_publisher(port)

    def _wire_inputs(self) -> None:
        for name, wiring in self.spec.inputs.items():
            inbox = Inbox(f'{self.get_name()}.{name}', wiring.inbox_max, wiring.overflow)
            self.mailbox.add_inbox(name, inbox)
            rewrap = None
            if wiring.msg_cls is not None:
                rewrap = next(iter(sorted(k for k in wiring.port.kinds if k != '*')), Kind.RAW)
            for topic in wiring.topics:
                self._subscribe(name, wiring, inbox, topic, rewrap)

    def _subscribe(self, name: str, wiring: Any, inbox: Inbox, topic: str, rewrap: str | None) -> None:
        resolved = self.resolve_topic_name(topic)  # the request's remap rules apply, as in rcl
        sub = LocalSubscriber(
            resolved, self.mailbox, name, inbox, EdgeMetrics(resolved, self.get_name(), name), rewrap
        )
        sub.bridge = self._bridge_switch(sub, wiring, topic)
        self.subscribers.append(sub)
        if not self.bus.subscribe(sub):
            sub.bridge(True)

    def _unsubscribe(self, sub: LocalSubscriber) -> None:
        self.bus.unsubscribe(sub)
        if sub.bridge is not None:
            sub.bridge(False)
        sub.bridge = None
        self.subscribers.remove(sub)

    def rewire(self, spec: NodeLoadSpec) -> list[str]:
        """Inputs subscribe to the topics `spec` names: new ones first, then the old ones are left
        (a packet in flight at the switch may arrive twice on a touched edge, never not at all).
        The inbox of each port stays. Returns what changed, one phrase each."""
        changes = []
        for name, wiring in spec.inputs.items():
            inbox = self.mailbox.inboxes[name]
            rewrap = next((s.rewrap_kind for s in self.subscribers if s.port == name), None)
            have = {s.topic for s in self.subscribers if s.port == name}
            want = [self.resolve_topic_name(t) for t in wiring.topics]
            for topic in want:
                if topic not in have:
                    self._subscribe(name, wiring, inbox, topic, rewrap)
                    changes.append(f"input '{name}' subscribes {topic}")
            for sub in [s for s in self.subscribers if s.port == name and s.topic not in want]:
                self._unsubscribe(sub)
                changes.append(f"input '{name}' leaves {sub.topic}")
        if changes:
            self._redeclaring = True
            try:
                inputs = {k: v for k, v in spec.ros_params.items() if k.startswith('inputs.')}
                update_wiring_parameters(self, inputs)
            finally:
                self._redeclaring = False
        return changes

    def _bridge_switch(self, sub: LocalSubscriber, wiring: Any, topic: str) -> Callable[[bool], None]:
        """Turns the DDS subscription of one (topic, input) on or off (the bus decides when).

        The subscription is created with the name as given (`topic`): rcl remaps it to `sub.topic`
        exactly once, like any other node's.
        """
        msg_cls = wiring.msg_cls or StreamPacketMsg
        qos = qos_profile(wiring.reliability, wiring.depth)
        transport = self.bus.transport
        now_ns = time.time_ns
        clock = time.perf_counter_ns
        is_packet = wiring.msg_cls is None

        mailbox, token, edge, port = sub.mailbox, sub.token, sub.edge, sub.port
        cost = self.cost
        on_error = self.restarts.failed

        def to_packet(msg: Any) -> StreamPacket | None:
            transport.dds_received_total += 1
            if not is_packet:
                return StreamPacket.new(sub.rewrap_kind or Kind.RAW, sub.topic, msg)
            try:
                return decode_packet(msg)
            except (TypeError, ValueError) as exc:
                transport.decode_failed_total += 1
                if not self._decode_warned:
                    self._decode_warned = True
                    self.on_warning(
                        f"node '{self.get_name()}': input '{port}': undecodable message on {sub.topic}: {exc}"
                    )
                return None

        def deliver(packet: StreamPacket, t_emit: int) -> None:
            if cost.cheap and self.input_worker is not None and mailbox.try_claim():
                try:  # a cheap idle node runs right here: no hand-over to its thread (Mailbox.try_claim)
                    run_inline(self.host, cost, packet, port, t_emit, edge, self.on_fatal, on_error)
                finally:
                    mailbox.release()
                return
            try:  # never waits: this thread serves every cross-process input of the container
                mailbox.offer_nowait(token, (packet, t_emit, edge))
            except DeliveryError as exc:
                self.on_fatal(str(exc))

        def on_message(msg: Any) -> None:
            packet = to_packet(msg)
            if packet is not None:
                deliver(packet, clock())

        def on_message_with_info(msg: Any, info: Any) -> None:
            packet = to_packet(msg)
            if packet is not None:
                t = clock()
                sent = info.get('source_timestamp') if info else None
                deliver(packet, t - max(now_ns() - sent, 0) if sent else t)

        # With message info the latency of a cross-process edge includes the DDS transit (source
        # timestamp); the EventsExecutor of rclpy 7.1 cannot call such callbacks (SystemError), so
        # there it counts from the moment the message was received.
        callback = on_message_with_info if self.message_info else on_message

        def switch(on: bool) -> None:
            key = id(sub)
            current = self._bridges.get(key)
            if on and current is None:
                self._bridges[key] = self.create_subscription(msg_cls, topic, callback, qos)
            elif not on and current is not None:
                del self._bridges[key]
                self.destroy_subscription(current)

        return switch

    # -- parameters -----------------------------------------------------------------------------
    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        """As rclpy's, except that a set which changes nothing is a success that touches nothing.

        `ros2 param load` of a `ros2 param dump` sets every parameter, read-only ones included (the
        plugin's fixed parameters, the wiring, rclpy's `start_type_description_service`), with
        values rclpy re-read from YAML (ros_params.as_reloaded): setting a parameter to the value it
        has is accepted, so the round trip gives the same node.
        """
        changing = [p for p in parameter_list if not unchanged_parameter(self, p)]
        if not changing:
            return SetParametersResult(successful=True, reason='unchanged')
        return super().set_parameters_atomically(changing)

    def _check_params(self, params: list[Parameter]) -> Any:
        if self._redeclaring:
            return SetParametersResult(successful=True)
        result, _ = check_change(self._schema, params)
        return result

    def _params_changed(self, params: list[Parameter]) -> None:
        if self._redeclaring:
            return
        _, changed = check_change(self._schema, params)
        if not changed:
            return

        def apply() -> None:
            self.host.apply_params(changed)

        if self.source_worker is not None and not self.source_worker.done.is_set():
            self.source_worker.post(apply)
        elif self.input_worker is not None:
            self.mailbox.post(apply)
        else:
            try:
                apply()
            except PluginError as exc:
                self.on_warning(str(exc))

    # -- hot-replace ----------------------------------------------------------------------------
    def replace(self, spec: NodeLoadSpec) -> str:
        """Make the node what `spec` says, in place (runtime/hot_replace.py): the same plugin and
        parameters with other input topics -> rewire only (instance and state stay); only dynamic
        parameters changed -> set them (like `ros2 param set`); else a new instance is swapped in
        between two packets, then rewired. Inboxes, publishers and counters stay. Returns what was
        done, one line. Raises ReplaceRefused with the reason; then nothing changed."""
        name = self.get_name()
        problems = wiring_problems(self.spec, spec)
        if problems:
            raise ReplaceRefused(f"node '{name}': replace refused: {'; '.join(problems)}")
        if spec.plugin_cls is self.spec.plugin_cls:
            schema = spec.plugin_cls.param_schema()
            changed = {k for k in schema if spec.params.get(k) != self.host.params.get(k)}
            if all(schema[k].dynamic for k in changed):
                if changed:
                    values = {
                        k: float(v) if schema[k].type is float and isinstance(v, int) else v
                        for k, v in ((k, ros_param_value(spec.params[k])) for k in changed)
                    }
                    result = self.set_parameters_atomically(
                        [Parameter(k, value=v) for k, v in sorted(values.items())]
                    )
                    if not result.successful:
                        raise ReplaceRefused(f"node '{name}': parameters refused: {result.reason}")
                rewired = self.rewire(spec)
                self.spec = spec
                return '; '.join([*(f'set {k}' for k in sorted(changed)), *rewired]) or 'unchanged'
        pause = self._swap(spec)
        rewired = self.rewire(spec)
        return '; '.join([f'new instance of {spec.plugin_ref} (pause {pause * 1e3:.2f} ms)', *rewired])

    def _swap(self, spec: NodeLoadSpec) -> float:
        try:
            replacement = self.host.prepare_replacement(spec.plugin_cls, spec.params)
        except PluginError as exc:
            raise ReplaceRefused(f'{exc}; the running instance stays') from None
        try:
            job = run_swap(self, replacement)
        except ReplaceRefused:
            self._close_quietly(replacement.plugin)
            raise
        if job.error is not None:
            self._close_quietly(replacement.plugin)
            raise ReplaceRefused(f'{job.error}; the running instance stays')
        self.cost.reset()  # the new instance may be slower: no inline runs until measured again
        self.restarts.reset(spec.restart)
        old_schema = self.spec.plugin_cls.param_schema()
        self.spec = spec
        self._schema = _full_schema(spec)
        self._redeclaring = True
        try:
            given = {k: v for k, v in spec.ros_params.items() if not is_reserved_param(k)}
            redeclare_plugin_parameters(self, old_schema, spec.plugin_cls.param_schema(), spec.params, given)
        finally:
            self._redeclaring = False
        self.replaced_total += 1
        self.host.metrics.count('replaced_total')
        self._close_quietly(job.old)
        return job.pause_ns / 1e9

    def _close_quietly(self, plugin: Any) -> None:
        if plugin is None:
            return
        try:
            plugin.close()
        except Exception as exc:
            self.on_warning(f"node '{self.get_name()}': close() of a replaced instance failed: {exc}")

    # -- life cycle -----------------------------------------------------------------------------
    def start(self, on_source_done: Callable[[SourceWorker], None] | None = None) -> None:
        if self.started:
            return
        self.started = True
        if self.mailbox.inboxes:
            self.mailbox.post(self._on_start)  # on the node's own thread, before its first packet
            self.input_worker = InputWorker(
                self.host, self.mailbox, self.on_fatal, self.cost, on_error=self.restarts.failed
            )
            self.input_worker.start()
        elif self.spec.role is not Role.SOURCE:
            self._on_start()  # no inputs, no worker thread: nothing else calls this plugin
        if self.spec.role is Role.SOURCE:
            self.source_worker = SourceWorker(self.host, self.budget, self.on_fatal, on_source_done)
            self.source_worker.start()

    def _post_to_plugin(self, call: Callable[[], None]) -> None:
        """Run `call` on the plugin's own thread (answers of remote parameter calls)."""
        def run() -> None:
            try:
                call()
            except Exception as exc:  # the plugin's callback raised: its error, not the container's
                self.on_warning(f"node '{self.get_name()}': {type(exc).__name__}: {exc}")

        if self.input_worker is not None:
            self.mailbox.post(run)
        else:
            run()  # no worker thread: nothing else calls this plugin

    def _on_start(self) -> None:
        try:
            self.host.start()
        except PluginError as exc:
            self.on_warning(str(exc))
        except DeliveryError as exc:
            self.on_fatal(str(exc))

    def refresh_outputs(self) -> None:
        for port in self.outputs:
            port.refresh()

    def stop_sources(self) -> None:
        """Sources stop pulling (their plugins see stop_event); inputs keep draining."""
        if self.source_worker is not None:
            self.host.stop_event.set()

    @property
    def source_done(self) -> bool:
        return self.source_worker is None or self.source_worker.done.is_set()

    @property
    def idle(self) -> bool:
        return self.mailbox.idle

    def close_inputs(self, discard: bool = False) -> int:
        """Accept no more packets; the worker drains what waits (or it is discarded and counted)."""
        self.host.stop_event.set()
        return self.mailbox.close(discard)

    def join(self, timeout: float) -> bool:
        """Wait for the node's threads; False if one is still busy (stuck in plugin code)."""
        deadline = time.monotonic() + timeout
        ok = True
        for worker in (self.source_worker, self.input_worker):
            if worker is not None and worker.thread.is_alive():
                worker.thread.join(max(0.0, deadline - time.monotonic()))
                ok = ok and not worker.thread.is_alive()
        return ok

    def close(self) -> bool:
        """The plugin's close(); raises PluginError naming the node. False: deferred, because plugin
        code of this node still runs (it closes when that call returns, PluginHost.close)."""
        return self.host.close()

    def _teardown(self) -> None:
        for port in self.outputs:
            self.bus.detach_publisher(port)
        for sub in self.subscribers:
            self.bus.unsubscribe(sub)
            sub.bridge = None
        for subscription in self._bridges.values():
            self.destroy_subscription(subscription)
        self._bridges.clear()

    def destroy(self) -> None:
        """Leave the bus and ROS (after close())."""
        self._teardown()
        self.destroy_node()

    # -- metrics --------------------------------------------------------------------------------
    def bridged_publishers(self) -> dict[str, int]:
        """topic -> publishers matched by this node's DDS subscription of it (inputs from outside)."""
        topic_of = {id(sub): sub.topic for sub in self.subscribers}
        out: dict[str, int] = {}
        for key, subscription in list(self._bridges.items()):
            topic = topic_of.get(key)
            if topic is not None:
                out[topic] = max(out.get(topic, 0), subscription.get_publisher_count())
        return out

    def inbox_dropped(self) -> int:
        return sum(inbox.dropped_total for inbox in self.mailbox.inboxes.values())

    def edge_rows(self) -> list[tuple[EdgeMetrics, int, int]]:
        return [(s.edge, len(s.inbox), s.inbox.depth_max) for s in self.subscribers]
