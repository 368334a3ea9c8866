"""One plugin instance and everything around it that does not depend on threads or ROS.

Both run modes host plugins through this class — the deterministic engine calls it from its one
thread, the live ROS node from the node's worker thread — so a plugin behaves the same in a unit
test, in `schnitzel-stream run` and under `ros2 launch`: same context, same output routing, same
counters, same error messages. A host never calls a plugin from two threads at once; the owner
guarantees that by calling `handle`, `pull` and `apply_params` from the node's own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schnitzel_stream_ros.graph.blackboard_config import BlackboardSpec
from schnitzel_stream_ros.graph.secrets import resolve_secrets
from schnitzel_stream_ros.graph.state_config import StateSpec
from schnitzel_stream_ros.observability.metrics import NodeMetrics
from schnitzel_stream_ros.observability.plugin_log import PluginLog
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import DEFAULT_OUTPUT, DEFAULT_STATE_MAX_KEYS, Plugin
from schnitzel_stream_ros.runtime.checkpoints import NodeCheckpoints, StateRefused, upgrade
from schnitzel_stream_ros.state.blackboard import Blackboard, BlackboardError, shared_blackboard
from schnitzel_stream_ros.state.store import StateStoreError

#: Where an output port's packets go (set by the run mode: engine router or in-container topic).
Route = Callable[[StreamPacket], None]
#: The same for all outputs of one call at once (a route's optional `many` attribute).
BatchRoute = Callable[[list[StreamPacket]], None]
#: Most outputs of one call delivered as one batch; a call returning more is delivered in such chunks.
MAX_CALL_BATCH = 1024


class PluginError(RuntimeError):
    """A plugin misbehaved (raised, or returned something that is not a packet); names the node."""


class DeliveryError(RuntimeError):
    """A route could not deliver a packet (e.g. inbox policy `error`). Not the emitting plugin's
    fault, so it passes through the plugin's frames unchanged instead of being blamed on it."""


def _overrides_process_batch(plugin: Plugin) -> bool:
    return type(plugin).process_batch is not Plugin.process_batch


def _unconnected(_packet: StreamPacket) -> None:
    """An output port without edges: packets are counted as produced and go nowhere."""


class NodeContext:
    """The PluginContext the runtime gives a plugin (see plugin.PluginContext)."""

    __slots__ = ('_host', 'logger', 'node_id', 'parameters', 'params', 'state_max_keys', 'stop_event')

    def __init__(
        self, host: PluginHost, params: dict[str, Any], logger: Any, stop_event: threading.Event
    ) -> None:
        self._host = host
        self.parameters: Any = host.parameters  # RemoteParameters of the run mode (plugin.py), or None
        self.node_id = host.node_id
        self.params = params
        self.logger = PluginLog(logger)  # any level from any call site, also on rclpy's logger
        self.stop_event = stop_event
        self.state_max_keys = host.state_spec.max_keys if host.state_spec else DEFAULT_STATE_MAX_KEYS

    def checkpoint(self) -> None:
        self._host.checkpoint_now(self)

    @property
    def blackboard(self) -> Blackboard | None:
        return self._host.blackboard_view()

    def emit(self, packet: StreamPacket, port: str = DEFAULT_OUTPUT) -> None:
        self._host.emit(packet, port)

    def frame_buffer(self, shape: tuple[int, ...], dtype: Any, port: str = DEFAULT_OUTPUT) -> Any:
        return self._host.frame_buffer(shape, dtype, port)

    def count(self, name: str, n: int = 1) -> None:
        self._host.metrics.count(name, n)

    def gauge(self, name: str, value: float) -> None:
        self._host.metrics.gauge(name, value)


@dataclass(frozen=True)
class Replacement:
    """A plugin instance set up to replace the running one of a host (PluginHost.take_over)."""

    plugin_cls: type[Plugin]
    plugin: Plugin
    ctx: NodeContext


