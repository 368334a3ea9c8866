"""`component_container`: the container executable (lib/schnitzel_stream_ros/component_container).

Started by `ros2 run schnitzel_stream_ros component_container`, by launch_ros'
`ComposableNodeContainer(package='schnitzel_stream_ros', executable='component_container', ...)`
and by `schnitzel-stream run` for graphs with several container groups. The usual ROS arguments
are accepted: `--ros-args -r __node:=<name> -r __ns:=<namespace>` name the container node (only the
container node: plugin nodes get their names from their load requests), `-p plugin_allowlist:=[...]`
widens the plugin allowlist, `-p diagnostics_period_sec:=S` sets the period of /diagnostics
(default 1 s, 0 = off), `-p diagnostics_stall_sec:=S` the default stall threshold of sources and
`-p autostart:=false` loads nodes unconfigured for a lifecycle manager (runtime/container.py).

Own options (before --ros-args):
    --executor events|single|multi   rclpy executor of the ROS side (default events)
    --threads N                      threads of the multi executor (default: parameter thread_num)
    --paused                         loaded nodes wait for ~/_schnitzel/start (used by the runner)
    --max-events N                   emission budget of all sources in this container
    --pace-sources                   sources wait for the graph to drain each packet (config.pace_sources)
    --drain-timeout S                what in-flight packets get at SIGTERM

A drop-in for rclcpp_components' containers, so a launch file written for them runs unchanged:
- Arguments the container does not know (`node_container ... args="..."`, `arguments=[...]` of a
  ComposableNodeContainer) are named in one warning and ignored, as rclcpp's containers ignore them;
  everything after `--ros-args` is ROS's (`-r`, `-p`, `--params-file`, `--log-level`, ...).
- The executor is picked as ROS users pick it, by the executable's name:
    component_container           one thread serves ROS (the events executor; our default)
    component_container_mt        multi-threaded executor with `thread_num` threads (parameter,
                                  read-only, default: the number of CPUs, as rclcpp)
    component_container_isolated  every node's plugin code runs only on that node's own threads:
                                  never inline in a shared executor callback, even when cheap
                                  (rclcpp gives each component its own executor; here plugin code
                                  already runs on per-node threads, the shared executor only
                                  receives). `--use_multi_threaded_executor` makes the shared one
                                  multi-threaded, as with rclcpp's.
  `--executor` overrides the name's choice.

SIGTERM/SIGINT: sources stop, in-flight packets drain (bounded), every plugin's close() runs,
exit code 0. A container whose plugins reported a fatal error exits with 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import rclpy
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from schnitzel_stream_ros.runtime import fastdds_profile, ros_log_files, type_support_import
from schnitzel_stream_ros.runtime.container import DEFAULT_DRAIN_TIMEOUT_SEC, Container
from schnitzel_stream_ros.runtime.executors import DEFAULT_EXECUTOR, EXECUTOR_KINDS, ContainerExecutors

DEFAULT_NODE_NAME = 'component_container'
#: The executables and what their name means (executor; isolated plugin threads), as rclcpp's.
FLAVOURS = {
    'component_container': (DEFAULT_EXECUTOR, False),
    'component_container_mt': ('multi', False),
    'component_container_isolated': (DEFAULT_EXECUTOR, True),
}
#: rclcpp's component_container_isolated understands this one non-ROS argument.
ISOLATED_MT_FLAG = '--use_multi_threaded_executor'


def parse_args(argv: list[str], flavour: str = 'component_container') -> tuple[argparse.Namespace, list[str]]:
    """Our options, and the arguments nobody here knows (warned about and ignored, as rclcpp does)."""
    executor, isolated = FLAVOURS[flavour]
    parser = argparse.ArgumentParser(prog=flavour, description=__doc__.split('\n\n')[0], allow_abbrev=False)
    parser.add_argument('--executor', choices=EXECUTOR_KINDS, default=None)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--paused', action='store_true')
    parser.add_argument('--max-events', type=int, default=None)
    parser.add_argument('--pace-sources', action='store_true')  # graph config.pace_sources
    parser.add_argument('--drain-timeout', type=float, default=DEFAULT_DRAIN_TIMEOUT_SEC)
    if isolated:
        parser.add_argument(ISOLATED_MT_FLAG, action='store_true')
    args, unknown = parser.parse_known_args(argv)
    if args.executor is None:
        args.executor = 'multi' if isolated and args.use_multi_threaded_executor else executor
    args.isolated = isolated
    return args, unknown


def thread_count(node: Node, threads: int | None) -> int | None:
    """Threads of the multi executor: `--threads`, else the read-only parameter `thread_num`."""
    cpus = os.cpu_count() or 1
    descriptor = ParameterDescriptor(
        description='threads of the multi-threaded executor (component_container_mt)',
        read_only=True,
        integer_range=[IntegerRange(from_value=1, to_value=1024, step=0)],
    )
    value = node.declare_parameter('thread_num', cpus, descriptor).value
    return threads if threads is not None else value


def main(argv: list[str] | None = None, flavour: str = 'component_container') -> int:
    argv = list(sys.argv if argv is None else argv)
    args, unknown = parse_args(remove_ros_args(args=argv)[1:], flavour)
    context = rclpy.Context()
    ros_log_files.prepare()  # rcl's log file: our own directory, pruned, bounded (before the first init)
    fastdds_profile.prepare()  # DDS history pools start small (before the first init)
    type_support_import.prepare()  # message type support without the code generator (before the first node)
    rclpy.init(args=argv, context=context, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    node = Node(DEFAULT_NODE_NAME, context=context)  # __node/__ns remaps of the command line apply
    if unknown:
        node.get_logger().warning(f'ignoring arguments this container does not know: {" ".join(unknown)}')
    try:
        threads = thread_count(node, args.threads)
    except Exception as exc:  # thread_num out of range or of the wrong type: one line, no traceback
        print(f'{flavour}: parameter thread_num: {exc}', file=sys.stderr)
        node.destroy_node()
        rclpy.shutdown(context=context)
        return 2
    executors = ContainerExecutors(args.executor, context, threads)
    try:
        container = Container(
            node,
            executors.data,
            autostart=not args.paused,
            max_events=args.max_events,
            drain_timeout=args.drain_timeout,
            isolated=args.isolated,
            pace_sources=args.pace_sources,
        )
    except ValueError as exc:  # a container parameter out of range: one line, no traceback
        print(f'{flavour}: {exc}', file=sys.stderr)
        node.destroy_node()
        rclpy.shutdown(context=context)
        return 2
    container.serve()
    executors.control.add_node(node)
    executors.start()
    node.get_logger().info(
        f'container {node.get_fully_qualified_name()} ready (executor {args.executor}'
        + (f', {threads} threads' if args.executor == 'multi' else '')
        + (', plugin code isolated on node threads' if args.isolated else '')
        + ')'
    )
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


def main_mt() -> int:
    """`component_container_mt`: the multi-threaded executor with `thread_num` threads."""
    return main(flavour='component_container_mt')


def main_isolated() -> int:
    """`component_container_isolated`: plugin code only on its nodes' own threads."""
    return main(flavour='component_container_isolated')


if __name__ == '__main__':
    sys.exit(main())
