"""`schnitzel-stream state list|inspect|clear`: the checkpoints of a graph's stateful nodes.

    schnitzel-stream state list   PATH [--json]            every node: plugin, version, size, seq, age
    schnitzel-stream state inspect PATH --node /ns/id      one node's state as JSON
    schnitzel-stream state clear  PATH (--node /ns/id ... | --all)

PATH is the checkpoint file, or the graph file whose `config.state.path` names it. The file may be
in use by a running graph: every command is one short SQLite transaction. Clearing a running node's
row makes it start fresh at its next load; its next checkpoint writes the row again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schnitzel_stream_ros.cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK, Verb
from schnitzel_stream_ros.state.store import CheckpointStore, StateStoreError

_GRAPH_SUFFIXES = ('.yaml', '.yml', '.json')


def _configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest='action', required=True, metavar='ACTION')
    listing = actions.add_parser(
        'list', help='every node with a checkpoint: plugin, version, bytes, seq, age'
    )
    listing.add_argument('path', help='checkpoint file, or a graph file with config.state')
    listing.add_argument('--json', action='store_true', help='one JSON object per line')
    inspect = actions.add_parser('inspect', help="one node's checkpointed state as JSON")
    inspect.add_argument('path')
    inspect.add_argument('--node', required=True, help='full node name, e.g. /site/dedup')
    clear = actions.add_parser('clear', help='forget checkpoints: the nodes start fresh at their next load')
    clear.add_argument('path')
    which = clear.add_mutually_exclusive_group(required=True)
    which.add_argument('--node', action='append', help='full node name (repeatable)')
    which.add_argument('--all', action='store_true')


def checkpoint_file(path: Path) -> Path:
    """The checkpoint file itself, or the one a graph file's `config.state.path` names."""
    if path.suffix.lower() not in _GRAPH_SUFFIXES:
        return path
    from schnitzel_stream_ros.graph.load import load_graph

    loaded = load_graph(path)
    if loaded.graph is None or loaded.errors:
        first = loaded.errors[0] if loaded.errors else 'not a graph'
        raise ValueError(f'{path}: {first}')
    if loaded.graph.state is None:
        raise ValueError(f'{path}: the graph configures no state (config.state.path)')
    return Path(loaded.graph.state.path)


def _run(args: argparse.Namespace) -> int:
    try:
        store = CheckpointStore(checkpoint_file(Path(args.path)), create=False)
    except (ValueError, StateStoreError) as exc:
        print(f'state: {exc}', file=sys.stderr)
        return EXIT_INVALID
    try:
        if args.action == 'list':
            rows = [row.summary() for row in store.list()]
            for row in rows:
                if args.json:
                    print(json.dumps(row))
                else:
                    print(f"{row['node']}  {row['plugin']} v{row['version']}  {row['bytes']} bytes  "
                          f"seq {row['seq']}  age {row['age_sec']:.1f} s  took {row['took_ms']:.2f} ms")
            if not rows and not args.json:
                print('no checkpoints', file=sys.stderr)
        elif args.action == 'inspect':
            row = store.read(args.node)
            if row is None:
                print(f'state: no checkpoint of {args.node} in {store.path}', file=sys.stderr)
                return EXIT_ERROR
            print(json.dumps({**row.summary(), 'state': row.state}, indent=2))
        else:
            gone = store.delete(None if args.all else list(args.node))
            print(f'{gone} checkpoints cleared from {store.path}', file=sys.stderr)
    except StateStoreError as exc:
        print(f'state: {exc}', file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    return EXIT_OK


STATE = Verb(_configure, _run)
