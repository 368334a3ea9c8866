"""Retention for sinks that write one file per packet: at most `max_files` files and `max_bytes`
under their directory, the oldest deleted first, each deletion counted.

Why: a JSON-file sink or a blob store writes a file per packet, so on a months-long site the
directory grows with the traffic (rotation of a line file does not apply: there is no one file to
rotate). This is the same retention rule for a directory: what this writer put there, plus what
an earlier run left (found by one scan at start, oldest by modification time), is kept to the
newest `max_files` / `max_bytes`. Only regular files are deleted, never directories, and never a
file outside the root. The list of kept files is the memory this costs (about 150 bytes a file),
which is why `max_files` is bounded too.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path


class FileRetention:
    """Keeps the newest files under `root` within `max_files` (0: no limit) and `max_bytes` (0: none)."""

    def __init__(self, root: str | os.PathLike[str], *, max_files: int, max_bytes: int = 0) -> None:
        if max_files < 0 or max_bytes < 0:
            raise ValueError('retention: max_files and max_bytes must be >= 0')
        self.root = Path(root)
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.deleted = 0  # files this retention deleted (the writer counts them as files_deleted_total)
        self.bytes = 0
        self._files: OrderedDict[str, int] = OrderedDict()  # path -> size, oldest first
        found = []
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                if name.startswith('.'):  # temp files of an atomic write in progress
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path, follow_symlinks=False)
                except OSError:
                    continue
                found.append((st.st_mtime_ns, path, st.st_size))
        for _mtime, path, size in sorted(found):
            self._files[path] = size
            self.bytes += size
        self._enforce()

    def __len__(self) -> int:
        return len(self._files)

    def added(self, path: str | os.PathLike[str], size: int) -> int:
        """Record a file just written (or rewritten); delete the oldest beyond the limits. Returns
        how many files this deleted."""
        key = os.fspath(path)
        old = self._files.pop(key, None)
        if old is not None:
            self.bytes -= old
        self._files[key] = size
        self.bytes += size
        return self._enforce()

    def _over(self) -> bool:
        too_many = bool(self.max_files) and len(self._files) > self.max_files
        return too_many or (bool(self.max_bytes) and self.bytes > self.max_bytes)

    def _enforce(self) -> int:
        deleted = 0
        while len(self._files) > 1 and self._over():
            path, size = self._files.popitem(last=False)
            self.bytes -= size
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # someone else removed it: it is gone either way
            except OSError:
                continue  # not deletable (permissions): forgotten, not counted
            deleted += 1
        self.deleted += deleted
        return deleted
