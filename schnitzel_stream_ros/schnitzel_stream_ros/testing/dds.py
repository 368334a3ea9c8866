"""DDS isolation: localhost-only discovery and one ROS_DOMAIN_ID per concurrently running user.

Domain ids are leased through lock files, so separate pytest runs, benchmarks and the demo on one
machine never see each other's topics. A lease lasts while its file lock is held (until release()
or process exit — the kernel drops the lock even on kill -9).
"""
from __future__ import annotations

import fcntl
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Fast DDS maps domain ids to UDP ports; 1..100 stay inside the default port range.
DOMAIN_RANGE = range(1, 101)
_LOCK_DIR = Path(tempfile.gettempdir()) / 'schnitzel-stream-ros-domains'


def localhost_env(domain_id: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default os.environ) with discovery pinned to this machine and `domain_id`."""
    env = dict(os.environ if base is None else base)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.pop('ROS_STATIC_PEERS', None)
    env.pop('ROS_LOCALHOST_ONLY', None)  # deprecated in Jazzy; the range above replaces it
    env['ROS_DOMAIN_ID'] = str(domain_id)
    return env


@dataclass
class DomainLease:
    domain_id: int
    _fd: int

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1

    def __enter__(self) -> DomainLease:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def lease_domain() -> DomainLease:
    """Take a ROS_DOMAIN_ID no other live process on this machine holds."""
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    candidates = list(DOMAIN_RANGE)
    random.Random(os.getpid()).shuffle(candidates)
    for domain_id in candidates:
        fd = os.open(_LOCK_DIR / f'{domain_id}.lock', os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return DomainLease(domain_id, fd)
    raise RuntimeError(f'all ROS domain ids {DOMAIN_RANGE.start}..{DOMAIN_RANGE.stop - 1} are leased')
