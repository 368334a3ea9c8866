"""`schnitzel-stream run GRAPH`: validate, run (deterministic or live), write the run report.

    schnitzel-stream run GRAPH [--max-events N] [--duration S] [--report-json PATH]
                               [--mode live|deterministic] [--executor events|single|multi]
                               [--drain-timeout S] [--diagnostics-period S] [--quiet]

- The graph is validated first (fail closed): an invalid graph prints every error, one per line,
  and exits 2 (a report, when asked for, says status error with the same errors).
- `--mode live` (default) runs the container group(s) concurrently — in this process for one group,
  one `component_container` process per group otherwise; `--mode deterministic` runs the upstream
  semantics in one thread without DDS (tests, replays).
- Stops at the end of finite sources, after `--max-events` source emissions, after `--duration`
  seconds, or on SIGINT/SIGTERM; in every case in-flight packets drain (bounded by
  `--drain-timeout`), every plugin's close() runs, the report is written and no child process stays.
- When finite sources end, durable sinks keep delivering what they accepted until their queue is
  empty or `--drain-timeout` passes (default 30 s); what is left is reported (warning) and is
  delivered at the next start. SIGINT/SIGTERM during that drain stop at once; nothing is lost.
- Exit code (observability/report.py, "Outcome"): 0 ok; 3 degraded (finished, nothing lost, something
  needs a look); 1 failed (the run failed, or it lost data: the report's `lost` says what);
  2 an invalid graph.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.cli import non_negative_float, non_negative_int, positive_float
from schnitzel_stream_ros.graph.errors import GraphInvalid
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.observability.health import DEFAULT_PERIOD_SEC
from schnitzel_stream_ros.observability.progress import ProgressLine
from schnitzel_stream_ros.observability.report import OUTCOME_EXIT_CODES, build_report, write_report
from schnitzel_stream_ros.runtime import ros_log_files
from schnitzel_stream_ros.runtime.executors import DEFAULT_EXECUTOR, EXECUTOR_KINDS
from schnitzel_stream_ros.runtime.start_gate import parse_await

MODES = ('live', 'deterministic')
DEFAULT_RUN_DRAIN_SEC = 30.0
EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_DEGRADED = 0, 1, 2, 3
DEFAULT_CONTROL_DIR = 'out/control'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='schnitzel-stream run', description='Run a graph and report on it.')
    parser.add_argument('graph', help='graph file (YAML or JSON, version 2)')
    parser.add_argument(
        '--max-events',
        type=non_negative_int,
        default=None,
        help='stop after N source emissions (all sources together)',
    )
    parser.add_argument('--duration', type=positive_float, default=None, help='stop after S seconds')
    parser.add_argument('--report-json', default=None, help='write the run report (JSON) to this path')
    parser.add_argument('--mode', choices=MODES, default='live', help='live (default) or deterministic')
    parser.add_argument(
        '--executor',
        choices=EXECUTOR_KINDS,
        default=DEFAULT_EXECUTOR,
        help='rclpy executor of the containers (live mode)',
    )
    parser.add_argument(
        '--drain-timeout',
        type=positive_float,
        default=DEFAULT_RUN_DRAIN_SEC,
        help='how long the end of a run may drain: in-flight packets, and the undelivered backlog of '
        'durable sinks after finite sources end (seconds, default %(default)g)',
    )
    parser.add_argument(
        '--container-restarts',
        type=non_negative_int,
        default=None,
        help='restarts of a dead container process within 60 s before the run fails (default 5; '
        '0: a dead container ends the run)',
    )
    parser.add_argument(
        '--diagnostics-period',
        type=non_negative_float,
        default=DEFAULT_PERIOD_SEC,
        help='live mode: seconds between /diagnostics messages of each container (0 = none)',
    )
    parser.add_argument(
        '--await-subscribers',
        action='append',
        metavar='TOPIC[=N]',
        help='live mode: the start gate also waits (up to 15 s) for N (default 1) outside subscriptions on '
        'TOPIC, e.g. a recorder that must get the first packet; repeatable',
    )
    control = parser.add_argument_group('control plane (HTTP API + operator page, docs/control.md)')
    control.add_argument('--control', metavar='HOST:PORT', default=None,
                         help='serve the API and the operator page here (live mode), e.g. 127.0.0.1:8765; '
                         'a non-loopback HOST needs --control-tls-cert/--control-tls-key')
    control.add_argument('--control-dir', default=DEFAULT_CONTROL_DIR,
                         help='token file (created if absent) and audit log (default %(default)s)')
    control.add_argument('--control-token-file', default=None,
                         help='file holding the token (default CONTROL_DIR/token); '
                         'SCHNITZEL_CONTROL_TOKEN wins')
    control.add_argument('--control-tls-cert', default=None, help='PEM certificate for HTTPS')
    control.add_argument('--control-tls-key', default=None, help='PEM private key for HTTPS')
    parser.add_argument('--host', default=None, metavar='HOST',
                        help="run only HOST's part of the graph (its container groups; docs/hosts.md); the "
                        "report's cross_host lists the edges to and from other hosts")
    parser.add_argument('--quiet', action='store_true', help='no progress line')
    parser.add_argument(
        '--timeline', default=None, help='append the metrics of every second to this JSONL file (for plots)'
    )
    return parser


class _StopOnSignal:
    """SIGINT/SIGTERM set the run's stop event (the run then ends cleanly and reports)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _summary(report: dict[str, Any]) -> str:
    m = report['metrics']
    lost = {k: v for k, v in report.get('lost', {}).items() if v}
    return (
        f'run {report["status"]}: {report["stop_reason"]} after {report["duration_sec"]:.1f} s, '
        f'{m.get("packets.source_emitted_total", 0)} emitted, {m.get("packets.consumed_total", 0)} consumed, '
        f'{m.get("packets.dropped_total", 0)} dropped; outcome {report.get("outcome", "failed")}'
        + (f' (lost: {", ".join(f"{k} {v}" for k, v in lost.items())})' if lost else '')
    )


