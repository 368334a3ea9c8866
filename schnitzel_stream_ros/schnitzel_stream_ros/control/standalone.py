"""`schnitzel-stream control GRAPH --control HOST:PORT`: the control plane for a graph run elsewhere.

Under `ros2 launch` (or beside a `schnitzel-stream run` without --control) no runner hosts the
control plane; this process does, as a node launch can start (`control_plane` executable):

    Node(package='schnitzel_stream_ros', executable='control_plane',
         arguments=['site.yaml', '--control', '127.0.0.1:8765'])

It reads the same graph file, polls each container's `~/_schnitzel/report` service (the snapshot
the runner gets) every --poll-sec for the metrics, listens to `/diagnostics`, events and decisions
like the runner's control plane, sets parameters through the nodes' services, and applies graphs
through `/<namespace>/_graph/apply` — the service of the runner or of the launched graph's
`start_gate --supervise`, the same reconciler `schnitzel-stream apply` reaches. Queue files named by
relative paths are found from this process's working directory (start it where the graph runs).
Stops on SIGINT/SIGTERM. Exit 2 for an invalid graph, 1 when it cannot start.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.graph.model import ValidatedGraph

DEFAULT_POLL_SEC = 0.5
APPLY_TIMEOUT_SEC = 120.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='schnitzel-stream control', description=__doc__.splitlines()[0])
    parser.add_argument('graph', help='the graph file that runs (YAML or JSON)')
    parser.add_argument('--control', metavar='HOST:PORT', default='127.0.0.1:8765',
                        help='listen here (default %(default)s; a non-loopback HOST needs TLS)')
    parser.add_argument('--control-dir', default='out/control', help='token file and audit log')
    parser.add_argument('--control-token-file', default=None, help='token file (default CONTROL_DIR/token)')
    parser.add_argument('--control-tls-cert', default=None)
    parser.add_argument('--control-tls-key', default=None)
    parser.add_argument('--namespace', default=None, help="the graph's namespace (default: the file's)")
    parser.add_argument('--poll-sec', type=float, default=DEFAULT_POLL_SEC, help='snapshot poll period')
    return parser


class _Site:
    """The graph as this process knows it, its containers' snapshots and its reconciler service."""

    def __init__(self, graph: ValidatedGraph, namespace: str) -> None:
        self.graph = graph
        self.namespace = namespace
        self.started = time.monotonic()
        self.bridge: Any = None
        self._clients: dict[str, Any] = {}

    def container_names(self) -> list[str]:
        prefix = '' if self.namespace == '/' else self.namespace.rstrip('/')
        return [f'{prefix}/{group.name}' for group in self.graph.containers]

    def snapshots(self) -> list[dict[str, Any]]:
        """The containers that answer now (one that does not is left out of this sample)."""
        from schnitzel_stream_ros.runtime.container_handles import ContainerClient

        found = []
        for name in self.container_names():
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = ContainerClient(name, self.bridge.node)
            try:
                found.append(client.snapshot(timeout=2.0))
            except (RuntimeError, ValueError):
                continue
        return found

    def submit(self, graph: ValidatedGraph, text: str, label: str, force: bool,
               dry_run: bool) -> tuple[bool, list[str]]:
        from schnitzel_stream_msgs.srv import ApplyGraph
        from schnitzel_stream_ros.control.ros_bridge import ParamRefused
        from schnitzel_stream_ros.runtime.graph_service import service_name

        request = ApplyGraph.Request(graph_text=text, source_label=label, dry_run=dry_run, force=force)
        try:
            answer = self.bridge.call(ApplyGraph, service_name(self.namespace), request, APPLY_TIMEOUT_SEC)
        except ParamRefused as exc:
            return False, [f'no reconciler answers: {exc}']
        if answer.success and not dry_run:
            self.graph = graph
        return bool(answer.success), list(answer.messages)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from schnitzel_stream_ros.control.config import ControlConfigError, build_config
    from schnitzel_stream_ros.control.plane import ControlPlane
    from schnitzel_stream_ros.control.server import ControlServer
    from schnitzel_stream_ros.graph.errors import GraphInvalid
    from schnitzel_stream_ros.graph.validate import compile_graph
    from schnitzel_stream_ros.observability.report import build_report

    try:
        graph = compile_graph(Path(args.graph))
    except GraphInvalid as exc:
        for error in exc.errors:
            print(str(error), file=sys.stderr)
        return 2
    try:
        config = build_config(args.control, control_dir=Path(args.control_dir),
                              token_file=Path(args.control_token_file) if args.control_token_file else None,
                              tls_cert=args.control_tls_cert, tls_key=args.control_tls_key)
    except ControlConfigError as exc:
        print(f'schnitzel-stream control: {exc}', file=sys.stderr)
        return 1
    site = _Site(graph, args.namespace or graph.spec.namespace)

    def report() -> dict[str, Any]:
        return build_report(graph_path=args.graph, engine='live', snapshots=plane.view.snapshots(),
                            graph=site.graph, stop_reason='running (snapshot)',
                            duration_sec=time.monotonic() - site.started, extra={'snapshot': True})

    plane = ControlPlane(config, graph=lambda: site.graph, submit=lambda: site.submit, report=report)
    site.bridge = plane.bridge
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = ControlServer(config, plane).start()
    except (OSError, RuntimeError) as exc:
        plane.close()
        print(f'schnitzel-stream control: {exc}', file=sys.stderr)
        return 1
    print(f'control: operator page and API on {server.url} (token in {config.token_source}) for '
          f'{", ".join(site.container_names())}', file=sys.stderr, flush=True)
    try:
        while not stop.wait(max(0.1, args.poll_sec)):
            plane.view.observe(site.snapshots())
    finally:
        server.stop()
        plane.close()
    print(json.dumps({'stopped': True, 'audit_lines': server.audit.written}), file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
