"""`start_gate`: opens a graph's start gate once launch (or an operator) has loaded and wired it.

    ros2 run schnitzel_stream_ros start_gate --graph site.yaml      # containers started --paused
    start_gate --plan '{"containers": {...}, "cross_topics": {...}}'  # what generated launch files pass

Waits (as long as it takes, or --timeout) until every container of the graph lists all its nodes and
every topic that crosses containers is matched, logging what it still waits for every 10 s; then
calls `~/_schnitzel/start` on each container and exits 0. Exit 1 on --timeout, 2 on a bad plan or
graph. The rule and why: runtime/start_gate.py, docs/wiring.md ("Start gate").
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from schnitzel_stream_ros.runtime.start_gate import GatePlan, open_gate, parse_await, wait_until_wired

LOG_EVERY_SEC = 10.0
_SHOW_MISSING = 5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='start_gate', description=__doc__.split('\n\n')[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('--plan', help='the gate plan as JSON (written by `schnitzel-stream compile`)')
    what.add_argument('--graph', help='a graph file: the plan is derived from it (validated first)')
    parser.add_argument('--await-subscribers', action='append', metavar='TOPIC[=N]',
                        help='also wait for N (default 1) outside subscriptions on TOPIC; repeatable')
    parser.add_argument('--timeout', type=float, default=0.0,
                        help='give up after this many seconds (0: never)')
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace) -> GatePlan:
    awaited = parse_await(args.await_subscribers)
    if args.plan is not None:
        return GatePlan.from_json(args.plan).awaiting(awaited)
    from schnitzel_stream_ros.graph.validate import GraphInvalid, compile_graph

    try:
        return GatePlan.from_graph(compile_graph(args.graph)).awaiting(awaited)
    except GraphInvalid as exc:
        raise ValueError('\n'.join(str(e) for e in exc.errors)) from None


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.node import Node
    from rclpy.utilities import remove_ros_args

    from schnitzel_stream_ros.runtime.container_handles import ContainerClient, init_context
    from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

    argv = list(sys.argv if argv is None else argv)
    args = parse_args(remove_ros_args(args=argv)[1:])
    try:
        plan = _plan(args)
    except (ValueError, OSError) as exc:
        print(f'start_gate: {exc}', file=sys.stderr)
        return 2
    context = init_context(argv)
    node = Node('start_gate', context=context)  # __node/__ns remaps of the command line apply
    executor = make_executor('single', context)
    executor.add_node(node)
    spinner = Spinner(executor, context, 'start-gate-executor').start()
    log = node.get_logger()
    clients = [ContainerClient(name, node) for name in plan.containers]
    stop = threading.Event()
    t0 = time.monotonic()
    last_log = [t0]

    def waiting(missing: list[str]) -> None:
        now = time.monotonic()
        if now - last_log[0] >= LOG_EVERY_SEC:
            last_log[0] = now
            more = f' (+{len(missing) - _SHOW_MISSING} more)' if len(missing) > _SHOW_MISSING else ''
            log.info(f'waiting {now - t0:.0f} s for: {"; ".join(missing[:_SHOW_MISSING])}{more}')

    try:
        missing = wait_until_wired(
            plan, clients, stop=stop, timeout=args.timeout or None, on_waiting=waiting, poll_sec=0.2
        )
        if missing:
            log.error(f'gave up after {args.timeout:g} s; still missing: {"; ".join(missing)}')
            return 1
        open_gate(clients)
        nodes = sum(len(v) for v in plan.containers.values())
        took = time.monotonic() - t0
        log.info(f'graph started: {nodes} nodes in {len(clients)} containers after {took:.1f} s')
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        for client in clients:
            client.destroy()
        spinner.stop()
        node.destroy_node()
        rclpy.shutdown(context=context)


if __name__ == '__main__':
    sys.exit(main())
