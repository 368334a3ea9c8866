"""Remote parameters in a live container: other nodes' parameters over the standard ROS parameter
services, exactly what `ros2 param get/set` uses — so a controller reaches a node in its own
container, in another container, or any ROS node at all, and the node's own checks decide.

Answers arrive on the executor thread; each is handed to the calling plugin's own thread through
its mailbox (plugin.RemoteParameters). A call whose service is not there yet answers with an error
at once; one without an answer within CALL_TIMEOUT_SEC answers with a timeout. Clients are kept per
target node (bounded by MAX_TARGETS: the targets come from a graph file).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import Parameter as ParameterMsg
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from schnitzel_stream_ros.plugin import ParamDone

CALL_TIMEOUT_SEC = 5.0
MAX_TARGETS = 64
_SWEEP_SEC = 0.5

Post = Callable[[Callable[[], None]], None]


class RosParameters:
    """plugin.RemoteParameters of one node (`node` is the rclpy node of the calling plugin)."""

    def __init__(self, node: Any, post: Post) -> None:
        self._node = node
        self._post = post  # runs a callable on the plugin's own thread
        self._clients: dict[str, AsyncParameterClient] = {}
        self._pending: dict[int, tuple[float, ParamDone, str]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._timer: Any = None  # made at the first call: most nodes never call


    def _target(self, node: str) -> str:
        if node.startswith('/'):
            return node
        namespace = self._node.get_namespace().rstrip('/')
        return f'{namespace}/{node}'

    def _client(self, node: str) -> AsyncParameterClient | None:
        target = self._target(node)
        client = self._clients.get(target)
        if client is None:
            if len(self._clients) >= MAX_TARGETS:
                return None
            client = self._clients[target] = AsyncParameterClient(self._node, target)
        return client

    def _answer(self, done: ParamDone, value: Any, error: str | None) -> None:
        self._post(lambda: done(value, error))

    def _call(self, node: str, done: ParamDone, what: str, send: Callable[[AsyncParameterClient], Any],
              read: Callable[[Any], tuple[Any, str | None]]) -> None:
        client = self._client(node)
        target = self._target(node)
        if client is None:
            self._answer(done, None, f'{what} {target}: more than {MAX_TARGETS} target nodes')
            return
        if self._timer is None:
            self._timer = self._node.create_timer(_SWEEP_SEC, self._sweep)
        if not client.services_are_ready():
            self._answer(done, None, f'{what} {target}: parameter services not available')
            return
        with self._lock:
            call_id = self._next_id
            self._next_id += 1
            self._pending[call_id] = (time.monotonic() + CALL_TIMEOUT_SEC, done, f'{what} {target}')
        future = send(client)

        def finished(fut: Any) -> None:
            with self._lock:
                entry = self._pending.pop(call_id, None)
            if entry is None:
                return  # timed out already
            try:
                value, error = read(fut.result())
            except Exception as exc:
                value, error = None, f'{what} {target}: {type(exc).__name__}: {exc}'
            self._answer(done, value, error)

        future.add_done_callback(finished)

    def get(self, node: str, name: str, done: ParamDone) -> None:
        def read(response: Any) -> tuple[Any, str | None]:
            values = list(response.values)
            if not values or values[0].type == 0:  # PARAMETER_NOT_SET: no such parameter
                return None, f'get {self._target(node)}: no parameter {name!r}'
            return Parameter.from_parameter_msg(_named(name, values[0])).value, None

        self._call(node, done, 'get', lambda c: c.get_parameters([name]), read)

    def set(self, node: str, name: str, value: Any, done: ParamDone) -> None:
        def read(response: Any) -> tuple[Any, str | None]:
            result = response.results[0] if response.results else None
            if result is None or not result.successful:
                reason = result.reason if result is not None else 'no answer'
                return None, f'set {self._target(node)} {name}={value!r}: refused: {reason}'
            return value, None

        self._call(node, done, 'set', lambda c: c.set_parameters([Parameter(name, value=value)]), read)

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [k for k, (deadline, _, _) in self._pending.items() if deadline <= now]
            expired = [self._pending.pop(k) for k in late]
        for _deadline, done, what in expired:
            self._answer(done, None, f'{what}: no answer within {CALL_TIMEOUT_SEC:g} s')


def _named(name: str, value_msg: Any) -> ParameterMsg:
    return ParameterMsg(name=name, value=value_msg)
