"""`lifecycle_manager`: brings a graph of unconfigured managed nodes up in dependency order.

    ros2 run schnitzel_stream_ros lifecycle_manager --graph site.yaml
    lifecycle_manager --plan '{"containers": ..., "cross_topics": ..., "order": [...]}'   # generated launch

Waits (up to --timeout) until every container lists all its nodes, then configures every node,
waits until every topic crossing containers is matched, and activates every node — consumers
before producers (runtime/lifecycle_manager.py). Through the standard lifecycle services
(`~/change_state`, `~/get_state`), as any lifecycle manager would. Exit 0 when the graph is up; 1
with one line naming the node and the reason when a transition failed or --timeout passed; 2 on a
bad plan or graph.

With `--supervise` it stays after the bring-up (what generated launch files do): nodes that come
back unconfigured — a container launch respawned, its nodes loaded again by the start gate's
supervisor — are brought up again. It ends on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from schnitzel_stream_ros.runtime.lifecycle_manager import BringUpPlan, bring_up, supervise
from schnitzel_stream_ros.runtime.start_gate import GatePlan, wait_until_wired

DEFAULT_TIMEOUT_SEC = 60.0
CALL_TIMEOUT_SEC = 20.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='lifecycle_manager', description=__doc__.split('\n\n')[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('--plan', help='the bring-up plan as JSON (written by `schnitzel-stream compile`)')
    what.add_argument('--graph', help='a graph file: the plan is derived from it (validated first)')
    parser.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT_SEC,
                        help=f'for the loads and the wiring, seconds (default {DEFAULT_TIMEOUT_SEC:g})')
    parser.add_argument('--supervise', action='store_true',
                        help='stay, and bring nodes that come back unconfigured (a respawn) up again')
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace) -> BringUpPlan:
    if args.plan is not None:
        return BringUpPlan.from_json(args.plan)
    from schnitzel_stream_ros.graph.validate import GraphInvalid, compile_graph

    try:
        return BringUpPlan.from_graph(compile_graph(args.graph))
    except GraphInvalid as exc:
        raise ValueError('\n'.join(str(e) for e in exc.errors)) from None


class ServiceTarget:
    """The nodes' lifecycle services and their containers' reports, from one rclpy node."""

    def __init__(self, node: Any, plan: BringUpPlan, containers: dict[str, Any]) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.node = node
        self.plan = plan
        self.containers = containers
        self._change = {n: node.create_client(ChangeState, f'{n}/change_state') for n in plan.order}
        self._get = {n: node.create_client(GetState, f'{n}/get_state') for n in plan.order}

    @staticmethod
    def _call(client: Any, request: Any) -> Any:
        if not client.wait_for_service(timeout_sec=CALL_TIMEOUT_SEC):
            raise RuntimeError(f'service {client.srv_name} not available after {CALL_TIMEOUT_SEC:g} s')
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(CALL_TIMEOUT_SEC):
            raise RuntimeError(f'service {client.srv_name} did not answer in {CALL_TIMEOUT_SEC:g} s')
        return future.result()

    def state(self, node: str) -> str:
        from lifecycle_msgs.srv import GetState

        return self._call(self._get[node], GetState.Request()).current_state.label

    def change(self, node: str, label: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(label=label))
        return bool(self._call(self._change[node], request).success)

    def states(self) -> dict[str, str]:
        """node full name -> lifecycle state, for every node of the containers that answer now."""
        out: dict[str, str] = {}
        for container, nodes in self.plan.gate.containers.items():
            try:
                lifecycle = self.containers[container].snapshot().get('state', {}).get('lifecycle', {})
            except Exception:  # not reachable (respawning): asked again at the next poll
                continue
            for node in nodes:
                state = lifecycle.get(node.rsplit('/', 1)[-1]) if isinstance(lifecycle, dict) else None
                if isinstance(state, str):
                    out[node] = state
        return out

    def reason(self, node: str) -> str:
        try:
            report = self.containers[self.plan.container_of(node)].snapshot()
        except Exception as exc:  # the reason is a courtesy: the failure itself is already known
            return f'(the container did not say why: {exc})'
        errors = report.get('state', {}).get('lifecycle_errors', {})
        text = errors.get(node.rsplit('/', 1)[-1], '') if isinstance(errors, dict) else ''
        return str(text)[:2000]

    def destroy(self) -> None:
        for client in (*self._change.values(), *self._get.values()):
            self.node.destroy_client(client)


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
        print(f'lifecycle_manager: {exc}', file=sys.stderr)
        return 2
    context = init_context(argv)
    node = Node('lifecycle_manager', context=context)  # __node/__ns remaps of the command line apply
    executor = make_executor('single', context)
    executor.add_node(node)
    spinner = Spinner(executor, context, 'lifecycle-manager-executor').start()
    log = node.get_logger()
    clients = {name: ContainerClient(name, node) for name in plan.gate.containers}
    target = ServiceTarget(node, plan, clients)
    stop = threading.Event()
    t0 = time.monotonic()
    try:
        loaded = GatePlan(plan.gate.containers, {})
        containers = list(clients.values())
        missing = wait_until_wired(loaded, containers, stop=stop, timeout=args.timeout, poll_sec=0.2)
        if missing:
            log.error(f'gave up after {args.timeout:g} s; not loaded: {"; ".join(missing)}')
            return 1

        def wired() -> list[str]:
            return wait_until_wired(plan.gate, containers, stop=stop, timeout=args.timeout, poll_sec=0.2)

        failure = bring_up(plan, target, wired, log=log.info)
        if failure is not None:
            log.error(failure)
            return 1
        log.info(json.dumps({'graph_up': len(plan.order), 'seconds': round(time.monotonic() - t0, 2)}))
        if args.supervise:
            import signal

            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            log.info('supervising: nodes that come back unconfigured are brought up again')
            supervise(plan, target, target.states, wired, stop, log.info)
        return 0
    except RuntimeError as exc:  # a service that never came or never answered
        log.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        target.destroy()
        for client in clients.values():
            client.destroy()
        spinner.stop()
        node.destroy_node()
        rclpy.shutdown(context=context)


if __name__ == '__main__':
    sys.exit(main())