def _start_control(args: argparse.Namespace, run: Any, graph_path: str, observers: list[Any]) -> Any:
    """The control plane of this run (control/): API + page on --control, fed by the progress snapshots."""
    import time

    from schnitzel_stream_ros.control.config import build_config
    from schnitzel_stream_ros.control.plane import ControlPlane
    from schnitzel_stream_ros.control.server import ControlServer

    config = build_config(
        args.control, control_dir=Path(args.control_dir),
        token_file=Path(args.control_token_file) if args.control_token_file else None,
        tls_cert=args.control_tls_cert, tls_key=args.control_tls_key, report_path=args.report_json,
    )
    started = time.monotonic()

    def submit() -> Any:
        service = run.graph_service
        if service is None:
            return None
        return lambda graph, _text, _label, force, dry_run: service.submit(graph, force, dry_run)

    def report() -> dict[str, Any]:
        return build_report(graph_path=graph_path, engine='live', snapshots=plane.view.snapshots(),
                            graph=run.graph, stop_reason='running (snapshot)',
                            duration_sec=time.monotonic() - started,
                            extra={'mode': 'live', 'snapshot': True})

    plane = ControlPlane(config, graph=lambda: run.graph, submit=submit, report=report)
    try:
        server = ControlServer(config, plane).start()
    except BaseException:
        plane.close()
        raise
    observers.append(plane.view.observe)
    print(f'control: operator page and API on {server.url} (token in {config.token_source})', file=sys.stderr,
          flush=True)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        awaited = parse_await(args.await_subscribers)
    except ValueError as exc:
        parser.error(str(exc))
    graph_path = str(args.graph)
    engine_name = args.mode
    try:
        graph = compile_graph(Path(args.graph))
    except GraphInvalid as exc:
        for error in exc.errors:
            print(str(error), file=sys.stderr)
        if args.report_json:
            write_report(
                build_report(
                    graph_path=graph_path,
                    engine=engine_name,
                    snapshots=[],
                    errors=[str(e) for e in exc.errors],
                    stop_reason='invalid graph',
                ),
                args.report_json,
            )
        return EXIT_INVALID
    if args.host is not None:
        from schnitzel_stream_ros.graph.placement import host_part

        try:
            graph = host_part(graph, args.host)
        except ValueError as exc:
            print(f'schnitzel-stream run: {exc}', file=sys.stderr)
            return EXIT_ERROR
    for warning in graph.warnings:  # what the graph says but this run ignores, one line each
        print(str(warning), file=sys.stderr)

    progress = ProgressLine(enabled=not args.quiet)
    observers = [progress.update]
    if args.timeline:
        from schnitzel_stream_ros.observability.timeline import TimelineWriter

        labels = {(e.topic, e.dst, e.dst_port): e.label for e in graph.edges}
        timeline = TimelineWriter(args.timeline, labels=labels)
        observers.append(timeline.record)

    def on_progress(snapshots: Any) -> None:
        snapshots = list(snapshots)
        for observe in observers:
            observe(snapshots)

    if args.control and args.mode != 'live':
        parser.error('--control needs --mode live')
    with _StopOnSignal() as stopper:
        if args.mode == 'deterministic':
            from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

            engine = DeterministicEngine(
                graph,
                max_events=args.max_events,
                duration_sec=args.duration,
                stop_event=stopper.event,
                on_progress=lambda e: on_progress([e.snapshot()]),
            )
            outcome = engine.run()
            extra: dict[str, Any] = {}
        else:
            from schnitzel_stream_ros.runtime.live_run import LiveRun

            run = LiveRun(
                graph,
                max_events=args.max_events,
                duration_sec=args.duration,
                executor=args.executor,
                drain_timeout=args.drain_timeout,
                backlog_timeout=args.drain_timeout,
                stop_event=stopper.event,
                on_progress=on_progress,
                diagnostics_period_sec=args.diagnostics_period,
                await_subscribers=awaited,
                container_restarts=args.container_restarts,
            )
            control = None
            if args.control:
                try:
                    control = _start_control(args, run, graph_path, observers)
                except (ValueError, OSError, RuntimeError) as exc:
                    print(f'schnitzel-stream run: {exc}', file=sys.stderr)
                    return EXIT_ERROR
            try:
                outcome = run.run()
            finally:
                if control is not None:
                    control.stop()
                    control.plane.close()
            extra = {
                'executor': args.executor,
                'containers': [g.name for g in graph.containers],
                **run.report_extra(),
            }
            if args.host is not None:
                from schnitzel_stream_ros.graph.placement import cross_host_section

                extra['cross_host'] = cross_host_section(graph, outcome.snapshots)
        if stopper.signum is not None and outcome.stop_reason in ('stopped', 'error') and not outcome.errors:
            outcome.stop_reason = f'signal {signal.Signals(stopper.signum).name}'
    progress.update(outcome.snapshots, force=True)
    progress.finish()
    # what the run's own files did (docs/files.md): rotations and deletions, counted
    extra['files'] = {'ros_log': ros_log_files.counts()}
    if args.timeline:
        extra['files']['timeline'] = timeline.counts()
    report = build_report(
        graph_path=graph_path,
        engine=engine_name,
        snapshots=outcome.snapshots,
        graph=graph,
        errors=outcome.errors,
        warnings=outcome.warnings,
        stop_reason=outcome.stop_reason,
        duration_sec=outcome.duration_sec,
        extra={'mode': args.mode, 'graph_warnings': [str(w) for w in graph.warnings], **extra},
    )
    if args.report_json:
        write_report(report, args.report_json)
    print(_summary(report), file=sys.stderr)
    for line in report['warnings']:
        print(f'warning: {line}', file=sys.stderr)
    for line in report['errors']:
        print(f'error: {line}', file=sys.stderr)
    return OUTCOME_EXIT_CODES.get(report['outcome'], EXIT_ERROR)


if __name__ == '__main__':
    sys.exit(main())
