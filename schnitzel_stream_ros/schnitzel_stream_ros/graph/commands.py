"""The graph verbs of `schnitzel-stream`: validate, compile, plugins (registered in cli.VERBS)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from schnitzel_stream_ros.cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK, Verb
from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.errors import GraphWarning
from schnitzel_stream_ros.graph.registry import PluginInfo, PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate
from schnitzel_stream_ros.plugin import Plugin, Port, Role


def _allowlist_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--allow-plugin-prefix', action='append', default=[], metavar='PREFIX',
                        help='also import plugins from modules under PREFIX (repeatable; '
                             'see also SCHNITZEL_STREAM_PLUGIN_ALLOWLIST)')
    parser.add_argument('--dev-allow-all-plugins', action='store_true',
                        help='development only: import plugins from any module')


def registry_from_args(args: argparse.Namespace) -> PluginRegistry:
    allowlist = Allowlist.from_env(extra=args.allow_plugin_prefix)
    if args.dev_allow_all_plugins:
        allowlist = Allowlist(allowlist.prefixes, allow_all=True)
    return PluginRegistry(allowlist)


# -- validate -------------------------------------------------------------------------------------
def _configure_validate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('graph', help='graph file (YAML, or JSON when named *.json)')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of text')
    _allowlist_arguments(parser)


def print_warnings(warnings: Sequence[GraphWarning]) -> None:
    """Warnings on stderr, one line each (`file:line: warning: node 'x': ...`); never change the exit code."""
    for warning in warnings:
        print(warning, file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    result = load_and_validate(args.graph, registry_from_args(args))
    elapsed = time.perf_counter() - started
    if args.json:
        report: dict[str, object] = {
            'graph': args.graph,
            'valid': result.ok,
            'errors': [e.to_json() for e in result.errors],
            'warnings': [w.to_json() for w in result.warnings],
            'seconds': round(elapsed, 6),
        }
        if result.spec is not None:
            report['sha256'] = result.spec.sha256
            report['nodes'] = len(result.spec.nodes)
            report['edges'] = len(result.spec.edges)
            report['containers'] = {g.name: list(g.node_ids) for g in result.spec.containers}
        print(json.dumps(report, indent=2))
        return EXIT_OK if result.ok else EXIT_INVALID
    print_warnings(result.warnings)
    if result.ok and result.graph is not None:
        graph = result.graph
        ignored = len(result.warnings)
        noted = f', {ignored} warning{"s" if ignored != 1 else ""}' if ignored else ''
        print(f'{args.graph}: valid ({len(graph.nodes)} nodes, {len(graph.edges)} edges, '
              f'{len(graph.containers)} container{"s" if len(graph.containers) != 1 else ""}{noted})')
    else:
        for error in result.errors:
            print(error, file=sys.stderr)
        print(f'{args.graph}: invalid ({len(result.errors)} error{"s" if len(result.errors) != 1 else ""})',
              file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_INVALID


VALIDATE = Verb(_configure_validate, _validate)


# -- compile --------------------------------------------------------------------------------------
def _configure_compile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('graph', help='graph file')
    parser.add_argument('-o', '--output', required=True, metavar='FILE',
                        help="launch file to write ('-' = stdout)")
    parser.add_argument('--lifecycle-manager', action='store_true',
                        help='nodes load unconfigured and a lifecycle_manager brings the graph up in '
                             'dependency order (docs/runtime.md, "Managed nodes")')
    parser.add_argument('--host', default=None, metavar='HOST',
                        help="write only HOST's part: its container groups, wired to the topics of edges "
                             'from other hosts (docs/hosts.md)')
    _allowlist_arguments(parser)


def _compile(args: argparse.Namespace) -> int:
    from schnitzel_stream_ros.launchgen import render_launch_file

    result = load_and_validate(args.graph, registry_from_args(args))
    print_warnings(result.warnings)
    if not result.ok or result.graph is None:
        for error in result.errors:
            print(error, file=sys.stderr)
        print(f'{args.graph}: invalid, no launch file written', file=sys.stderr)
        return EXIT_INVALID
    graph = result.graph
    if args.host is not None:
        from schnitzel_stream_ros.graph.placement import host_part

        try:
            graph = host_part(graph, args.host)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return EXIT_ERROR
    text = render_launch_file(graph, source_label=args.graph, lifecycle_manager=args.lifecycle_manager)
    if args.output == '-':
        sys.stdout.write(text)
        return EXIT_OK
    target = Path(args.output)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f'.{target.name}.tmp{os.getpid()}')
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, target)  # a launch file is either the old one or the new one, never half
    print(f'{args.graph}: wrote {target}', file=sys.stderr)
    return EXIT_OK


COMPILE = Verb(_configure_compile, _compile)


# -- plugins --------------------------------------------------------------------------------------
def _port_text(port: Port) -> str:
    kinds = ','.join(sorted(port.kinds))
    optional = '?' if not port.required else ''
    msg = '' if port.msg_type.endswith('/StreamPacket') else f' {port.msg_type}'
    return f'{port.name}{optional}[{kinds}]/{port.profile}{msg}'


def _params_text(cls: type[Plugin]) -> str:
    parts = []
    for param in cls.PARAMS:
        default = '' if param.required else f'={param.default!r}'
        parts.append(f'{param.name}:{param.type_name}{"!" if param.required else ""}{default}')
    return ' '.join(parts) or '-'


def _plugin_row(info: PluginInfo) -> dict[str, str]:
    cls = info.cls
    inputs = () if Role(cls.ROLE) is Role.SOURCE else cls.INPUTS
    return {
        'plugin': info.display_name,
        'role': str(cls.ROLE),
        'inputs': ' '.join(_port_text(p) for p in inputs) or '-',
        'outputs': ' '.join(_port_text(p) for p in cls.OUTPUTS) or '-',
        'params': _params_text(cls),
        'class': info.canonical,
        'description': cls.describe(),
    }


def _configure_plugins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    _allowlist_arguments(parser)


def _plugins(args: argparse.Namespace) -> int:
    good, bad = registry_from_args(args).installed()
    rows = [_plugin_row(info) for info in good]
    if args.json:
        print(json.dumps({'plugins': rows, 'unavailable': {name: str(exc) for name, exc in bad}}, indent=2))
    else:
        columns = ('plugin', 'role', 'inputs', 'outputs', 'params')
        widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in columns}
        print('  '.join(c.upper().ljust(widths[c]) for c in columns).rstrip())
        for row in rows:
            print('  '.join(row[c].ljust(widths[c]) for c in columns).rstrip())
        print('ports: name[kinds]/payload profile (? = optional input); '
              'params: name:type[=default] (! = required)')
        for name, exc in bad:
            print(f'unavailable: {name}: {exc}', file=sys.stderr)
    return EXIT_OK if not bad else EXIT_ERROR


PLUGINS = Verb(_configure_plugins, _plugins)
