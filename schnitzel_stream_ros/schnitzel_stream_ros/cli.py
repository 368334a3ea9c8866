"""`schnitzel-stream` command line: a table of verbs, each implemented in the module it belongs to.

Registering a verb is one line in VERBS: its name, help text and `module:attribute` of a `Verb`.
Only the chosen verb's module is imported, so `schnitzel-stream validate` stays fast and never
loads rclpy. Exit codes: 0 success, 2 the input is invalid (a graph that fails validation),
1 anything else (usage errors, internal errors, missing features).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2


@dataclass(frozen=True)
class Verb:
    """One sub-command: how to declare its arguments and how to run it (returns the exit code)."""

    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: name -> (help, 'module:attribute' of its Verb). Add a verb with one line here.
VERBS: dict[str, tuple[str, str]] = {
    'validate': ('check a graph file; all errors, one line each (exit 0 valid, 2 invalid)',
                 'schnitzel_stream_ros.graph.commands:VALIDATE'),
    'compile': ('validate a graph and write its launch file (-o FILE)',
                'schnitzel_stream_ros.graph.commands:COMPILE'),
    'plugins': ('list installed plugins with their ports and parameters',
                'schnitzel_stream_ros.graph.commands:PLUGINS'),
    'run': ('run a graph with the embedded runner (options: schnitzel-stream run --help)',
            'schnitzel_stream_ros.cli:RUN'),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: exit 2 means "the graph is invalid" for this tool."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f'{self.prog}: error: {message}\n')


def load_verb(name: str) -> Verb:
    module_name, _, attr = VERBS[name][1].partition(':')
    verb = getattr(importlib.import_module(module_name), attr)
    if not isinstance(verb, Verb):
        raise TypeError(f'{VERBS[name][1]} is not a cli.Verb')
    return verb


# -- run: the embedded runner is its own program; hand it the remaining arguments --------------
RUNNER_MODULE = 'schnitzel_stream_ros.runtime.runner'


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('args', nargs=argparse.REMAINDER, help='GRAPH and runner options')


def _run_runner(args: argparse.Namespace) -> int:
    if importlib.util.find_spec(RUNNER_MODULE) is None:
        print(f'schnitzel-stream run: the embedded runner is not available in this version '
              f'({RUNNER_MODULE} is not installed)', file=sys.stderr)
        return EXIT_ERROR
    runner = importlib.import_module(RUNNER_MODULE)
    return int(runner.main(list(args.args)) or 0)


RUN = Verb(_configure_run, _run_runner)


def build_parser(verb_name: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog='schnitzel-stream',
                     description='StreamPacket graphs of composable plugin nodes on ROS 2.')
    subparsers = parser.add_subparsers(dest='verb', metavar='VERB', parser_class=_Parser)
    for name, (help_text, _target) in VERBS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == verb_name:
            load_verb(name).configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith('-')), None)
    if chosen == 'run':  # everything after `run` belongs to the runner, including --help
        return _run_runner(argparse.Namespace(args=argv[argv.index('run') + 1:]))
    try:
        parser = build_parser(chosen if chosen in VERBS else None)
        args = parser.parse_args(argv)
        if args.verb is None:
            parser.print_help(sys.stderr)
            return EXIT_ERROR
        return load_verb(args.verb).run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an internal error is one line, not a traceback, and exit 1
        print(f'schnitzel-stream: internal error: {type(exc).__name__}: {exc}', file=sys.stderr)
        return EXIT_ERROR


if __name__ == '__main__':
    raise SystemExit(main())
