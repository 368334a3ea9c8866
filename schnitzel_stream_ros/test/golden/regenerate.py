"""Regenerate (or check) the golden launch files of the launch generator.

    cd schnitzel_stream_ros && python test/golden/regenerate.py          # rewrite test/golden/*.launch.py
    cd schnitzel_stream_ros && python test/golden/regenerate.py --check  # exit 1 if any differs

Run it after an intended change of the generator or of one of the graphs, and review the diff:
the golden files are the reviewed form of what `ros2 launch` will execute. Graph paths are given
relative to the package directory, so the header of each file is the same on every machine.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path('test/golden')
#: golden file stem -> graph file (relative to the package directory)
GOLDEN_GRAPHS: dict[str, str] = {
    'chain': 'test/graphs/valid/chain.yaml',
    'fan_in_out': 'test/graphs/valid/fan_in_out.yaml',
    'two_containers': 'test/graphs/valid/two_containers.yaml',
}


def golden_path(stem: str) -> Path:
    return PACKAGE_DIR / GOLDEN_DIR / f'{stem}.launch.py'


def render_golden(stem: str) -> str:
    """The launch file text for one golden graph (the graph path in the header stays relative)."""
    from schnitzel_stream_ros.graph.validate import compile_graph
    from schnitzel_stream_ros.launchgen import render_launch_file

    relative = GOLDEN_GRAPHS[stem]
    cwd = os.getcwd()
    os.chdir(PACKAGE_DIR)
    try:
        return render_launch_file(compile_graph(relative), source_label=relative)
    finally:
        os.chdir(cwd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='compare only; exit 1 on a difference')
    args = parser.parse_args(argv)
    differs = []
    for stem in GOLDEN_GRAPHS:
        text = render_golden(stem)
        path = golden_path(stem)
        current = path.read_text(encoding='utf-8') if path.exists() else None
        if current != text:
            differs.append(path)
            if not args.check:
                path.write_text(text, encoding='utf-8')
    for path in differs:
        print(f'{"differs" if args.check else "rewrote"}: {path}')
    return 1 if args.check and differs else 0


if __name__ == '__main__':
    sys.exit(main())
