"""`start_gate`: opens a graph's start gate once launch (or an operator) has loaded and wired it.

    ros2 run schnitzel_stream_ros start_gate --graph site.yaml      # containers started --paused
    start_gate --plan '{"containers": {...}, "cross_topics": {...}}'  # what generated launch files pass

Waits (as long as it takes, or --timeout) until every container of the graph lists all its nodes and
every topic that crosses containers is matched, logging what it still waits for every 10 s; then
calls `~/_schnitzel/start` on each container and exits 0. Exit 1 on --timeout, 2 on a bad plan or
graph. The rule and why: runtime/start_gate.py, docs/wiring.md ("Start gate").

With `--supervise` it stays, as the graph's supervisor under launch: a container that launch
respawned (it comes back empty — launch_ros does not load its nodes again) gets its nodes loaded,
wired and started again (runtime/reconciler.py, LaunchSupervisor). The load requests come from
`--graph`, or from `--requests JSON` (what generated launch files pass). It ends on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from schnitzel_stream_ros.graph.wiring import LoadRequest
from schnitzel_stream_ros.runtime.start_gate import (
    GatePlan,
    open_gate,
    parse_await,
    requests_from_json,
    requests_to_json,
    wait_until_wired,
)

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
    parser.add_argument('--supervise', action='store_true',
                        help='stay after the start and reload containers that launch respawned')
    parser.add_argument('--requests', default=None,
                        help='load requests per container as JSON (with --plan --supervise)')
    args = parser.parse_args(argv)
    if args.supervise and args.plan is not None and args.requests is None:
        parser.error('--supervise with --plan needs --requests')
    return args


def _plan(args: argparse.Namespace) -> tuple[GatePlan, dict[str, tuple[LoadRequest, ...]], Any]:
    """The gate plan, (for --supervise) the load requests per container full name, and the graph
    (None with --plan)."""
    awaited = parse_await(args.await_subscribers)
    if args.plan is not None:
        plan = GatePlan.from_json(args.plan).awaiting(awaited)
        return plan, requests_from_json(args.requests) if args.requests is not None else {}, None
    from schnitzel_stream_ros.graph.validate import GraphInvalid, compile_graph

    try:
        graph = compile_graph(args.graph)
    except GraphInvalid as exc:
        raise ValueError('\n'.join(str(e) for e in exc.errors)) from None
    return GatePlan.from_graph(graph).awaiting(awaited), requests_from_json(requests_to_json(graph)), graph


class _GroupHandle:
    """A launched container as the reconciler addresses it: by its group name (graph apply)."""

    restartable = False  # launch restarts it; the supervisor reloads it

    def __init__(self, group: str, client: Any) -> None:
        self.name = group
        self.client = client
        self.full_name = client.full_name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.client, attr)

    def failure(self) -> str | None:
        return None


SUPERVISE_POLL_SEC = 0.2


def _supervise(
    plan: GatePlan, requests: dict, clients: list, stop: threading.Event, node: Any, graph: Any
) -> None:
    """Until SIGINT/SIGTERM: bring back the nodes of containers launch respawned; with --graph also
    serve `schnitzel-stream apply` (/<ns>/_graph/apply) through the same reconciler."""
    import signal

    from schnitzel_stream_ros.runtime.reconciler import LaunchSupervisor, Reconciler

    log = node.get_logger()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    supervisor = LaunchSupervisor(requests, list(plan.cross_topics), clients, log=log.info)
    service = reconciler = None
    if graph is not None:
        from schnitzel_stream_ros.runtime.graph_service import GraphService

        by_name = {c.full_name: c for c in clients}
        namespace = graph.spec.namespace
        handles = [_GroupHandle(g.name, by_name[_container(namespace, g.name)]) for g in graph.containers]
        reconciler = Reconciler(graph, handles, log=log.info)
        service = GraphService(graph.spec.namespace)

    def apply(new: Any, force: bool, dry_run: bool) -> tuple[bool, list[str]]:
        ok, lines = reconciler.apply(new, force=force, dry_run=dry_run)
        if ok and not dry_run:  # what the supervisor brings back follows the applied graph
            supervisor.requests = requests_from_json(requests_to_json(reconciler.graph))
            supervisor.cross_topics = set(GatePlan.from_graph(reconciler.graph).cross_topics)
        return ok, lines

    from diagnostic_msgs.msg import DiagnosticArray

    from schnitzel_stream_ros.runtime.diagnostics import DIAGNOSTICS_TOPIC, QOS, to_message

    diagnostics = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, QOS)
    published_at = 0.0
    log.info('supervising: a respawned container gets its nodes loaded again')
    try:
        while not stop.wait(SUPERVISE_POLL_SEC):
            supervisor.check(stop)
            if service is not None:
                service.run_pending(apply)
            now = time.monotonic()
            if now - published_at >= 1.0:  # the supervisor's view of its containers on /diagnostics
                published_at = now
                diagnostics.publish(to_message(supervisor.statuses(now), node.get_clock().now().to_msg()))
    finally:
        if service is not None:
            service.close()


def _container(namespace: str, group: str) -> str:
    return ('' if namespace == '/' else namespace.rstrip('/')) + '/' + group


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.node import Node
    from rclpy.utilities import remove_ros_args

    from schnitzel_stream_ros.runtime.container_handles import ContainerClient, init_context
    from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

    argv = list(sys.argv if argv is None else argv)
    args = parse_args(remove_ros_args(args=argv)[1:])
    try:
        plan, requests, graph = _plan(args)
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
        if args.supervise:
            _supervise(plan, requests, clients, stop, node, graph)
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
