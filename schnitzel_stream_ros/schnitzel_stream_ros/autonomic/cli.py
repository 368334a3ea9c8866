"""`schnitzel-stream controller`: the operator's override of a running AutonomicController.

    schnitzel-stream controller pin /site/ctl cam_fps 10        # hold knob cam_fps at 10
    schnitzel-stream controller unpin /site/ctl cam_fps         # the rules act on it again
    schnitzel-stream controller mode /site/ctl low_power        # hold a mode ('' or --lift: the rules decide)
    schnitzel-stream controller decisions /site/ctl --count 5   # print decisions as they are made (JSONL)

Nothing here is special: `pin`, `unpin` and `mode` set the controller's parameters `pin.<knob>` and
`pin_mode` through its standard parameter service, exactly as `ros2 param set` (or a control plane)
does, and `decisions` reads its `~/decisions` topic (std_msgs/String JSON). The controller refuses a
pin outside the knob's bounds (exit 1, with its reason). Exit 0 done, 1 refused or unreachable.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

EXIT_OK, EXIT_REFUSED = 0, 1
MODES = ('normal', 'low_power', 'low_bandwidth')


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='schnitzel-stream controller', description=__doc__.split('\n\n')[0])
    verbs = parser.add_subparsers(dest='action', required=True, metavar='ACTION')
    pin = verbs.add_parser('pin', help='hold a knob at a value')
    pin.add_argument('controller', help='node name of the controller, e.g. /site/ctl')
    pin.add_argument('knob')
    pin.add_argument('value', type=float)
    unpin = verbs.add_parser('unpin', help='lift the pin of a knob')
    unpin.add_argument('controller')
    unpin.add_argument('knob')
    mode = verbs.add_parser('mode', help="hold a mode ('' lifts the pin)")
    mode.add_argument('controller')
    mode.add_argument('mode', nargs='?', default='', choices=('', *MODES))
    mode.add_argument('--lift', action='store_true', help='lift the mode pin')
    decisions = verbs.add_parser('decisions', help="print the controller's decisions as they are made")
    decisions.add_argument('controller')
    decisions.add_argument('--count', type=int, default=0, help='stop after this many (0: until --duration)')
    decisions.add_argument('--duration', type=float, default=0.0,
                           help='stop after this many seconds (0: never)')
    for sub in (pin, unpin, mode, decisions):
        sub.add_argument('--timeout', type=float, default=10.0, help='seconds to wait for the controller')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    controller = args.controller if args.controller.startswith('/') else f'/{args.controller}'
    with _Peer() as peer:
        if args.action == 'decisions':
            return peer.echo(f'{controller}/decisions', args.count, args.duration)
        if args.action == 'pin':
            name, value = f'pin.{args.knob}', args.value
        elif args.action == 'unpin':
            name, value = f'pin.{args.knob}', ''
        else:
            name, value = 'pin_mode', '' if args.lift else args.mode
        return peer.set(controller, name, value, args.timeout)


class _Peer:
    """A short-lived rclpy node on the environment's domain."""

    def __enter__(self) -> _Peer:
        from rclpy.node import Node

        from schnitzel_stream_ros.runtime.container_handles import init_context
        from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

        self.context = init_context()
        self.node = Node('schnitzel_stream_control', context=self.context)
        executor = make_executor('single', self.context)
        executor.add_node(self.node)
        self.spinner = Spinner(executor, self.context, 'control-client').start()
        return self

    def __exit__(self, *_exc: object) -> None:
        import rclpy

        self.spinner.stop()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def set(self, controller: str, name: str, value: Any, timeout: float) -> int:
        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, controller)
        if not client.wait_for_services(timeout_sec=timeout):
            print(f'control: no node {controller} answers (is the graph running, the name right?)',
                  file=sys.stderr)
            return EXIT_REFUSED
        future = client.set_parameters([Parameter(name, value=value)])
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                print(f'control: {controller} did not answer in {timeout:.0f} s', file=sys.stderr)
                return EXIT_REFUSED
            time.sleep(0.02)
        result = future.result().results[0]
        if not result.successful:
            print(f'control: {controller} refused {name}={value!r}: {result.reason}', file=sys.stderr)
            return EXIT_REFUSED
        print(f'{controller}: {name} = {value!r}')
        return EXIT_OK

    def echo(self, topic: str, count: int, duration: float) -> int:
        from std_msgs.msg import String

        seen = []

        def on_message(msg: String) -> None:
            try:
                record = json.loads(msg.data)
            except ValueError:
                return  # not ours: never crash on what a peer publishes
            seen.append(record)
            print(json.dumps(record, sort_keys=True), flush=True)

        self.node.create_subscription(String, topic, on_message, 100)
        deadline = time.monotonic() + duration if duration > 0 else None
        while (count <= 0 or len(seen) < count) and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
