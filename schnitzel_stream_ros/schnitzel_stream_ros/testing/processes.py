"""Child processes that always go away: own process group, terminated as a group, then killed."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence


def python_cmd(*args: str) -> list[str]:
    """Run Python of this environment (the venv's; the ROS libraries are already on the path)."""
    return [sys.executable, *args]


def start(cmd: Sequence[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen:
    """Start `cmd` in its own session so stop() can end it and everything it spawned."""
    return subprocess.Popen(
        list(cmd), env=env, start_new_session=True, **kwargs  # type: ignore[arg-type]
    )


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal the process group, wait, then SIGKILL it. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    # the group may still hold grandchildren after the leader exited
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


@contextlib.contextmanager
def running(cmd: Sequence[str], env: dict[str, str], **kwargs: object) -> Iterator[subprocess.Popen]:
    proc = start(cmd, env, **kwargs)
    try:
        yield proc
    finally:
        stop(proc)
