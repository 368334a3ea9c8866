"""A real, small filesystem for disk-full tests: a tmpfs mounted in a temporary directory.

A full disk cannot be faked honestly (SQLite meets ENOSPC in its own pager, the kernel decides
what is free), so the tests mount a tmpfs of a few MB, fill it with a ballast file and free it
again. Mounting needs root (or CAP_SYS_ADMIN); where that is missing the test is skipped with the
reason, never run against a pretend disk.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from schnitzel_stream_ros.delivery.queue.disk_space import filesystem_free_bytes


class SmallFsUnavailable(RuntimeError):
    """The tmpfs could not be mounted here (not root, no mount(8), a container without the right)."""


@contextlib.contextmanager
def small_tmpfs(where: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` on `where` (created), yield it, unmount it (also on errors)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise SmallFsUnavailable('mounting a tmpfs needs root')
    try:
        done = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', f'size={size_bytes},mode=0755', 'tmpfs', str(where)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SmallFsUnavailable(f'mount failed: {exc}') from exc
    if done.returncode != 0:
        raise SmallFsUnavailable(f'mount failed: {done.stderr.strip() or done.returncode}')
    try:
        yield where
    finally:
        # lazy: a child that still has a file open must not leave the mount behind
        subprocess.run(['umount', '-l', str(where)], capture_output=True, timeout=20, check=False)


def fill(directory: Path, leave_free_bytes: int, name: str = 'ballast.bin') -> Path:
    """Write a ballast file so that about `leave_free_bytes` stay free on the filesystem of
    `directory` (the ballast is what the operator's recordings or logs are in real life)."""
    ballast = directory / name
    chunk = b'\0' * (64 * 1024)
    with open(ballast, 'ab') as f:
        while True:
            free = filesystem_free_bytes(directory)
            if free <= leave_free_bytes:
                break
            try:
                f.write(chunk[: min(len(chunk), free - leave_free_bytes)] or chunk[:4096])
                f.flush()
            except OSError:  # ENOSPC: as full as it gets
                break
    return ballast
