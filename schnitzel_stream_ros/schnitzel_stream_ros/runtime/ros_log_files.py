"""The ROS log files our processes leave behind: one directory of our own, pruned, each file bounded.

rcl writes every log line of a process that called rclpy.init to `<ROS log dir>/<exe>_<pid>_<ms>.log`
(the spdlog file sink), besides stderr and /rosout. Nobody rotates these: each run, each container
and each CLI call leaves a file, and a container that runs for months appends to its own file for
months (one line per failed packet during an outage). Measured on a development machine after a
day of tests: 7,900 such files in ~/.ros/log.

So, in every process of the suite, before its first rclpy.init (`prepare()`):
- when the operator has not chosen `ROS_LOG_DIR`, rcl is pointed at `<ROS log dir>/schnitzel_stream`,
  a directory only our processes write to — and there, the files of processes that ended are
  pruned to the newest `KEEP_FILES` (counted);
- a daemon thread keeps this process's own file under `MAX_LIVE_BYTES` the logrotate
  `copytruncate` way: the file is copied to `<file>.1` (the one older copy kept) and truncated in
  place; spdlog appends (O_APPEND), so its next line lands at the new start. Lines written between
  the copy and the truncation can be lost, as with logrotate's copytruncate: the same lines also
  went to stderr and /rosout.
An operator-set `ROS_LOG_DIR` is respected as it is: nothing there is pruned (it is not ours), only
this process's own file is bounded. `counts()` says what was done (the container's state shows it).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

#: Sub-directory of the ROS log directory that holds only our processes' files.
OWN_SUBDIR = 'schnitzel_stream'
#: Files of ended processes kept in our directory (the newest).
KEEP_FILES = 50
#: Size at which a live process's own log file is copied to `.1` and truncated.
MAX_LIVE_BYTES = 16 << 20
#: Seconds between two checks of the live file.
CHECK_SEC = 30.0

_NAME = re.compile(r'^.+_(\d+)_\d+\.log(\.1)?$')
_lock = threading.Lock()
_prepared = False
_counts = {'pruned_files': 0, 'live_truncations': 0}


def default_log_dir(env: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    """Where rcl writes when ROS_LOG_DIR is not set: $ROS_HOME/log, else ~/.ros/log."""
    home = env.get('ROS_HOME')
    return Path(home).expanduser() / 'log' if home else Path('~/.ros/log').expanduser()


def prepare(env: os._Environ[str] | dict[str, str] = os.environ, *, watch: bool = True) -> Path | None:
    """Call before the process's first rclpy.init (idempotent). Returns the log directory in use."""
    global _prepared
    with _lock:
        if _prepared:
            return Path(env['ROS_LOG_DIR']) if env.get('ROS_LOG_DIR') else None
        _prepared = True
    if env.get('ROS_LOG_DIR'):
        where = Path(env['ROS_LOG_DIR']).expanduser()
    else:
        where = default_log_dir(env) / OWN_SUBDIR
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # rcl falls back to its own default; nothing of ours to bound
        env['ROS_LOG_DIR'] = str(where)  # also what our child processes inherit
        prune(where, KEEP_FILES)
    if watch:
        threading.Thread(target=_watch_own_file, args=(where, os.getpid()), name='ros-log-bound',
                         daemon=True).start()  # fmt: skip
    return where


def prune(directory: Path, keep: int) -> int:
    """Delete the log files of ended processes beyond the newest `keep`; returns how many."""
    ended = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            match = _NAME.match(entry.name)
            if not match or not entry.is_file(follow_symlinks=False):
                continue
            if _alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                ended.append((entry.stat().st_mtime_ns, entry.path))
    ended.sort(reverse=True)
    deleted = 0
    for _mtime, path in ended[keep:]:
        with contextlib.suppress(OSError):
            os.unlink(path)
            deleted += 1
    _counts['pruned_files'] += deleted
    return deleted


def bound_live_file(directory: Path, pid: int, max_bytes: int = MAX_LIVE_BYTES) -> bool:
    """copytruncate this process's own log file when it passed `max_bytes`; True when it did."""
    truncated = False
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            match = _NAME.match(entry.name)
            if not match or match.group(2) or int(match.group(1)) != pid:
                continue
            if entry.stat().st_size <= max_bytes:
                continue
            import shutil  # here: its import (with bz2, lzma) is not worth it in every process

            shutil.copyfile(entry.path, entry.path + '.1')
            os.truncate(entry.path, 0)
            _counts['live_truncations'] += 1
            truncated = True
    return truncated


def counts() -> dict[str, int]:
    return dict(_counts)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch_own_file(directory: Path, pid: int) -> None:
    stop = threading.Event()
    while not stop.wait(CHECK_SEC):
        bound_live_file(directory, pid)
