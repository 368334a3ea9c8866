"""`component_container`: the container executable (lib/schnitzel_stream_ros/component_container).

Started by `ros2 run schnitzel_stream_ros component_container`, by launch_ros'
`ComposableNodeContainer(package='schnitzel_stream_ros', executable='component_container', ...)`
and by `schnitzel-stream run` for graphs with several container groups. The usual ROS arguments
are accepted: `--ros-args -r __node:=<name> -r __ns:=<namespace>` name the container node (only the
container node: plugin nodes get their names from their load requests), `-p plugin_allowlist:=[...]`
widens the plugin allowlist, `-p diagnostics_period_sec:=S` sets the period of /diagnostics
(default 1 s, 0 = off) and `-p diagnostics_stall_sec:=S` the default stall threshold of sources.

Own options (before --ros-args):
    --executor events|single|multi   rclpy executor of the ROS side (default events)
    --threads N                      threads of the multi executor
    --paused                         loaded nodes wait for ~/_schnitzel/start (used by the runner)
    --max-events N                   emission budget of all sources in this container

SIGTERM/SIGINT: sources stop, in-flight packets drain (bounded), every plugin's close() runs,
exit code 0. A container whose plugins reported a fatal error exits with 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from schnitzel_stream_ros.runtime.container import DEFAULT_DRAIN_TIMEOUT_SEC, Container
from schnitzel_stream_ros.runtime.executors import DEFAULT_EXECUTOR, EXECUTOR_KINDS, ContainerExecutors

DEFAULT_NODE_NAME = 'component_container'


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='component_container', description=__doc__.split('\n\n')[0])
    parser.add_argument('--executor', choices=EXECUTOR_KINDS, default=DEFAULT_EXECUTOR)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--paused', action='store_true')
    parser.add_argument('--max-events', type=int, default=None)
    parser.add_argument('--drain-timeout', type=float, default=DEFAULT_DRAIN_TIMEOUT_SEC)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    args = parse_args(remove_ros_args(args=argv)[1:])
    context = rclpy.Context()
    rclpy.init(args=argv, context=context, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    node = Node(DEFAULT_NODE_NAME, context=context)  # __node/__ns remaps of the command line apply
    executors = ContainerExecutors(args.executor, context, args.threads)
    try:
        container = Container(
            node,
            executors.data,
            autostart=not args.paused,
            max_events=args.max_events,
            drain_timeout=args.drain_timeout,
        )
    except ValueError as exc:  # a container parameter out of range: one line, no traceback
        print(f'component_container: {exc}', file=sys.stderr)
        node.destroy_node()
        rclpy.shutdown(context=context)
        return 2
    container.serve()
    executors.control.add_node(node)
    executors.start()
    node.get_logger().info(f'container {node.get_fully_qualified_name()} ready (executor {args.executor})')
    try:
        while not stop.wait(0.2):
            if executors.error is not None:
                node.get_logger().error(f'executor failed: {executors.error!r}')
                break
    finally:
        container.shutdown(args.drain_timeout)
        executors.stop()
        container.destroy_nodes()
        executors.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        # Stopped: later signals change nothing. Ignored rather than handled, because Python puts
        # the default action back for handled signals while it exits, and Ctrl-C under `ros2 launch`
        # delivers SIGINT twice (terminal, then launch) — the second would end a clean stop as
        # "died by SIGINT".
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 1 if container.fatal or executors.error is not None else 0


if __name__ == '__main__':
    sys.exit(main())
