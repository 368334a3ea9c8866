"""Another process's view of a running graph, for tests: a plain rclpy node that calls services.

Tests that talk to a container "from outside" (as `ros2 component load`, `ros2 param` or a robot
would) need the same few things: an rclpy context on the test's leased DDS domain, a node spinning
on its own thread, and blocking service calls with a deadline. One client per service is kept: a
fresh client per call re-runs discovery every time and flakes on a loaded machine.
"""

from __future__ import annotations

import time
from typing import Any

import rclpy
from rclpy.node import Node

from schnitzel_stream_ros.runtime.executors import Spinner, make_executor


class RosPeer:
    """A node in this process on `domain_id`, spinning until close()."""

    def __init__(self, domain_id: int, name: str = 'test_peer') -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self._clients: dict[str, Any] = {}
        executor = make_executor('single', self.context)
        executor.add_node(self.node)
        self.spinner = Spinner(executor, self.context, f'{name}-executor').start()

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        """Call service `name` and wait for the answer (AssertionError naming the service otherwise)."""
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f'service {name} not available'
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            assert time.monotonic() < deadline, f'service {name} did not answer'
            time.sleep(0.01)
        return future.result()

    def close(self) -> None:
        self.spinner.stop()
        for client in self._clients.values():
            self.node.destroy_client(client)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
