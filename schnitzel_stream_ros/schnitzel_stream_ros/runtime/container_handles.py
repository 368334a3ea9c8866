"""How the runner drives a container: in its own process, or in a child process over ROS services.

Both handles offer the same few operations (load, start, stop_sources, snapshot, shutdown), so the
live run (runtime/live_run.py) has one code path. A graph with one container group runs in the
runner's process (no second process to start or lose); with several groups each group is one
`component_container` process — the same executable launch_ros starts — driven through the standard
composition services and our run-control services (runtime/container.py). Both handles load
through `Container.load`, so a node loads the same way under the runner and under `ros2 launch`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from schnitzel_stream_ros.graph.wiring import LoadRequest
from schnitzel_stream_ros.observability.health import DEFAULT_PERIOD_SEC
from schnitzel_stream_ros.runtime import ros_log_files
from schnitzel_stream_ros.runtime.container import Container, LoadResult
from schnitzel_stream_ros.runtime.executors import ContainerExecutors

SERVICE_TIMEOUT_SEC = 20.0


class ContainerHandle(Protocol):
    name: str
    full_name: str

    def load(self, request: LoadRequest) -> LoadResult: ...
    def replace(self, request: LoadRequest) -> LoadResult: ...
    def unload_node(self, full_name: str) -> tuple[bool, str]: ...
    def ready(self) -> bool: ...
    def list_nodes(self) -> list[str]: ...
    def start(self) -> None: ...
    def stop_sources(self) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def shutdown(self, drain_timeout: float) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def failure(self) -> str | None: ...
    def restart(self) -> None: ...
    def kill(self) -> None: ...


def init_context(args: list[str] | None = None) -> Context:
    """A private rclpy context whose signals stay ours (the runner handles SIGINT/SIGTERM).
    `args`: a command line whose `--ros-args` (remaps of __node/__ns) apply."""
    ros_log_files.prepare()  # rcl's log file: our own directory, pruned, bounded (before the first init)
    context = Context()
    rclpy.init(args=args or [], context=context, signal_handler_options=SignalHandlerOptions.NO)
    return context


class LocalContainerHandle:
    """The container lives in this process (one container group)."""

    restartable = False  # it is this process: nothing to restart it from

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        executor: str,
        max_events: int | None,
        drain_timeout: float,
        diagnostics_period_sec: float = DEFAULT_PERIOD_SEC,
        pace_sources: bool = False,
    ) -> None:
        self.name = name
        self.full_name = container_full_name(name, namespace)
        self.context = init_context()
        self.node = Node(name, namespace=namespace, context=self.context)
        self.executors = ContainerExecutors(executor, self.context)
        self.container = Container(
            self.node,
            self.executors.data,
            autostart=False,
            max_events=max_events,
            drain_timeout=drain_timeout,
            diagnostics_period_sec=diagnostics_period_sec,
            pace_sources=pace_sources,
        )
        self.container.serve()
        self.executors.control.add_node(self.node)
        self.executors.start()
        self._final: dict[str, Any] | None = None

    def load(self, request: LoadRequest) -> LoadResult:
        return self.container.load_request(request)

    def unload_node(self, full_name: str) -> tuple[bool, str]:
        uid = next((uid for name, uid in self.container.list_nodes() if name == full_name), None)
        if uid is None:
            return False, f'no node {full_name} in container {self.name!r}'
        return self.container.unload(uid)

    def replace(self, request: LoadRequest) -> LoadResult:
        return self.container.replace(
            plugin_name=request.plugin_name,
            node_name=request.node_name,
            node_namespace=request.node_namespace,
            remap_rules=list(request.remap_rules),
            parameters=dict(request.parameters),
            package_name=request.package_name,
        )

    def ready(self) -> bool:
        return True

    def list_nodes(self) -> list[str]:
        return [name for name, _uid in self.container.list_nodes()]

    def start(self) -> None:
        self.container.start()

    def stop_sources(self) -> None:
        self.container.stop_sources()

    def snapshot(self) -> dict[str, Any]:
        return self._final if self._final is not None else self.container.snapshot()

    def shutdown(self, drain_timeout: float) -> dict[str, Any]:
        if self._final is None:
            self.container.shutdown(drain_timeout)
            self._final = self.container.snapshot()
        return self._final

    def failure(self) -> str | None:
        if self.executors.error is not None:
            return f'container {self.name!r}: executor failed: {self.executors.error!r}'
        return None

    def restart(self) -> None:
        raise RuntimeError(f'container {self.name!r} runs in this process and cannot be restarted')

    def kill(self) -> None:
        """Nothing to kill: the container is this process."""

    def close(self) -> None:
        self.executors.stop()
        self.container.destroy_nodes()
        self.executors.shutdown()
        self.node.destroy_node()
        with contextlib.suppress(Exception):
            rclpy.shutdown(context=self.context)


def container_command(
    group: str,
    namespace: str,
    *,
    executor: str,
    max_events: int | None,
    drain_timeout: float | None = None,
    diagnostics_period_sec: float | None = None,
    pace_sources: bool = False,
) -> list[str]:
    """The container's module run by this Python (`-m ...container_main`): what the installed
    `component_container` runs, without its entry-point lookup.

    The installed script is a setuptools entry-point wrapper: before anything else it reads the
    metadata of installed distributions (importlib.metadata, with email and zipfile) to find the
    function it already names. That costs every container ~4.7 MB resident for its whole life and
    start-up time, for nothing the container uses. Launch files keep using the installed executable
    (`ros2 launch`/`ros2 run` need one); the container is the same either way.
    """
    args = ['--paused', '--executor', executor] + ['--pace-sources'] * pace_sources
    if drain_timeout is not None:
        args += ['--drain-timeout', str(drain_timeout)]
    if max_events is not None:
        args += ['--max-events', str(max_events)]
    ros_args = ['--ros-args', '-r', f'__node:={group}', '-r', f'__ns:={namespace}']
    if diagnostics_period_sec is not None:
        ros_args += ['-p', f'diagnostics_period_sec:={float(diagnostics_period_sec)!r}']
    return [sys.executable, '-m', 'schnitzel_stream_ros.runtime.container_main', *args, *ros_args]


def _die_with_parent() -> None:
    """Child side: get SIGTERM if the runner dies (even by SIGKILL), so no container is orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def container_full_name(name: str, namespace: str) -> str:
    return ('' if namespace == '/' else namespace) + '/' + name


