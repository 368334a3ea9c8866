"""A plugin as a real rclpy node: name, namespace, parameters, logger, topics — and its threads.

The container creates one PluginNode per load request. To ROS it is an ordinary node: `ros2 node
list` shows it, `ros2 param` describes and changes its parameters, its output ports are publishers
on `~/<port>` (remappable), its inputs are subscriptions when their topic comes from outside the
container. To the plugin it is invisible: the plugin only sees its PluginContext (plugin_host.py).

A managed (lifecycle) node, as rclcpp_lifecycle's and rclpy.lifecycle's: `~/change_state`,
`~/get_state`, `~/get_available_states`, `~/get_available_transitions`, `~/transition_event`, so
`ros2 lifecycle get|set|list` and lifecycle managers drive it (docs/runtime.md, "Managed nodes"):
    created       ROS node, parameters declared and checked           -> unconfigured
    configure     plugin setup() (resources opened), ports wired      -> inactive
    activate      worker/source threads run the plugin                -> active
    deactivate    plugin calls pause between two packets; inputs keep
                  arriving into the inboxes (their overflow policy applies), a source's produce()
                  stays where it is: nothing is lost that the policy keeps  -> inactive
    cleanup       threads end, what waits is dropped and counted, plugin close(), ports unwired
                                                                       -> unconfigured
    shutdown      from active: sources stop and inputs drain (bounded) first; then as cleanup
                                                                       -> finalized
A failed transition leaves the node where it was (configure: close() ran, nothing wired) and
`last_transition_error` says why in one line naming the node; an invalid one (activate while
unconfigured) is refused with success=false, as rclcpp does, and changes nothing.

The container's own teardown (stop_sources() -> close_inputs() -> join() -> close() ->
destroy()) works in every state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLInvalidROSArgsError
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.lifecycle import LifecycleNode, LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.logging import LoggingSeverity
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import DEFAULT_CODEC
from schnitzel_stream_ros.graph.model import Reliability
from schnitzel_stream_ros.graph.wiring import is_reserved_param, ros_param_value
from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Role
from schnitzel_stream_ros.runtime.batch_mark import META_KEY as BATCH_KEY
from schnitzel_stream_ros.runtime.batch_mark import BatchAssembler, parse_mark, strip_mark
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
from schnitzel_stream_ros.runtime.run_gate import RunGate
from schnitzel_stream_ros.runtime.workers import (
    CostMeter,
    DrainPacer,
    EmissionBudget,
    InputWorker,
    SourceWorker,
    Ticker,
    run_inline,
)
from schnitzel_stream_ros.shm_lane.lane import LaneSettings
from schnitzel_stream_ros.shm_lane.ros_glue import (
    LaneOutput,
    image_topic,
    lane_bridge,
    lane_settings,
)
from schnitzel_stream_ros.shm_lane.ros_glue import input_param as lane_input_param
from schnitzel_stream_ros.shm_lane.ros_glue import output_param as lane_output_param

Notify = Callable[[str], None]
#: What `deactivate` waits for a plugin call in progress (a source waiting for its next frame).
PAUSE_TIMEOUT_SEC = 2.0
#: What `shutdown` of an active node gives its inputs to drain before they are dropped and counted.
SHUTDOWN_DRAIN_SEC = 2.0
SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


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


#: Most messages one callback of a Python executor takes from its subscription (take_waiting):
#: bounded, so that one busy input never keeps the executor from the others and from services
#: for long (a small packet costs ~10 us here, a wake-up of the `single` executor ~150 us).
TAKES_PER_CALLBACK = 32


def take_waiting(subscription: Any, receive: Callable[[Any, Any], None]) -> int:
    """Take the messages that already wait in `subscription` (at most TAKES_PER_CALLBACK - 1) and
    give each with its message info to `receive`, as the executor would have one by one.

    Called from the subscription's own callback, so the executor takes nothing from it meanwhile
    (its callback group is busy); what is left is taken at the next wake-up. Returns how many."""
    handle = subscription.handle
    msg_type, raw = subscription.msg_type, subscription.raw
    taken = 0
    while taken < TAKES_PER_CALLBACK - 1:
        try:
            with handle:
                msg_info = handle.take_message(msg_type, raw)
        except InvalidHandle:  # destroyed meanwhile by another thread (an unload, a rewire)
            return taken
        if msg_info is None:
            return taken
        taken += 1
        receive(msg_info[0], msg_info[1])
    return taken


def _payload_as(msg_cls: type) -> Callable[[StreamPacket], Any]:
    """Ports of other ROS types publish the payload as is (docs/wiring.md), if it is of that type."""

    def payload(packet: StreamPacket) -> Any:
        if not isinstance(packet.payload, msg_cls):
            raise TypeError(
                f'payload is {type(packet.payload).__name__}, the port publishes {msg_cls.__name__}'
            )
        return packet.payload

    return payload


class PluginNode(LifecycleNode):
    """One graph node hosted in our container; a managed node (see the module's docstring)."""

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
        lifecycle_services: bool = True,
        pacer: DrainPacer | None = None,
    ) -> None:
        cli_args = ['--ros-args']
        for rule in spec.remap_rules:
            cli_args += ['-r', rule]
        try:  # as rclcpp_components: the request's rules only, never the container's command line
            LifecycleNode.__init__(
                self,
                spec.node_name,
                namespace=spec.namespace,
                context=context,
                cli_args=cli_args,
                use_global_arguments=False,
                # without: the same state machine, driven by the container only (no services, no events)
                enable_communication_interface=lifecycle_services,
            )
        except RCLInvalidROSArgsError as exc:  # rcl's own verdict on a remap rule (e.g. wildcards)
            reason = str(exc).split(', at ')[0].removeprefix('Failed to parse ROS arguments: ')
            raise LoadError(f"node '{spec.node_name}': remap_rules refused by ROS: {reason}") from None
        self.spec = spec
        self.bus = bus
        self.on_fatal = on_fatal
        self.on_warning = on_warning
        self.budget = budget
        self.pacer = pacer
        self.message_info = message_info
        self.inline = inline
        self.outputs: list[OutputPort] = []
        self.subscribers: list[LocalSubscriber] = []
        self.lanes: list[LaneOutput] = []  # output ports on a frame lane (shm_lane/)
        self._bridges: dict[int, Any] = {}  # id(LocalSubscriber) -> rclpy Subscription while bridged
        self._assemblers: dict[int, BatchAssembler] = {}  # id(LocalSubscriber) -> its DDS batches
        self._decode_warned = False
        self._redeclaring = False  # a hot-replace re-declares parameters: checks stand aside
        self.replaced_total = 0
        self.configured = False  # plugin set up, ports wired (inactive or active)
        self.last_transition_error = ''
        self._transition_lock = threading.RLock()
        self._dynamic_changes: dict[str, Any] = {}  # `ros2 param set` values, kept over a cleanup
        self._fresh_instance()
        try:
            if spec.log_level:
                self.get_logger().set_level(LoggingSeverity(spec.log_level))
            schema = self._schema = _full_schema(spec)
            given = {k: v for k, v in spec.ros_params.items() if k in schema or is_reserved_param(k)}
            declare_parameters(self, schema, spec.params, given)
            self.host.parameters = RosParameters(self, self._post_to_plugin)
            self.add_on_set_parameters_callback(self._check_params)
            self.add_post_set_parameters_callback(self._params_changed)
        except ValueError as exc:
            message = str(exc)
            if not message.startswith(f"node '{spec.node_name}'"):
                message = f"node '{spec.node_name}': {message}"
            self.destroy()
            raise LoadError(message) from exc
        except BaseException:
            self.destroy()
            raise

    def _fresh_instance(self) -> None:
        """What one configure..cleanup cycle uses: host (no plugin yet), mailbox, gate, threads."""
        spec = self.spec
        self.host = PluginHost(
            spec.node_name,
            spec.plugin_cls,
            {**spec.params, **self._dynamic_changes},
            is_source=spec.role is Role.SOURCE,
            is_sink=spec.role is Role.SINK,
            logger=self.get_logger(),
            state=spec.state,
            state_node=spec.full_name,
            blackboard=spec.blackboard,
        )
        self.mailbox = Mailbox(spec.node_name)
        self.restarts = NodeRestarts(self.host, self.mailbox, spec.restart)
        self.cost = CostMeter(self.inline)  # cheap nodes may run inline in DDS callbacks (unless isolated)
        self.gate = RunGate(self.mailbox.lock)  # shared: see Mailbox.try_claim
        self.input_worker: InputWorker | None = None
        self.source_worker: SourceWorker | None = None
        self.ticker: Ticker | None = None
        self.workers_started = False

    # -- wiring ---------------------------------------------------------------------------------
    def _wire_outputs(self) -> None:
        for name, wiring in self.spec.outputs.items():
            msg_cls = wiring.msg_cls or StreamPacketMsg
            publisher = self.create_publisher(
                msg_cls, wiring.topic or f'~/{name}', qos_profile(wiring.reliability, wiring.depth)
            )
            topic = self.bus.topic(publisher.topic_name)
            port = OutputPort(
                self.get_name(),
                name,
                topic,
                publisher,
                DEFAULT_CODEC.encode if wiring.msg_cls is None else _payload_as(wiring.msg_cls),
                self.bus.transport,
                self.on_warning,
                marks_batches=wiring.msg_cls is None,
            )
            self.outputs.append(port)
            self.host.connect(name, self._lane_output(name, port, wiring))
            self.bus.attach_publisher(port)

    def _lane_output(self, name: str, port: OutputPort, wiring: Any) -> Any:
        """The port itself, or the port wrapped by a frame lane when the graph put it on one."""
        settings = lane_settings(self.spec.ros_params, lane_output_param(name))
        if settings is None or wiring.msg_cls is not None:
            return port
        from sensor_msgs.msg import Image

        from schnitzel_stream_ros.codec.image import frame_to_image_msg

        image_pub = self.create_publisher(Image, image_topic(port.topic.name),
                                          qos_profile(wiring.reliability, wiring.depth))
        lane = LaneOutput(port, settings, image_pub, lambda packet: frame_to_image_msg(packet.payload),
                          self.on_warning)
        self.lanes.append(lane)
        return lane

    def _wire_inputs(self) -> None:
        for name, wiring in self.spec.inputs.items():
            inbox = Inbox(f'{self.get_name()}.{name}', wiring.inbox_max, wiring.overflow, wiring.drop_weights)
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
        sub.bridge = self._bridge_switch(sub, wiring, topic,
                                         lane_settings(self.spec.ros_params, lane_input_param(name)))
        self.subscribers.append(sub)
        if not self.bus.subscribe(sub):
            sub.bridge(True)

    def _unsubscribe(self, sub: LocalSubscriber) -> None:
        self.bus.unsubscribe(sub)
        if sub.bridge is not None:
            sub.bridge(False)
        sub.bridge = None
        assembler = self._assemblers.pop(id(sub), None)
        if assembler is not None:
            assembler.close()
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

    def _bridge_switch(self, sub: LocalSubscriber, wiring: Any, topic: str,
                       lane: LaneSettings | None = None) -> Callable[[bool], None]:
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
        # StreamPackets are taken serialized and read from their bytes: no rclpy message object in
        # between, the larger part of a cross-process packet's receiving cost (codec/serialized_packet.py)
        decode = DEFAULT_CODEC.decode_serialized

        mailbox, token, edge, port = sub.mailbox, sub.token, sub.edge, sub.port
        cost = self.cost
        on_error = self.restarts.failed

        def undecodable(exc: Exception) -> None:
            transport.decode_failed_total += 1
            if not self._decode_warned:
                self._decode_warned = True
                why = str(exc) if isinstance(exc, TypeError | ValueError) else f'{type(exc).__name__}: {exc}'
                self.on_warning(
                    f"node '{self.get_name()}': input '{port}': undecodable message on {sub.topic}: {why}"
                )

        def to_packet(msg: Any) -> StreamPacket | None:
            if not is_packet:
                return StreamPacket.new(sub.rewrap_kind or Kind.RAW, sub.topic, msg)
            try:
                return decode(msg)
            except Exception as exc:  # whatever a hostile message makes the decoder raise: counted
                undecodable(exc)
                return None

        host, gate, on_fatal = self.host, self.gate, self.on_fatal
        try_claim, release, offer_nowait = mailbox.try_claim, mailbox.release, mailbox.offer_nowait

        def deliver(packet: StreamPacket, t_emit: int) -> None:
            # a cheap idle active node runs right here: no hand-over (Mailbox.try_claim enters the
            # gate too, which shares the mailbox's lock: one lock round trip each way)
            if cost.cheap and self.input_worker is not None and try_claim(gate):
                try:
                    run_inline(host, cost, packet, port, t_emit, edge, on_fatal, on_error)
                finally:
                    release(gate)
                return
            try:  # never waits: this thread serves every cross-process input of the container
                offer_nowait(token, (packet, t_emit, edge))
            except DeliveryError as exc:
                on_fatal(str(exc))

        put_many_nowait = mailbox.put_many_nowait

        def deliver_batch(items: list[Any]) -> None:  # outputs of one remote call, together
            try:
                put_many_nowait(token, items)
            except DeliveryError as exc:
                self.on_fatal(str(exc))

        assembler = self._assemblers[id(sub)] = BatchAssembler(deliver_batch, transport)

        def deliver_marked(packet: StreamPacket, t_emit: int) -> None:
            mark = parse_mark(packet.meta[BATCH_KEY])
            packet = strip_mark(packet)
            if mark is None:
                transport.batch_marks_invalid_total += 1
                deliver(packet, t_emit)
            else:
                assembler.add((packet, t_emit, edge), mark)

        def on_message(msg: Any) -> None:
            # decoding inlined (no to_packet call): this runs for every packet that comes in from
            # another process, on the one thread that serves them all
            transport.dds_received_total += 1
            if is_packet:
                try:
                    packet = decode(msg)
                except Exception as exc:  # an exception out of here would end the executor's thread
                    undecodable(exc)
                    return
                if BATCH_KEY in packet.meta:
                    deliver_marked(packet, clock())
                    return
            else:
                packet = StreamPacket.new(sub.rewrap_kind or Kind.RAW, sub.topic, msg)
            deliver(packet, clock())

        def receive_with_info(msg: Any, info: Any) -> None:
            transport.dds_received_total += 1
            packet = to_packet(msg)
            if packet is not None:
                t = clock()
                sent = info.get('source_timestamp') if info else None
                t_emit = t - max(now_ns() - sent, 0) if sent else t
                if is_packet and BATCH_KEY in packet.meta:
                    deliver_marked(packet, t_emit)
                else:
                    deliver(packet, t_emit)

        bridged: list[Any] = [None]  # the rclpy subscription while the bridge is on

        def on_message_with_info(msg: Any, info: Any) -> None:
            receive_with_info(msg, info)
            subscription = bridged[0]
            if subscription is not None:
                take_waiting(subscription, receive_with_info)

        # With message info the latency of a cross-process edge includes the DDS transit (source
        # timestamp); the EventsExecutor of rclpy 7.1 cannot call such callbacks (SystemError), so
        # there it counts from the moment the message was received. With message info means a
        # Python executor (single, multi), whose every wake-up costs far more than a message:
        # the callback takes what else waits in the subscription right away (take_waiting).
        callback = on_message_with_info if self.message_info else on_message
        if lane is not None and wiring.msg_cls is None:  # frames from another container: shared memory

            def from_lane(packet: StreamPacket, t_emit: int) -> None:
                transport.lane_received_total += 1
                deliver(packet, t_emit)

            def missed(count: int) -> None:  # keep-freshest: the lane overwrote frames not yet taken
                transport.lane_missed_total += count

            def copied() -> None:  # the reader held its lease limit: this frame was copied out
                transport.lane_copied_total += 1

            return lane_bridge(sub.topic, lane, from_lane, self.on_warning, f'{self.get_name()}.{port}',
                               missed, copied)

        def switch(on: bool) -> None:
            key = id(sub)
            current = self._bridges.get(key)
            if on and current is None:
                bridged[0] = self._bridges[key] = self.create_subscription(
                    msg_cls, topic, callback, qos, raw=is_packet
                )
            elif not on and current is not None:
                bridged[0] = None
                del self._bridges[key]
                self.destroy_subscription(current)
                assembler.flush()  # what was held goes in: those packets had arrived

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
        self._dynamic_changes.update(changed)

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
        if not self.configured:
            raise ReplaceRefused(
                f"node '{name}': replace refused: it is {self.lifecycle_state}; configure it first"
            )
        if self.workers_started and not self.gate.is_open:
            raise ReplaceRefused(f"node '{name}': replace refused: it is inactive; activate it first")
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

    # -- life cycle (managed node) ---------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        """'unconfigured', 'inactive', 'active', 'finalized' (or a transition state meanwhile)."""
        return self._state_machine.current_state[1]

    @property
    def started(self) -> bool:
        """Active: its plugin runs (what health and the container mean by a started node)."""
        return self.gate.is_open

    def _LifecycleNodeMixin__change_state(self, transition_id: int) -> TransitionCallbackReturn:  # noqa: N802
        """Every transition, from `~/change_state` or the container, goes through here.

        This overrides rclpy's private LifecycleNodeMixin.__change_state (name-mangled) for two
        reasons: one transition at a time (the service and the container's start gate run on
        different threads), and an invalid transition is refused like rclcpp refuses it
        (success=false). rclpy 7 lets rcl's error escape the service callback instead, which
        ends the executor serving every node of the container.
        """
        with self._transition_lock:
            machine = self._state_machine
            available = {t[0]: t[1] for t in machine.available_transitions}
            if transition_id not in available:
                labels = sorted(set(available.values()))
                self.last_transition_error = (
                    f"node '{self.get_name()}': transition {transition_id} is not available in state "
                    f"'{self.lifecycle_state}' (available: {', '.join(labels) or 'none'})"
                )
                self.get_logger().warning(self.last_transition_error)
                return FAILURE
            return LifecycleNodeMixin._LifecycleNodeMixin__change_state(self, transition_id)

    def change_state(self, label: str) -> tuple[bool, str]:
        """Trigger a transition by its label (configure, activate, ...): (success, reason)."""
        with self._transition_lock:
            try:
                transition_id = self._state_machine.get_transition_by_label(label)
            except Exception:
                labels = sorted({t[1] for t in self._state_machine.available_transitions})
                reason = (
                    f"node '{self.get_name()}': transition '{label}' is not available in state "
                    f"'{self.lifecycle_state}' (available: {', '.join(labels) or 'none'})"
                )
                self.last_transition_error = reason
                return False, reason
            result = self._LifecycleNodeMixin__change_state(transition_id)
            return result == SUCCESS, '' if result == SUCCESS else self.last_transition_error

    def _transition(self, verb: str, action: Callable[[], None]) -> TransitionCallbackReturn:
        """Run one transition's work; a failure is logged in one line naming the node and answers
        FAILURE (rclpy then leaves the node in the state it was in)."""
        try:
            action()
        except Exception as exc:
            name = self.get_name()
            text = str(exc) if str(exc).startswith(f"node '{name}'") else f'{type(exc).__name__}: {exc}'
            self.last_transition_error = (
                text if text.startswith(f"node '{name}'") else f"node '{name}': {verb} failed: {text}"
            )
            self.get_logger().error(self.last_transition_error)
            return FAILURE
        self.last_transition_error = ''
        self.get_logger().debug(f'{verb}: now {self._state_after(verb)}')
        return SUCCESS

    @staticmethod
    def _state_after(verb: str) -> str:
        return {'configure': 'inactive', 'activate': 'active', 'deactivate': 'inactive'}.get(
            verb, 'unconfigured' if verb == 'cleanup' else 'finalized'
        )

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition('configure', self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition('activate', self._activate)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition('deactivate', self._deactivate)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition('cleanup', self._release)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition('shutdown', lambda: self._release(drain=state.label == 'active'))

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised past _transition (a bug): release everything, back to unconfigured."""
        return self._transition('error processing', self._release)

    def _configure(self) -> None:
        """Plugin setup() and wiring; on failure close() runs and nothing stays wired."""
        if self.host.closed or self.host.plugin is not None:  # configured before and cleaned up
            self._fresh_instance()
        try:
            self.host.setup()
            self._wire_outputs()
            self._wire_inputs()
        except BaseException as exc:
            message = str(exc)
            try:
                self.host.close()  # close() always runs, also when setup() failed half-way
            except PluginError as close_exc:
                message += f'; {close_exc}'
            self._unwire()
            self._fresh_instance()
            if isinstance(exc, PluginError | ValueError):
                raise PluginError(message) from exc
            raise
        self.configured = True

    def _activate(self, on_source_done: Callable[[SourceWorker], None] | None = None) -> None:
        first = not self.workers_started  # the first activation of this configured instance
        if first:
            self.workers_started = True
            if self.mailbox.inboxes:
                self.mailbox.post(self._on_start)  # on the node's own thread, before its first packet
                self.input_worker = InputWorker(
                    self.host,
                    self.mailbox,
                    self.on_fatal,
                    self.cost,
                    on_error=self.restarts.failed,
                    gate=self.gate,
                )
                period = self.spec.plugin_cls.tick_period(self.host.params)
                if period is not None and period > 0:
                    self.ticker = Ticker(self.host, self.mailbox.post, period)
            if self.spec.role is Role.SOURCE:
                self.source_worker = SourceWorker(
                    self.host, self.budget, self.on_fatal, on_source_done, gate=self.gate, pacer=self.pacer
                )
        self.refresh_outputs()
        self.gate.open()
        if first and not self.mailbox.inboxes and self.spec.role is not Role.SOURCE:
            self._on_start()  # no inputs, no worker thread: nothing else calls this plugin
        for worker in (self.input_worker, self.source_worker, self.ticker):
            if worker is not None and worker.thread.ident is None:
                worker.start()

    def _deactivate(self) -> None:
        if not self.gate.pause(PAUSE_TIMEOUT_SEC):
            self.on_warning(
                f"node '{self.get_name()}': deactivated while a plugin call of it still runs "
                f'(>{PAUSE_TIMEOUT_SEC:.0f} s); it pauses when that call returns'
            )

    def _release(self, drain: bool = False) -> None:
        """cleanup/shutdown: threads end, the plugin closes, ports are unwired. `drain` (shutdown of
        an active node): sources stop first and the inputs get SHUTDOWN_DRAIN_SEC to drain."""
        if not self.configured:
            return
        name = self.get_name()
        if drain and self.gate.is_open:
            self.stop_sources()
            if self.source_worker is not None:
                self.source_worker.thread.join(SHUTDOWN_DRAIN_SEC)
            self.mailbox.close()
            self.join(SHUTDOWN_DRAIN_SEC)
        dropped = self.close_inputs(discard=True)
        if dropped:
            self.on_warning(f"node '{name}': {dropped} packets waiting in its inboxes dropped at release")
        if not self.join(PAUSE_TIMEOUT_SEC):
            self.on_warning(f"node '{name}': its thread did not stop at release (stuck in plugin code)")
        try:
            if not self.close():
                self.on_warning(f"node '{name}': close() deferred: it runs when the stuck call returns")
        finally:
            self._unwire()
            self.configured = False

    def _unwire(self) -> None:
        """Leave the bus and destroy the ports' publishers and subscriptions (the node stays)."""
        self._teardown()
        for port in self.outputs:
            self.destroy_publisher(port.publisher)
        self.outputs = []
        self.subscribers = []

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
            self.gate.wake()  # an inactive source waits at its gate: it ends now

    @property
    def source_done(self) -> bool:
        """A source that has ended (or was shut down). One that never ran — unconfigured, or not
        activated yet — has not: a run of a graph whose nodes wait for their manager goes on."""
        if self.spec.role is not Role.SOURCE:
            return True
        if self.source_worker is None:
            return self.lifecycle_state == 'finalized'
        return self.source_worker.done.is_set()

    @property
    def idle(self) -> bool:
        return self.mailbox.idle

    def close_inputs(self, discard: bool = False) -> int:
        """Accept no more packets; the worker drains what waits (or it is discarded and counted,
        and an inactive node's worker drops the packet it holds and ends)."""
        self.host.stop_event.set()
        dropped = self.mailbox.close(discard)
        if discard:
            self.gate.close()
        return dropped

    def join(self, timeout: float) -> bool:
        """Wait for the node's threads; False if one is still busy (stuck in plugin code)."""
        deadline = time.monotonic() + timeout
        ok = True
        for worker in (self.source_worker, self.input_worker, self.ticker):
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
            if getattr(sub.bridge, 'state', None) is not None:
                sub.bridge(False)  # a frame lane's reader thread ends here
            sub.bridge = None
        for subscription in self._bridges.values():
            self.destroy_subscription(subscription)
        self._bridges.clear()
        for lane in self.lanes:
            lane.close()
            self.destroy_publisher(lane.image_publisher)
        self.lanes = []
        for assembler in self._assemblers.values():
            assembler.close()
        self._assemblers.clear()

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
        for sub in self.subscribers:  # inputs on a frame lane: its producers count as matched publishers
            reader = getattr(sub.bridge, 'state', {}).get('reader')
            if reader is not None:
                out[sub.topic] = max(out.get(sub.topic, 0), reader.publishers())
        return out

    def inbox_dropped(self) -> int:
        return sum(inbox.dropped_total for inbox in self.mailbox.inboxes.values())

    def edge_rows(self) -> list[tuple[EdgeMetrics, int, int]]:
        return [(s.edge, len(s.inbox), s.inbox.depth_max) for s in self.subscribers]
