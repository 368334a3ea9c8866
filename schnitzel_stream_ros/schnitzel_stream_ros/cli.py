"""`schnitzel-stream` command line (thin: parse arguments, call the modules)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print('schnitzel-stream: no verbs yet', file=sys.stderr)
    return 1
