"""`schnitzel-stream apply NEW_GRAPH`: change a running graph into a new version of it, in place.

    schnitzel-stream apply site_v2.yaml [--dry-run] [--force] [--namespace /site] [--timeout 60]

The new graph is validated here first (every error, one line each, exit 2: nothing is sent), then
its text goes to the running graph's reconciler (`/<namespace>/_graph/apply`, the runner that runs
it — runtime/graph_service.py), which validates it again, computes the diff against what runs
(graph/diff.py) and applies it through the containers' composition services without restarting any
container. Output: one line per change applied, or per reason it was refused. Exit 0 applied (or
nothing to do), 1 refused or unreachable, 2 invalid graph.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_REFUSED, EXIT_INVALID = 0, 1, 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='schnitzel-stream apply', description=__doc__.split('\n\n')[0])
    parser.add_argument('graph', help='the new version of the running graph (YAML or JSON)')
    parser.add_argument('--dry-run', action='store_true', help='validate and show the diff; change nothing')
    parser.add_argument('--force', action='store_true',
                        help='remove nodes even if their inbox still holds packets (those are dropped)')
    parser.add_argument('--namespace', default=None,
                        help="the running graph's namespace (default: the file's)")
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='seconds to wait for the running graph to be found and to answer')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    from schnitzel_stream_ros.runtime.graph_service import MAX_GRAPH_TEXT, service_name, validate_text

    path = Path(args.graph)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f'{path}: cannot read graph file: {exc.strerror or exc}', file=sys.stderr)
        return EXIT_INVALID
    if len(raw) > MAX_GRAPH_TEXT:
        print(f'{path}: larger than {MAX_GRAPH_TEXT} bytes', file=sys.stderr)
        return EXIT_INVALID
    text = raw.decode('utf-8', 'replace')
    graph, errors = validate_text(text, str(path))
    if graph is None:
        for line in errors:
            print(line, file=sys.stderr)
        return EXIT_INVALID
    namespace = args.namespace or graph.spec.namespace
    return _call(service_name(namespace), text, str(path), args)


def _call(service: str, text: str, label: str, args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.node import Node

    from schnitzel_stream_msgs.srv import ApplyGraph
    from schnitzel_stream_ros.runtime.container_handles import init_context
    from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

    context = init_context()
    node = Node('schnitzel_stream_apply', context=context)
    executor = make_executor('single', context)
    executor.add_node(node)
    spinner = Spinner(executor, context, 'apply-client').start()
    try:
        client = node.create_client(ApplyGraph, service)
        # one budget for finding the service and for its answer: on a loaded site DDS discovery of
        # the runner's service can itself take seconds, and the operator's --timeout is what they meant
        deadline = time.monotonic() + args.timeout
        if not client.wait_for_service(timeout_sec=args.timeout):
            print(f'apply: no running graph answers on {service} within {args.timeout:.0f} s',
                  file=sys.stderr)
            return EXIT_REFUSED
        request = ApplyGraph.Request(
            graph_text=text, source_label=label, dry_run=args.dry_run, force=args.force
        )
        future = client.call_async(request)
        while not future.done():
            if time.monotonic() > deadline:
                print(f'apply: {service} did not answer in {args.timeout:.0f} s', file=sys.stderr)
                return EXIT_REFUSED
            time.sleep(0.02)
        response = future.result()
        for line in response.messages:
            print(line, file=sys.stdout if response.success else sys.stderr)
        return EXIT_OK if response.success else EXIT_REFUSED
    finally:
        spinner.stop()
        node.destroy_node()
        rclpy.shutdown(context=context)


if __name__ == '__main__':
    sys.exit(main())