class ContainerClient:
    """Calls one container's composition and run-control services from a node of ours.

    `failure()` is asked while a call waits: a container whose process is known to have died ends
    the wait at once instead of after the timeout (None = not known, wait).
    """

    def __init__(
        self, full_name: str, client_node: Node, failure: Callable[[], str | None] = lambda: None
    ) -> None:
        from composition_interfaces.srv import ListNodes, LoadNode, UnloadNode
        from std_srvs.srv import Trigger

        self.full_name = full_name
        self.node = client_node
        self._failure = failure
        self._load = client_node.create_client(LoadNode, f'{full_name}/_container/load_node')
        self._list = client_node.create_client(ListNodes, f'{full_name}/_container/list_nodes')
        self._replace = client_node.create_client(LoadNode, f'{full_name}/_schnitzel/replace')
        self._unload = client_node.create_client(UnloadNode, f'{full_name}/_container/unload_node')
        self._trigger = {
            verb: client_node.create_client(Trigger, f'{full_name}/_schnitzel/{verb}')
            for verb in ('start', 'stop_sources', 'stop', 'report')
        }

    @property
    def _clients(self) -> tuple[Any, ...]:
        return (self._load, self._list, self._replace, self._unload, *self._trigger.values())

    def ready(self) -> bool:
        """True once every service of the container is available (does not wait)."""
        return all(client.service_is_ready() for client in self._clients)

    def wait_ready(self, timeout: float = SERVICE_TIMEOUT_SEC) -> None:
        deadline = time.monotonic() + timeout
        for client in self._clients:
            while not client.wait_for_service(timeout_sec=0.2):
                failure = self._failure()
                if failure:
                    raise RuntimeError(f'{failure} before its services came up')
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f'container {self.full_name}: service {client.srv_name} not available '
                        f'after {timeout:.0f} s'
                    )

    def _call(self, client: Any, request: Any, timeout: float = SERVICE_TIMEOUT_SEC) -> Any:
        if not client.service_is_ready():  # a request to no server would only wait out the timeout
            self.wait_ready(timeout)
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + timeout
        while not done.wait(0.1):
            failure = self._failure()
            if failure:
                raise RuntimeError(failure)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f'container {self.full_name}: {client.srv_name} did not answer in {timeout:.0f} s'
                )
        return future.result()

    def trigger(self, verb: str, timeout: float = SERVICE_TIMEOUT_SEC) -> str:
        from std_srvs.srv import Trigger

        return self._call(self._trigger[verb], Trigger.Request(), timeout).message

    @staticmethod
    def _load_msg(request: LoadRequest) -> Any:
        from composition_interfaces.srv import LoadNode

        msg = LoadNode.Request()
        msg.package_name = request.package_name
        msg.plugin_name = request.plugin_name
        msg.node_name = request.node_name
        msg.node_namespace = request.node_namespace
        msg.remap_rules = list(request.remap_rules)
        msg.parameters = [
            Parameter(name, value=value).to_parameter_msg() for name, value in request.parameters.items()
        ]
        msg.extra_arguments = [
            Parameter(name, value=value).to_parameter_msg() for name, value in request.extra_arguments.items()
        ]
        return msg

    def load(self, request: LoadRequest, timeout: float = SERVICE_TIMEOUT_SEC) -> LoadResult:
        response = self._call(self._load, self._load_msg(request), timeout)
        return LoadResult(
            response.success, response.error_message, response.full_node_name, response.unique_id
        )

    def replace(self, request: LoadRequest) -> LoadResult:
        """Hot-replace the loaded node the request names (runtime/hot_replace.py)."""
        response = self._call(self._replace, self._load_msg(request))
        return LoadResult(
            response.success, response.error_message, response.full_node_name, response.unique_id
        )

    def list_nodes(self, timeout: float = SERVICE_TIMEOUT_SEC) -> list[str]:
        from composition_interfaces.srv import ListNodes

        return list(self._call(self._list, ListNodes.Request(), timeout).full_node_names)

    def unload_node(self, full_name: str, timeout: float = SERVICE_TIMEOUT_SEC) -> tuple[bool, str]:
        """Unload a node by its full name (the container drains its inbox first)."""
        from composition_interfaces.srv import ListNodes, UnloadNode

        listed = self._call(self._list, ListNodes.Request(), timeout)
        ids = dict(zip(listed.full_node_names, listed.unique_ids, strict=False))
        if full_name not in ids:
            return False, f'no node {full_name} in container {self.full_name}'
        response = self._call(self._unload, UnloadNode.Request(unique_id=ids[full_name]), timeout)
        return response.success, response.error_message

    def start(self) -> None:
        self.trigger('start')

    def snapshot(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.trigger('report', timeout=timeout))

    def destroy(self) -> None:
        for client in self._clients:
            self.node.destroy_client(client)