class PluginHost:
    """Creates, feeds and closes one plugin; routes what it emits; counts what passes."""

    def __init__(
        self,
        node_id: str,
        plugin_cls: type[Plugin],
        params: Mapping[str, Any],
        *,
        is_source: bool,
        is_sink: bool,
        logger: Any = None,
        stop_event: threading.Event | None = None,
        state: StateSpec | None = None,
        state_node: str | None = None,
        blackboard: tuple[BlackboardSpec, str] | None = None,
    ) -> None:
        self.node_id = node_id
        # checkpoints of a stateful plugin (runtime/checkpoints.py): created at setup()
        self.state_spec = state
        self.state_node = state_node or f'/{node_id}'
        self.checkpoints: NodeCheckpoints | None = None
        self._state_live = False  # the current instance was set up (and restored): its state counts
        self.blackboard_spec = blackboard
        self._blackboard: Blackboard | None = None
        self.plugin_cls = plugin_cls
        self.is_source = is_source
        self.metrics = NodeMetrics(node_id, is_source, is_sink)
        self.stop_event = stop_event or threading.Event()
        #: other nodes' parameters (plugin.RemoteParameters), set by the run mode before setup()
        self.parameters: Any = None
        _inputs, outputs = plugin_cls.ports_for(params)  # a router's ports depend on its routes
        self._routes: dict[str, Route] = {port.name: _unconnected for port in outputs}
        self._batch_routes: dict[str, BatchRoute | None] = {}
        self._lenders: dict[str, Callable[[tuple[int, ...], Any], Any] | None] = {}
        self.ctx = NodeContext(
            self, dict(params), logger or logging.getLogger(f'schnitzel_stream.{node_id}'), self.stop_event
        )
        self.plugin: Plugin | None = None
        #: the plugin overrides Plugin.process_batch (the live worker then hands it batches); set
        #: with each instance (setup, take_over), read by the worker for every packet it takes
        self.handles_batches = False
        self._packets: Iterator[StreamPacket | None] | None = None
        self.closed = False
        # Held while plugin code runs (process, process_batch, produce): close() never runs the
        # plugin's close() in the middle of one; if that call is stuck, closing is deferred to
        # the moment it returns (close_deferred), on the thread that made it.
        self._call_lock = threading.RLock()
        self.close_deferred = False

    @property
    def params(self) -> dict[str, Any]:
        return self.ctx.params

    # -- wiring --------------------------------------------------------------------------------
    def connect(self, port: str, route: Route) -> None:
        """Send what the plugin emits on `port` to `route` (one route per port; fan-out is the route's)."""
        if port not in self._routes:
            raise PluginError(
                f"node '{self.node_id}': no output port '{port}' (ports: {sorted(self._routes)})"
            )
        self._routes[port] = route
        # a route that can take all outputs of one call at once (bus.OutputPort.many); the others get
        # them one by one (the deterministic engine: single-threaded, nothing runs in between anyway)
        self._batch_routes[port] = getattr(route, 'many', None)
        self._lenders[port] = getattr(route, 'frame_buffer', None)  # a frame lane lends shared memory

    # -- life cycle ----------------------------------------------------------------------------
    def setup(self) -> None:
        """Instantiate the plugin and run its setup(); errors name the node."""
        try:
            # secret references (${secret:NAME}) become values here, in the container process:
            # the ROS parameters and launch files only ever hold the reference (graph/secrets.py)
            self.ctx.params.update(resolve_secrets(self.ctx.params))
            self.ctx.parameters = self.parameters
            self.plugin = self.plugin_cls(self.ctx)
            self.handles_batches = _overrides_process_batch(self.plugin)
            self.plugin.setup()
        except Exception as exc:
            raise PluginError(f"node '{self.node_id}': setup() failed: {type(exc).__name__}: {exc}") from exc
        if self._open_checkpoints(self.plugin_cls):
            assert self.checkpoints is not None
            try:
                seq = self.checkpoints.restore(self.plugin)
            except (StateRefused, StateStoreError) as exc:
                raise PluginError(f"node '{self.node_id}': {exc}") from None
            if seq:
                self.ctx.logger.info(f"node '{self.node_id}': state restored from checkpoint {seq}")
        self._state_live = True

    def _open_checkpoints(self, plugin_cls: type[Plugin]) -> bool:
        """True when `plugin_cls` is stateful and the graph configured checkpoints (opened here)."""
        if self.state_spec is None or plugin_cls.STATE_VERSION < 1:
            return False
        if self.checkpoints is None:
            try:
                self.checkpoints = NodeCheckpoints(
                    self.state_node, self.state_spec, self.metrics, self.ctx.logger
                )
            except StateStoreError as exc:
                raise PluginError(f"node '{self.node_id}': {exc}") from None
        return True

    def _checkpointing(self) -> NodeCheckpoints | None:
        """The checkpoints to write for the current instance (None: not stateful, not configured)."""
        plugin = self.plugin
        if self.checkpoints is None or plugin is None or not self._state_live or self.closed:
            return None
        return self.checkpoints if type(plugin).STATE_VERSION >= 1 else None

    def checkpoint_now(self, ctx: NodeContext) -> None:
        """Plugin.checkpoint(): write-ahead, on the plugin's own thread, inside its call."""
        checkpoints = self._checkpointing()
        if checkpoints is not None and ctx is self.ctx:
            checkpoints.write(self.plugin, 'requested')

    def _checkpoint_if_due(self) -> None:
        checkpoints = self.checkpoints
        if checkpoints is not None and time.monotonic() >= checkpoints.next_due:
            checkpoints = self._checkpointing()
            if checkpoints is not None:
                checkpoints.write(self.plugin, 'periodic')

    def blackboard_view(self) -> Blackboard | None:
        """This node's view of the graph's blackboard (opened at first use), None without one."""
        if self._blackboard is None and self.blackboard_spec is not None:
            spec, scope = self.blackboard_spec
            try:
                store = shared_blackboard(spec.path, spec.max_versions)
            except BlackboardError as exc:
                raise PluginError(f"node '{self.node_id}': {exc}") from None
            self._blackboard = Blackboard(store, scope, self.state_node)
        return self._blackboard

    def refresh_state(self) -> None:
        """The age of the last checkpoint, for a snapshot taken now."""
        if self.checkpoints is not None:
            self.checkpoints.refresh()

    def start(self) -> None:
        """The graph starts: the plugin's on_start() (it may emit, e.g. a loop's seed value)."""
        with self._call_lock:
            plugin = self.plugin
            if plugin is None or self.closed:
                return  # closed before the graph started: nothing to start
            try:
                plugin.on_start()
            except (PluginError, DeliveryError):
                raise
            except Exception as exc:
                raise PluginError(
                    f"node '{self.node_id}': on_start() failed: {type(exc).__name__}: {exc}"
                ) from exc

    def close(self, wait_sec: float = 0.0) -> bool:
        """Run the plugin's close() once (also after errors); errors name the node.

        Never while plugin code of this node runs on another thread: waits up to `wait_sec` for it,
        then defers -- the running call closes the plugin when it returns -- and returns False.
        """
        if not self._call_lock.acquire(timeout=wait_sec) if wait_sec > 0 else not self._call_lock.acquire(
            blocking=False
        ):
            self.close_deferred = True
            if not self._call_lock.acquire(blocking=False):  # it may have returned meanwhile
                return False
        try:
            self._close_plugin()
        finally:
            self._call_lock.release()
        return True

    def _close_plugin(self) -> None:
        if self.closed:
            return
        checkpoints = self._checkpointing()
        if checkpoints is not None:  # a clean stop: the last state, before close() releases it
            checkpoints.write(self.plugin, 'final')
        self.closed = True
        self.close_deferred = False
        self.discard_source()
        if self.plugin is not None:
            try:
                self.plugin.close()
            except Exception as exc:
                raise PluginError(
                    f"node '{self.node_id}': close() failed: {type(exc).__name__}: {exc}"
                ) from exc

    def _close_if_deferred(self) -> None:
        """After a call returned: the close() that could not run during it runs now."""
        if not self._call_lock.acquire(blocking=False):
            return
        try:
            if self.close_deferred:
                self._close_plugin()
                self.ctx.logger.warning(f"node '{self.node_id}': closed after its stuck call returned")
        except PluginError as exc:
            self.ctx.logger.error(str(exc))
        finally:
            self._call_lock.release()

    def backlog(self) -> int:
        """The plugin's backlog() (0 before setup, after close, or when it fails)."""
        if self.plugin is None or self.closed:
            return 0
        try:
            return max(0, int(self.plugin.backlog()))
        except Exception:
            return 0

    # -- data path -----------------------------------------------------------------------------
    def frame_buffer(self, shape: tuple[int, ...], dtype: Any, port: str = DEFAULT_OUTPUT) -> Any:
        """Plugin.frame_buffer: memory the route of `port` lends (a frame lane's shared-memory
        sample, shm_lane/), else a plain numpy array. The plugin never learns which."""
        route = self._routes.get(port)
        if route is None:
            raise PluginError(
                f"node '{self.node_id}': frame_buffer for unknown output port '{port}' "
                f'(ports: {sorted(self._routes)})'
            )
        lend = self._lenders.get(port)
        buffer = lend(shape, dtype) if lend is not None else None
        return buffer if buffer is not None else np.empty(shape, dtype)

    def emit(self, packet: StreamPacket, port: str = DEFAULT_OUTPUT) -> None:
        """Count and route one packet the plugin produced."""
        if type(packet) is not StreamPacket and not isinstance(packet, StreamPacket):
            raise PluginError(
                f"node '{self.node_id}': emitted {type(packet).__name__} on port '{port}', "
                'expected a StreamPacket'
            )
        route = self._routes.get(port)
        if route is None:
            raise PluginError(
                f"node '{self.node_id}': emit on unknown output port '{port}' (ports: {sorted(self._routes)})"
            )
        self.metrics.produced += 1
        route(packet)

    def handle(self, packet: StreamPacket, port: str) -> None:
        """Give one packet to process() and route what it returns to the default output."""
        try:
            with self._call_lock:
                self._handle(packet, port)
                if self.checkpoints is not None:  # checked here: one call less per packet without state
                    self._checkpoint_if_due()
        finally:
            if self.close_deferred:
                self._close_if_deferred()

    def _handle(self, packet: StreamPacket, port: str) -> None:
        self.metrics.consumed += 1
        plugin = self.plugin
        assert plugin is not None, 'setup() first'
        try:
            out = plugin.process(packet, port)
        except (PluginError, DeliveryError):
            raise
        except Exception as exc:
            raise PluginError(
                f"node '{self.node_id}': process() failed on port '{port}' (packet {packet.packet_id}): "
                f'{type(exc).__name__}: {exc}'
            ) from exc
        if out is not None:  # a sink's usual answer: no call to route nothing
            self._route_outputs(out, 'process()')

    def _route_outputs(self, out: Any, what: str) -> None:
        if out is None:
            return
        if isinstance(out, StreamPacket):
            self.emit(out)
            return
        try:
            packets = iter(out)
        except TypeError:
            raise PluginError(
                f"node '{self.node_id}': {what} returned {type(out).__name__}; expected None, a "
                'StreamPacket or an iterable of them'
            ) from None
        # Outputs of one call arrive together (docs/runtime.md): collected, then routed as one batch,
        # so no downstream worker takes the first before the last is in its inbox (upstream's runner
        # hands them over the same way). What was collected is routed also when the iteration raises.
        batch: list[StreamPacket] = []
        try:
            for item in packets:
                if type(item) is not StreamPacket and not isinstance(item, StreamPacket):
                    raise PluginError(
                        f"node '{self.node_id}': emitted {type(item).__name__} on port "
                        f"'{DEFAULT_OUTPUT}', expected a StreamPacket"
                    )
                batch.append(item)
                if len(batch) == MAX_CALL_BATCH:
                    full, batch = batch, []
                    self.emit_many(full)
        finally:
            if batch:
                self.emit_many(batch)

    def emit_many(self, packets: list[StreamPacket], port: str = DEFAULT_OUTPUT) -> None:
        """Count and route the packets of one call (StreamPackets, checked) as one batch."""
        if len(packets) == 1:
            self.emit(packets[0], port)
            return
        route = self._routes.get(port)
        if route is None:
            raise PluginError(
                f"node '{self.node_id}': emit on unknown output port '{port}' (ports: {sorted(self._routes)})"
            )
        self.metrics.produced += len(packets)
        many = self._batch_routes.get(port)
        if many is not None:
            many(packets)
            return
        for packet in packets:
            route(packet)

    def tick(self) -> None:
        """The plugin's on_tick() (live mode timer); what it returns goes to the default output."""
        try:
            with self._call_lock:
                plugin = self.plugin
                if plugin is None or self.closed:
                    return
                try:
                    out = plugin.on_tick()
                except (PluginError, DeliveryError):
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"node '{self.node_id}': on_tick() failed: {type(exc).__name__}: {exc}"
                    ) from exc
                self._route_outputs(out, 'on_tick()')
        finally:
            if self.close_deferred:
                self._close_if_deferred()

    def handle_batch(self, packets: list[StreamPacket], port: str) -> None:
        """Give several packets of one port to process_batch() and route what it returns."""
        try:
            with self._call_lock:
                self._handle_batch(packets, port)
                self._checkpoint_if_due()
        finally:
            if self.close_deferred:
                self._close_if_deferred()

    def _handle_batch(self, packets: list[StreamPacket], port: str) -> None:
        self.metrics.consumed += len(packets)
        plugin = self.plugin
        assert plugin is not None, 'setup() first'
        try:
            out = plugin.process_batch(packets, port)
        except (PluginError, DeliveryError):
            raise
        except Exception as exc:
            raise PluginError(
                f"node '{self.node_id}': process_batch() failed on port '{port}' ({len(packets)} packets, "
                f'first {packets[0].packet_id}): {type(exc).__name__}: {exc}'
            ) from exc
        self._route_outputs(out, 'process_batch()')

    def pull(self) -> bool:
        """Sources: take the next packet from produce() and emit it. False once the source is done.

        A source may yield None ("nothing this time") to stay responsive without emitting.
        """
        try:
            with self._call_lock:
                more = self._pull()
                if self.checkpoints is not None:
                    self._checkpoint_if_due()
                return more
        finally:
            if self.close_deferred:
                self._close_if_deferred()

    def _pull(self) -> bool:
        packets = self._packets
        if packets is None:
            plugin = self.plugin
            assert plugin is not None, 'setup() first'
            try:
                packets = self._packets = iter(plugin.produce())
            except Exception as exc:
                raise PluginError(
                    f"node '{self.node_id}': produce() failed: {type(exc).__name__}: {exc}"
                ) from exc
        try:
            packet = next(packets)
        except StopIteration:
            return False
        except (PluginError, DeliveryError):
            raise
        except Exception as exc:
            raise PluginError(
                f"node '{self.node_id}': produce() failed: {type(exc).__name__}: {exc}"
            ) from exc
        if packet is None:
            return True
        # emit() on the default port, inlined for the common case (a source's every packet);
        # emit() itself for the rest, and for its errors
        route = self._routes.get(DEFAULT_OUTPUT) if type(packet) is StreamPacket else None
        if route is None:
            self.emit(packet)
        else:
            self.metrics.produced += 1
            route(packet)
        return True

    def discard_source(self) -> None:
        """Sources: close the current produce() generator; the next pull() calls produce() afresh."""
        with self._call_lock:
            self._discard_source()

    def _discard_source(self) -> None:
        if self._packets is None:
            return
        close_gen = getattr(self._packets, 'close', None)
        self._packets = None
        if close_gen is not None:
            try:
                close_gen()
            except Exception as exc:
                raise PluginError(
                    f"node '{self.node_id}': produce() failed while closing: {type(exc).__name__}: {exc}"
                ) from exc

    # -- hot-replace ---------------------------------------------------------------------------
    def prepare_replacement(self, plugin_cls: type[Plugin], params: Mapping[str, Any]) -> Replacement:
        """A new plugin instance, set up and ready to take over this host's node (any thread).

        Its setup() runs here, while the current instance keeps processing, so the swap itself
        (`take_over`, on the owner thread) is short. A failed setup() closes the new instance and
        raises PluginError; the current one is untouched.
        """
        _inputs, outputs = plugin_cls.ports_for(params)
        missing = sorted(set(self._routes) - {p.name for p in outputs})
        if missing:
            raise PluginError(f"node '{self.node_id}': the new plugin lacks output ports {missing}")
        ctx = NodeContext(self, dict(params), self.ctx.logger, self.stop_event)
        plugin = None
        try:
            ctx.params.update(resolve_secrets(ctx.params))  # as setup(): values only in this process
            plugin = plugin_cls(ctx)
            plugin.setup()
        except Exception as exc:
            message = f"node '{self.node_id}': replacement setup() failed: {type(exc).__name__}: {exc}"
            if plugin is not None:
                try:
                    plugin.close()
                except Exception as close_exc:
                    message += f'; close() failed too: {type(close_exc).__name__}: {close_exc}'
            raise PluginError(message) from exc
        return Replacement(plugin_cls, plugin, ctx)

    def take_over(self, replacement: Replacement) -> Plugin | None:
        """Swap in `replacement` between two packets (owner thread); returns the old instance.

        State hand-over: old.snapshot_state() -> new.restore_state(). If either raises, nothing
        changes (the old instance stays, PluginError). A source's produce() generator of the old
        instance is closed; the next pull calls the new instance's produce().
        """
        old = self.plugin
        new = replacement.plugin
        try:
            state = old.snapshot_state() if old is not None else None
        except Exception as exc:
            raise PluginError(
                f"node '{self.node_id}': snapshot_state() failed: {type(exc).__name__}: {exc}"
            ) from exc
        if state is not None and replacement.plugin_cls.STATE_VERSION >= 1:
            # a stateful new class: the same version check as a checkpoint's (a format it cannot read
            # stops here); a class without declared state takes what it is given, as it always did
            try:
                state = upgrade(replacement.plugin_cls, state, type(old).STATE_VERSION,
                                f"node '{self.node_id}': hand-over to {replacement.plugin_cls.__name__}")
            except StateRefused as exc:
                raise PluginError(str(exc)) from None
        if state is not None:
            try:
                new.restore_state(state)
            except Exception as exc:
                raise PluginError(
                    f"node '{self.node_id}': restore_state() failed: {type(exc).__name__}: {exc}"
                ) from exc
        self.discard_source()
        self.plugin = new
        self.handles_batches = _overrides_process_batch(new)
        self.plugin_cls = replacement.plugin_cls
        self.ctx = replacement.ctx
        try:
            if self._open_checkpoints(replacement.plugin_cls):
                checkpoints = self._checkpointing()
                if checkpoints is not None:  # the handed-over state, now under the new class and version
                    checkpoints.write(new, 'hand-over')
        except PluginError as exc:
            self.ctx.logger.warning(str(exc))
        return old

    def apply_params(self, changed: Mapping[str, Any]) -> None:
        """Dynamic parameters changed (already validated): update params, tell the plugin."""
        self.ctx.params.update(changed)
        if self.plugin is not None:
            try:
                self.plugin.on_params(dict(changed))
            except Exception as exc:
                raise PluginError(
                    f"node '{self.node_id}': on_params() failed: {type(exc).__name__}: {exc}"
                ) from exc
