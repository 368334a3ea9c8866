"""`schnitzel-stream replay FILE --graph G`: run graph G fed by the recording FILE.

    schnitzel-stream replay FILE --graph G [--rate recorded|max] [any `run` option ...]

The graph names its replay source once, with the file and rate left to this command:

    - id: cam0
      plugin: McapReplaySource
      config:
        path: ${oc.env:SCHNITZEL_STREAM_REPLAY_FILE}
        rate: ${oc.env:SCHNITZEL_STREAM_REPLAY_RATE,recorded}

This verb sets those two variables and hands over to `schnitzel-stream run` (validation, report,
exit codes are run's). The same graph runs with `schnitzel-stream run` when the variables are set
by hand, or with a fixed `path:` — the verb only saves naming the file in the graph.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

FILE_VARIABLE = 'SCHNITZEL_STREAM_REPLAY_FILE'
RATE_VARIABLE = 'SCHNITZEL_STREAM_REPLAY_RATE'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='schnitzel-stream replay',
        description='Run a graph fed by an MCAP recording (its McapReplaySource reads '
                    f'${{oc.env:{FILE_VARIABLE}}}). Other options go to `schnitzel-stream run`.')
    parser.add_argument('file', help='MCAP recording')
    parser.add_argument('--graph', required=True, help='graph with a McapReplaySource')
    parser.add_argument('--rate', choices=('recorded', 'max'), default='recorded',
                        help='recorded timing (default) or as fast as the graph takes it')
    return parser


def main(argv: list[str] | None = None) -> int:
    args, run_args = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if not Path(args.file).is_file():
        print(f'schnitzel-stream replay: {args.file}: no such file', file=sys.stderr)
        return 1
    os.environ[FILE_VARIABLE] = str(Path(args.file).resolve())
    os.environ[RATE_VARIABLE] = args.rate
    from schnitzel_stream_ros.runtime import runner

    return int(runner.main([args.graph, *run_args]) or 0)