class RemoteContainerHandle:
    """A `component_container` child process, driven through its services from the runner's node.

    `restart()` starts the process again with the same command after it died (the reconciler then
    reloads its nodes, runtime/reconciler.py).
    """

    restartable = True

    def __init__(
        self,
        name: str,
        namespace: str,
        client_node: Node,
        *,
        executor: str,
        max_events: int | None,
        drain_timeout: float,
        diagnostics_period_sec: float | None = None,
        pace_sources: bool = False,
    ) -> None:
        self.name = name
        self.full_name = container_full_name(name, namespace)
        self.command = container_command(
            name,
            namespace,
            executor=executor,
            max_events=max_events,
            drain_timeout=drain_timeout,
            diagnostics_period_sec=diagnostics_period_sec,
            pace_sources=pace_sources,
        )
        self.proc = self._spawn()
        self.client = ContainerClient(self.full_name, client_node, self._exited)
        self._final: dict[str, Any] | None = None

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.command, start_new_session=True, preexec_fn=_die_with_parent)

    def restart(self) -> None:
        """Start the container process again (after it died), same command; it comes up paused."""
        self.kill()
        self.proc = self._spawn()

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group and reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def _exited(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return f'container {self.name!r} exited with code {self.proc.returncode}'

    def wait_ready(self, timeout: float = SERVICE_TIMEOUT_SEC) -> None:
        self.client.wait_ready(timeout)

    def load(self, request: LoadRequest, timeout: float = SERVICE_TIMEOUT_SEC) -> LoadResult:
        return self.client.load(request, timeout)

    def replace(self, request: LoadRequest) -> LoadResult:
        return self.client.replace(request)

    def unload_node(self, full_name: str) -> tuple[bool, str]:
        return self.client.unload_node(full_name)

    def ready(self) -> bool:
        return self.client.ready()

    def list_nodes(self, timeout: float = SERVICE_TIMEOUT_SEC) -> list[str]:
        return self.client.list_nodes(timeout)

    def start(self) -> None:
        self.client.start()

    def stop_sources(self) -> None:
        self.client.trigger('stop_sources')

    def snapshot(self) -> dict[str, Any]:
        if self._final is not None:
            return self._final
        return self.client.snapshot()

    def shutdown(self, drain_timeout: float) -> dict[str, Any]:
        if self._final is None:
            self._final = json.loads(self.client.trigger('stop', timeout=drain_timeout + SERVICE_TIMEOUT_SEC))
        return self._final

    def failure(self) -> str | None:
        code = self.proc.poll()
        if code is not None and self._final is None:
            return f'container {self.name!r} exited unexpectedly with code {code}'
        return None

    def close(self) -> None:
        """End the process group: SIGTERM, then SIGKILL after a grace period."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.client.destroy()
