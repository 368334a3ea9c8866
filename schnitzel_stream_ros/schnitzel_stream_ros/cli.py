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
    'state': ("list, inspect or clear the checkpoints of a graph's stateful nodes (state --help)",
              'schnitzel_stream_ros.state.commands:STATE'),
}


def _number(convert: Callable[[str], float], at_least: float, inclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = convert(text)
        if not (value >= at_least if inclusive else value > at_least):
            raise argparse.ArgumentTypeError(f'must be {">=" if inclusive else ">"} {at_least:g}, got {text}')
        return value

    return parse


#: argparse `type=` for the numeric options of every verb (one wording of their errors)
positive_int = _number(int, 0, inclusive=False)
non_negative_int = _number(int, 0, inclusive=True)
positive_float = _number(float, 0, inclusive=False)
non_negative_float = _number(float, 0, inclusive=True)


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


#: Verbs that are programs of their own (their own options and --help): everything after the
#: verb goes to `module.main(argv)`. name -> (help, module).
PROGRAMS: dict[str, tuple[str, str]] = {
    'run': ('run a graph with the embedded runner (options: schnitzel-stream run --help)',
            'schnitzel_stream_ros.runtime.runner'),
    'apply': ('change a running graph into a new version of it, in place (apply --help)',
              'schnitzel_stream_ros.runtime.apply_cli'),
    'backend': ('the reference event backend: idempotent store, /stats (options: backend --help)',
                'schnitzel_stream_ros.delivery.backend'),
    'record': ('record ROS topics of a running graph to an MCAP file (options: record --help)',
               'schnitzel_stream_ros.recording.record'),
    'replay': ('run a graph fed by an MCAP recording (options: replay --help)',
               'schnitzel_stream_ros.recording.replay'),
    'control': ('the HTTP API and operator page for a graph run by launch or another runner (control --help)',
                'schnitzel_stream_ros.control.standalone'),
    'deadletter': ('inspect, re-drive or purge the dead letters of a durable queue (deadletter --help)',
                   'schnitzel_stream_ros.delivery.deadletter_cli'),
    'controller': ("pin a controller's knob or mode, lift a pin, follow its decisions (controller --help)",
                   'schnitzel_stream_ros.autonomic.cli'),
}


def run_program(name: str, argv: list[str]) -> int:
    module_name = PROGRAMS[name][1]
    if importlib.util.find_spec(module_name) is None:
        print(f'schnitzel-stream {name}: not available in this version ({module_name} is not installed)',
              file=sys.stderr)
        return EXIT_ERROR
    return int(importlib.import_module(module_name).main(argv) or 0)


def build_parser(verb_name: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog='schnitzel-stream',
                     description='StreamPacket graphs of composable plugin nodes on ROS 2.')
    subparsers = parser.add_subparsers(dest='verb', metavar='VERB', parser_class=_Parser)
    for name, (help_text, _target) in VERBS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == verb_name:
            load_verb(name).configure(sub)
    for name, (help_text, _module) in PROGRAMS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith('-')), None)
    if chosen in PROGRAMS:  # everything after the verb belongs to the program, including --help
        return run_program(chosen, argv[argv.index(chosen) + 1:])
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
    # `python -m schnitzel_stream_ros.cli`: run the imported module, not __main__, so verbs see
    # one `Verb` class (python -m schnitzel_stream_ros is the documented form)
    from schnitzel_stream_ros.cli import main as package_main

    raise SystemExit(package_main())
