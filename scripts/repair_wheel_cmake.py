"""Repair the CMake exports of the ROS 2 Jazzy pip wheels inside one venv.

The message wheels were built in a manylinux container and their exported targets name that
container's Python and numpy include dirs (/opt/python/cp311-cp311/...). CMake's generate step
refuses non-existent include paths, so we rewrite them to this venv's real dirs. Only files under
<venv>/share are touched (never machine-wide symlinks). Idempotent; prints what it did.

Usage: python repair_wheel_cmake.py VENV
"""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

BAKED_PREFIX = '/opt/python/cp311-cp311'
BAKED_PYTHON_INCLUDE = f'{BAKED_PREFIX}/include/python3.11'
BAKED_NUMPY_INCLUDE = f'{BAKED_PREFIX}/lib/python3.11/site-packages/numpy/_core/include'


def real_include_dirs() -> dict[str, str]:
    import numpy

    return {
        BAKED_NUMPY_INCLUDE: numpy.get_include(),
        BAKED_PYTHON_INCLUDE: sysconfig.get_paths()['include'],
    }


def repair(venv: Path) -> int:
    replacements = real_include_dirs()
    repaired = 0
    for cmake_file in sorted((venv / 'share').rglob('*.cmake')):
        text = cmake_file.read_text(encoding='utf-8', errors='surrogateescape')
        if BAKED_PREFIX not in text:
            continue
        for baked, real in replacements.items():  # numpy first: it is the longer path
            text = text.replace(baked, real)
        if BAKED_PREFIX in text:
            raise SystemExit(f'{cmake_file}: an unknown {BAKED_PREFIX} path remains after repair')
        cmake_file.write_text(text, encoding='utf-8', errors='surrogateescape')
        repaired += 1
    return repaired


def main() -> None:
    count = repair(Path(sys.argv[1]))
    print(f'repaired {count} file(s)' if count else 'nothing to repair')


if __name__ == '__main__':
    main()
