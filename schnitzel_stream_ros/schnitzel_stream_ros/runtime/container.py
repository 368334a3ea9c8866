"""Our component container: hosts many plugin nodes in one process, loads and unloads them at run time.

rclpy has no component container; this is ours. It serves the standard composition services, so
launch_ros' `ComposableNodeContainer`/`LoadComposableNodes` and `ros2 component load|list|unload`
work against it unchanged:
    ~/_container/load_node    composition_interfaces/srv/LoadNode
    ~/_container/unload_node  composition_interfaces/srv/UnloadNode
    ~/_container/list_nodes   composition_interfaces/srv/ListNodes
The types come from the real `composition_interfaces` package of a ROS install, or — only where it
is missing (pip-wheel ROS) — from the identical stand-in that scripts/bootstrap builds from
fallback/. The import is the same either way.

A failing load (bad plugin, bad parameters, setup() raising) answers success=false with a one-line
error and changes nothing; the container keeps serving. The allowlist is checked again here, before
any import, whatever the caller validated.

Run control for `schnitzel-stream run` (not part of the composition standard; std_srvs/Trigger,
answers in `message`): `~/_schnitzel/start` starts loaded nodes of a container started with
`--paused`, `~/_schnitzel/stop_sources`, `~/_schnitzel/stop` (drain, close every plugin; answers the
final snapshot as JSON) and `~/_schnitzel/report` (snapshot as JSON, observability/snapshot.py).

Health: `/diagnostics` and `~/edge_statistics` (runtime/diagnostics.py), every
`diagnostics_period_sec` (container parameter, default 1 s, 0 = off).

Managed nodes (runtime/ros_node.py): every plugin node is a lifecycle node. By default a load
runs it straight through `configure` (a failing setup() refuses the load, as before) and, once the
container runs (not `--paused`, or after `~/_schnitzel/start`: the start gate), `activate` — today's
behaviour, the lifecycle only made visible. With the container parameter `autostart:=false`, or the
LoadNode extra argument `autostart:=false` for one node, a node stays `unconfigured` after its load
and whoever manages it (`ros2 lifecycle set`, a lifecycle manager) brings it up; the start gate
leaves such nodes alone.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from composition_interfaces.srv import ListNodes, LoadNode, UnloadNode
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from std_srvs.srv import Trigger

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.wiring import AUTOSTART_ARG, PACKAGE_NAME, LoadRequest
from schnitzel_stream_ros.memory import PeriodicTrim, release_free_heap
from schnitzel_stream_ros.observability.bounded import MAX_MESSAGES, BoundedMessages
from schnitzel_stream_ros.observability.health import DEFAULT_PERIOD_SEC, HealthRules
from schnitzel_stream_ros.observability.snapshot import runtime_snapshot
from schnitzel_stream_ros.runtime.bus import Bus
from schnitzel_stream_ros.runtime.diagnostics import DiagnosticsPublisher
from schnitzel_stream_ros.runtime.executors import supports_message_info
from schnitzel_stream_ros.runtime.hot_replace import ReplaceRefused
from schnitzel_stream_ros.runtime.load_spec import (
    INTRA_PROCESS_ARG,
    UNKNOWN_PARAMETER_POLICIES,
    LoadError,
    parse_load_request,
)
from schnitzel_stream_ros.runtime.pace_link import PaceLink
from schnitzel_stream_ros.runtime.plugin_host import PluginError
from schnitzel_stream_ros.runtime.ros_node import PluginNode
from schnitzel_stream_ros.runtime.workers import EmissionBudget

SERVICE_PREFIX = '~/_container/'
CONTROL_PREFIX = '~/_schnitzel/'
DEFAULT_DRAIN_TIMEOUT_SEC = 2.0
_MAX_WARNINGS = MAX_MESSAGES


def _answer(response: Any, result: LoadResult) -> Any:
    """Fill a LoadNode response (load and replace answer alike)."""
    response.success = result.success
    response.error_message = result.error_message
    response.full_node_name = result.full_node_name
    response.unique_id = result.unique_id
    return response


@dataclass(frozen=True)
class LoadResult:
    """The answer of a load (the LoadNode response fields)."""

    success: bool
    error_message: str = ''
    full_node_name: str = ''
    unique_id: int = 0


class Container:
    """Plugin nodes of one process, the bus between them, and the services that manage them."""

    def __init__(
        self,
        node: Node,
        executor: Any,
        *,
        registry: PluginRegistry | None = None,
        autostart: bool = True,
        max_events: int | None = None,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_SEC,
        diagnostics_period_sec: float = DEFAULT_PERIOD_SEC,
        isolated: bool = False,
        pace_sources: bool = False,
    ) -> None:
        self.node = node
        self.isolated = isolated  # component_container_isolated: plugin code never runs inline
        self.executor = executor
        self.drain_timeout = drain_timeout  # what ~/_schnitzel/stop allows in-flight packets
        self.name = node.get_name()
        # a string (comma-separated) or a string array; declared with a value, so that every
        # parameter of the container can be read (`ros2 param dump`): an uninitialised one cannot
        allowlist = node.declare_parameter(
            'plugin_allowlist',
            '',
            ParameterDescriptor(
                description='module prefixes allowed as plugins besides the defaults and '
                '$SCHNITZEL_STREAM_PLUGIN_ALLOWLIST (comma-separated text or a string array)',
                read_only=True,
                dynamic_typing=True,
            ),
        ).value
        if isinstance(allowlist, str):
            allowlist = allowlist.split(',')
        if not isinstance(allowlist, list | tuple) or not all(isinstance(p, str) for p in allowlist):
            raise ValueError(
                f'container {node.get_fully_qualified_name()}: parameter plugin_allowlist: expected '
                f'module prefixes, got {allowlist!r}'
            )
        extra_prefixes = [p.strip() for p in allowlist]
        self.registry = registry or PluginRegistry(Allowlist.from_env(extra=[p for p in extra_prefixes if p]))
        self.diagnostics_period_sec = self._seconds_parameter(
            'diagnostics_period_sec',
            diagnostics_period_sec,
            'period of /diagnostics and ~/edge_statistics in seconds (0 = not published)',
        )
        self.diagnostics_stall_sec = self._seconds_parameter(
            'diagnostics_stall_sec',
            HealthRules.stall_sec,
            'a source without a packet this long is reported stalled (WARN), unless the plugin has '
            'its own threshold (timeout_sec, STALL_TIMEOUT_SEC); 0 = only those',
        )
        self.unknown_parameters = node.declare_parameter(
            'unknown_parameters',
            'ignore',
            ParameterDescriptor(
                description='load parameters no plugin declares: ignore (with a warning, as rclcpp '
                'ignores overrides nobody declares) or refuse the load',
                additional_constraints=f'one of {list(UNKNOWN_PARAMETER_POLICIES)}',
                read_only=True,
            ),
        ).value
        if self.unknown_parameters not in UNKNOWN_PARAMETER_POLICIES:
            raise ValueError(
                f'container {node.get_fully_qualified_name()}: parameter unknown_parameters: '
                f'{self.unknown_parameters!r} is not one of {list(UNKNOWN_PARAMETER_POLICIES)}'
            )
        self.autostart = node.declare_parameter(
            'autostart',
            True,
            ParameterDescriptor(
                description='loaded nodes are configured at once and activated when the container '
                'runs; false: they stay unconfigured for a lifecycle manager (per node: the LoadNode '
                'extra argument autostart)',
                read_only=True,
            ),
        ).value
        if not isinstance(self.autostart, bool):
            raise ValueError(
                f'container {node.get_fully_qualified_name()}: parameter autostart: expected a boolean, '
                f'got {self.autostart!r}'
            )
        self.lifecycle_services = node.declare_parameter(
            'lifecycle_services',
            True,
            ParameterDescriptor(
                description='plugin nodes serve the lifecycle services and ~/transition_event; false '
                'saves their DDS entities (about 0.6 MB and 15 ms per node) where nothing outside '
                'manages them: the container still runs configure/activate itself',
                read_only=True,
            ),
        ).value
        if not isinstance(self.lifecycle_services, bool):
            raise ValueError(
                f'container {node.get_fully_qualified_name()}: parameter lifecycle_services: expected a '
                f'boolean, got {self.lifecycle_services!r}'
            )
        if not self.lifecycle_services and not self.autostart:
            raise ValueError(
                f'container {node.get_fully_qualified_name()}: autostart:=false needs lifecycle_services: '
                'nothing could bring the nodes up'
            )
        self._intra_process_noted = False
        self.diagnostics: DiagnosticsPublisher | None = None
        self.bus = Bus()
        self.budget = EmissionBudget(max_events)
        self.started = autostart
        self.stopped = False
        # bounded, overflow counted (observability/bounded.py): a month of warnings fits
        self.fatal = BoundedMessages()
        self.warnings = BoundedMessages(_MAX_WARNINGS)
        self._nodes: dict[int, PluginNode] = {}
        self._next_id = 1
        # glibc keeps the heap a busy phase freed (a drained backlog): given back once a minute
        self.heap_trim = PeriodicTrim()
        self._heap_timer = node.create_timer(self.heap_trim.every_sec, self.heap_trim.maybe)
        self._lock = threading.RLock()
        self.log = node.get_logger()
        # config.pace_sources: sources wait for the graph to drain — this container's (workers.DrainPacer)
        # and, through the credits of runtime/pace_link.py, the containers its packets went to. Its
        # reporter thread starts last, once everything it reads exists (started before, it once died on a
        # missing attribute under load and left a run unpaced)
        self.pacer = PaceLink(node, self.bus, lambda: list(self._nodes.values()),
                              on_warning=self._on_warning) if pace_sources else None
        if self.pacer is not None:
            self.pacer.start()

    def _seconds_parameter(self, name: str, default: float, description: str) -> float:
        """A read-only container parameter in seconds, >= 0 (`-p name:=2` and `:=2.0` both work)."""
        descriptor = ParameterDescriptor(description=description, read_only=True, dynamic_typing=True)
        value = self.node.declare_parameter(name, float(default), descriptor).value
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
            raise ValueError(
                f'container {self.node.get_fully_qualified_name()}: parameter {name!r}: expected seconds '
                f'between 0 and 86400, got {value!r}'
            )
        return float(value)

    # -- services -------------------------------------------------------------------------------
    def serve(self) -> None:
        """Create the composition and run-control services and the diagnostics timer."""
        n = self.node
        if self.diagnostics_period_sec > 0:
            self.diagnostics = DiagnosticsPublisher(
                self, self.diagnostics_period_sec, HealthRules(stall_sec=self.diagnostics_stall_sec)
            )
        n.create_service(LoadNode, SERVICE_PREFIX + 'load_node', self._srv_load)
        n.create_service(UnloadNode, SERVICE_PREFIX + 'unload_node', self._srv_unload)
        n.create_service(ListNodes, SERVICE_PREFIX + 'list_nodes', self._srv_list)
        n.create_service(Trigger, CONTROL_PREFIX + 'start', self._srv_start)
        n.create_service(Trigger, CONTROL_PREFIX + 'stop_sources', self._srv_stop_sources)
        n.create_service(Trigger, CONTROL_PREFIX + 'stop', self._srv_stop)
        n.create_service(Trigger, CONTROL_PREFIX + 'report', self._srv_report)
        n.create_service(LoadNode, CONTROL_PREFIX + 'replace', self._srv_replace)

    def _srv_load(self, request: Any, response: Any) -> Any:
        try:
            params = {p.name: parameter_value_to_python(p.value) for p in request.parameters}
            # extra_arguments (launch_ros: use_intra_process_comms) are kept but change nothing:
            # in-container hand-off of objects is always on here
            extra = {p.name: parameter_value_to_python(p.value) for p in request.extra_arguments}
        except Exception as exc:  # a malformed Parameter message
            result = LoadResult(False, f"node '{request.node_name}': unreadable parameters: {exc}")
        else:
            result = self.load(
                package_name=request.package_name,
                plugin_name=request.plugin_name,
                node_name=request.node_name,
                node_namespace=request.node_namespace,
                remap_rules=list(request.remap_rules),
                parameters=params,
                log_level=request.log_level,
                extra=extra,
            )
        return _answer(response, result)

    def _srv_replace(self, request: Any, response: Any) -> Any:
        """Hot-replace (runtime/hot_replace.py): a LoadNode request naming a loaded node."""
        try:
            params = {p.name: parameter_value_to_python(p.value) for p in request.parameters}
        except Exception as exc:
            result = LoadResult(False, f"node '{request.node_name}': unreadable parameters: {exc}")
        else:
            result = self.replace(
                plugin_name=request.plugin_name,
                node_name=request.node_name,
                node_namespace=request.node_namespace,
                remap_rules=list(request.remap_rules),
                parameters=params,
                package_name=request.package_name,
            )
        return _answer(response, result)

    def _srv_unload(self, request: Any, response: Any) -> Any:
        response.success, response.error_message = self.unload(request.unique_id)
        return response

    def _srv_list(self, _request: Any, response: Any) -> Any:
        listed = self.list_nodes()
        response.full_node_names = [name for name, _ in listed]
        response.unique_ids = [uid for _, uid in listed]
        return response

    def _srv_start(self, _request: Any, response: Any) -> Any:
        self.start()
        response.success, response.message = True, f'{len(self._nodes)} nodes started'
        return response

    def _srv_stop_sources(self, _request: Any, response: Any) -> Any:
        self.stop_sources()
        response.success, response.message = True, 'sources stopping'
        return response

    def _srv_stop(self, _request: Any, response: Any) -> Any:
        self.shutdown(self.drain_timeout)
        response.success, response.message = True, json.dumps(self.snapshot())
        return response

    def _srv_report(self, _request: Any, response: Any) -> Any:
        response.success, response.message = True, json.dumps(self.snapshot())
        return response

    # -- load / unload / list -----------------------------------------------------------------
    def load_request(self, request: LoadRequest) -> LoadResult:
        """Load from the graph package's LoadRequest (the embedded runner's path)."""
        return self.load(
            package_name=request.package_name,
            plugin_name=request.plugin_name,
            node_name=request.node_name,
            node_namespace=request.node_namespace,
            remap_rules=list(request.remap_rules),
            parameters=dict(request.parameters),
            extra=dict(request.extra_arguments),
        )

    def load(
        self,
        *,
        package_name: str,
        plugin_name: str,
        node_name: str,
        node_namespace: str,
        remap_rules: list[str],
        parameters: Mapping[str, Any],
        log_level: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> LoadResult:
        """Create, set up and (when the container runs) start one plugin node."""
        with self._lock:
            if self.stopped:
                return LoadResult(False, f"node '{node_name}': container {self.name!r} is shutting down")
            try:
                spec = parse_load_request(
                    package_name=package_name,
                    plugin_name=plugin_name,
                    node_name=node_name,
                    node_namespace=node_namespace,
                    remap_rules=tuple(remap_rules),
                    parameters=parameters,
                    registry=self.registry,
                    log_level=log_level,
                    extra=extra,
                    unknown_parameters=self.unknown_parameters,
                )
                for uid, existing in self._nodes.items():
                    if existing.get_fully_qualified_name() == spec.full_name:
                        raise LoadError(
                            f"node '{node_name}': a node named {spec.full_name} is already loaded "
                            f'(unique_id {uid})'
                        )
                node = PluginNode(
                    spec,
                    context=self.node.context,
                    bus=self.bus,
                    budget=self.budget,
                    on_fatal=self._on_fatal,
                    on_warning=self._on_warning,
                    message_info=supports_message_info(self.executor),
                    inline=not self.isolated,
                    lifecycle_services=self.lifecycle_services,
                    pacer=self.pacer,
                )
                node.autostart = bool(spec.extra.get(AUTOSTART_ARG, self.autostart))
                if not node.autostart and not self.lifecycle_services:
                    node.destroy()
                    raise LoadError(
                        f"node '{spec.node_name}': extra argument autostart:=false needs the container's "
                        'lifecycle_services (false here): nothing could bring the node up'
                    )
                if node.autostart:
                    ok, reason = node.change_state('configure')
                    if not ok:
                        node.destroy()
                        raise LoadError(reason)
            except LoadError as exc:
                self.log.error(f'load refused: {exc}')
                return LoadResult(False, str(exc))
            except Exception as exc:  # a bug must not take the container down
                self.log.error(f"load of node '{node_name}' failed: {type(exc).__name__}: {exc}")
                return LoadResult(
                    False, f"node '{node_name}': internal error while loading: {type(exc).__name__}: {exc}"
                )
            uid = self._next_id
            self._next_id += 1
            self._nodes[uid] = node
            self.executor.add_node(node)
            if self.started and node.autostart:
                self._activate(node)
            full_name = node.get_fully_qualified_name()
            self.log.info(
                f'loaded {full_name} ({spec.plugin_ref}), unique_id {uid}'
                + ('' if node.autostart else ', unconfigured: its lifecycle is managed from outside')
            )
            for warning in spec.warnings:
                self.log.warning(warning)
            if INTRA_PROCESS_ARG in spec.extra and not self._intra_process_noted:
                self._intra_process_noted = True
                self.log.info(
                    f'{INTRA_PROCESS_ARG} accepted and needs nothing here: nodes in this container always '
                    'hand packets over as the object itself (zero-copy), DDS only for outside listeners'
                )
            return LoadResult(True, '', full_name, uid)

    def replace(
        self,
        *,
        plugin_name: str,
        node_name: str,
        node_namespace: str,
        remap_rules: list[str],
        parameters: Mapping[str, Any],
        package_name: str = PACKAGE_NAME,
    ) -> LoadResult:
        """Replace a loaded node's plugin instance in place (its unique_id, topics, inboxes stay)."""
        with self._lock:
            try:
                spec = parse_load_request(
                    package_name=package_name,
                    plugin_name=plugin_name,
                    node_name=node_name,
                    node_namespace=node_namespace,
                    remap_rules=tuple(remap_rules),
                    parameters=parameters,
                    registry=self.registry,
                    unknown_parameters=self.unknown_parameters,
                )
                found = [
                    (uid, n)
                    for uid, n in self._nodes.items()
                    if n.get_fully_qualified_name() == spec.full_name
                ]
                if not found:
                    raise LoadError(
                        f"node '{node_name}': no node named {spec.full_name} in container {self.name!r}"
                    )
                uid, node = found[0]
                done = node.replace(spec)
            except (LoadError, ReplaceRefused) as exc:
                self.log.error(f'replace refused: {exc}')
                return LoadResult(False, str(exc))
            except Exception as exc:  # a bug must not take the container down
                self.log.error(f"replace of node '{node_name}' failed: {type(exc).__name__}: {exc}")
                return LoadResult(False, f"node '{node_name}': internal error while replacing: {exc}")
            self.log.info(f'replaced {spec.full_name}: {done}')
            return LoadResult(True, '', spec.full_name, uid)

    def unload(self, unique_id: int) -> tuple[bool, str]:
        """Stop, drain, close and destroy one node."""
        with self._lock:
            node = self._nodes.pop(unique_id, None)
        if node is None:
            return False, f'no node with unique_id {unique_id} in container {self.name!r}'
        name = node.get_fully_qualified_name()
        node.stop_sources()
        problem = ''
        dropped = node.close_inputs(discard=not node.started)  # an inactive node does not drain
        if dropped:
            problem += f'{name}: {dropped} packets waiting in the inactive node were dropped; '
        if not node.join(DEFAULT_DRAIN_TIMEOUT_SEC):
            # what the drain did not get through is dropped and counted, so that close() never runs
            # while the node's thread still works (a slow node with a full inbox)
            dropped = node.close_inputs(discard=True)
            if dropped:
                problem += f'{name}: {dropped} packets still waiting after the drain were dropped; '
            if not node.join(DEFAULT_DRAIN_TIMEOUT_SEC):
                problem += f'{name}: threads did not stop in time; '
        try:
            node.close()
        except PluginError as exc:
            problem += str(exc)
            self._on_warning(str(exc))
        self.executor.remove_node(node)
        node.destroy()
        self.log.info(f'unloaded {name} (unique_id {unique_id})')
        return True, problem

    def plugin_nodes(self) -> list[PluginNode]:
        """The loaded nodes now (a copy: loads and unloads may go on)."""
        with self._lock:
            return list(self._nodes.values())

    def list_nodes(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(node.get_fully_qualified_name(), uid) for uid, node in self._nodes.items()]

    # -- run control ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start every loaded node (sources begin to pull); later loads start at once."""
        # what loading freed (imports, parsed configs, models' intermediate copies) goes back to the
        # OS before the long run begins, instead of staying resident for months (memory.py)
        release_free_heap()
        with self._lock:
            self.started = True
            for node in self._nodes.values():
                node.refresh_outputs()
            for node in self._nodes.values():
                if node.autostart:
                    self._activate(node)

    def _activate(self, node: PluginNode) -> None:
        """The start gate's transition for one autostart node (configured at its load)."""
        if node.lifecycle_state != 'inactive':
            return
        ok, reason = node.change_state('activate')
        if not ok:
            self._on_fatal(reason)

    def stop_sources(self) -> None:
        with self._lock:
            for node in self._nodes.values():
                node.stop_sources()

    @property
    def sources_done(self) -> bool:
        return all(node.source_done for node in list(self._nodes.values()))

    @property
    def idle(self) -> bool:
        return all(node.idle for node in list(self._nodes.values()))

    def shutdown(self, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_SEC) -> None:
        """Stop sources, let in-flight packets drain, then close every plugin (close() always runs).

        What still waits after `drain_timeout` is discarded and counted; plugin nodes stay ROS nodes
        until destroy_nodes() (after the executor stopped), so no callback races their destruction.
        """
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            nodes = list(self._nodes.values())
        deadline = time.monotonic() + drain_timeout
        for node in nodes:
            node.stop_sources()
        for node in nodes:
            if node.source_worker is not None:
                node.source_worker.thread.join(max(0.0, deadline - time.monotonic()))
        while not all(n.idle for n in nodes if n.started) and time.monotonic() < deadline:
            time.sleep(0.005)
        for node in nodes:
            if node.close_inputs(discard=True):
                self._on_warning(
                    f"node '{node.get_name()}': packets still waiting after {drain_timeout:.1f} s "
                    'of drain were dropped'
                )
        for node in nodes:
            if not node.join(max(0.2, deadline - time.monotonic())):
                self._on_warning(f"node '{node.get_name()}': its thread did not stop (stuck in plugin code)")
        for node in nodes:
            try:
                if not node.close():
                    self._on_warning(
                        f"node '{node.get_name()}': close() deferred: it runs when the stuck call returns"
                    )
            except PluginError as exc:
                self._on_warning(str(exc))

    def destroy_nodes(self) -> None:
        """Destroy every plugin node (call after the executor stopped spinning)."""
        if self.pacer is not None:
            self.pacer.close()  # its credit thread publishes through the container's node
        with self._lock:
            nodes = list(self._nodes.values())
            self._nodes.clear()
        for node in nodes:
            with contextlib.suppress(Exception):  # the executor may already be shut down
                self.executor.remove_node(node)
            node.destroy()

    # -- reporting ------------------------------------------------------------------------------
    def _on_fatal(self, message: str) -> None:
        if self.fatal.add(message):
            self.log.error(message)

    def _on_warning(self, message: str) -> None:
        if self.warnings.add(message):
            self.log.warning(message)

    def snapshot(self) -> dict[str, Any]:
        nodes = list(self._nodes.values())
        for node in nodes:
            node.refresh_outputs()  # external subscriber counts as DDS sees them now
            node.host.refresh_state()  # age of the last checkpoint, now
        lanes = {id(lane.port): lane for node in nodes for lane in node.lanes}  # frame lanes (shm_lane/)
        reporters = self.pacer.reporters() if self.pacer is not None else None
        topics = {
            port.topic.name: {
                'published': port.dds_published,
                # containers heard crediting it (config.pace_sources; the start gate waits for them)
                **({'pace_reporters': reporters.get(port.topic.name, 0)} if reporters is not None else {}),
                # a frame lane's readers are subscribers in other containers too (the start gate counts them)
                'external_subscribers': port.external_subscribers + (
                    lanes[id(port)].writer.readers(refresh=True) if id(port) in lanes else 0),
                **({'lane': lanes[id(port)].counters()} if id(port) in lanes else {}),
            }
            for node in nodes
            for port in node.outputs
        }
        return runtime_snapshot(
            self.name,
            ((node.host.metrics, node.inbox_dropped()) for node in nodes),
            (row for node in nodes for row in node.edge_rows()),
            transport={**self.bus.transport.as_dict(), **(self.pacer.counters if self.pacer else {})},
            topics=topics,
            state={
                'started': self.started,
                'stopped': self.stopped,
                'sources_done': all(n.source_done for n in nodes),
                'idle': all(n.idle for n in nodes),
                'source_end': {
                    n.get_name(): n.source_worker.end_reason
                    for n in nodes
                    if n.source_worker is not None and n.source_worker.done.is_set()
                },
                'backlog': {n.get_name(): b for n in nodes if (b := n.host.backlog())},
                'budget_used': self.budget.used,
                'fatal': list(self.fatal),
                'warnings': list(self.warnings),
                'messages_dropped': self.fatal.dropped + self.warnings.dropped,
                'heap_trims': self.heap_trim.trims,
                'heap_released_bytes': self.heap_trim.released_bytes,
                # DDS publishers each input topic from outside this container has matched (what a
                # restarted container waits for: the other side's counts still include the dead one)
                'inputs_matched': {t: c for node in nodes for t, c in node.bridged_publishers().items()},
                # lifecycle state of every node (unconfigured, inactive, active, finalized)
                'lifecycle': {n.get_name(): n.lifecycle_state for n in nodes},
                # why the last transition of a node failed (one line naming the node), while it stands
                'lifecycle_errors': {
                    n.get_name(): n.last_transition_error for n in nodes if n.last_transition_error
                },
            },
        )
