"""A line file that rotates by size and age and keeps a bounded number of old files.

A site runs for months: a JSONL sink or a run's timeline that only appends fills the disk (about
1 GB a day for the demo site's two files). This is logrotate's scheme for line-oriented files we
write ourselves: `path` is the live file; when writing the next line would make it larger than
`max_bytes`, or it is older than `max_age_sec`, it becomes `path.1` (the older ones `path.2` ...),
and at most `keep` old files remain — the oldest is deleted, counted. A line is never split between
two files, and nothing already written is lost except by the retention the operator chose.

Why not logging.handlers.RotatingFileHandler: it rotates log *records* (formatting, locks, an
encoding layer per record) and has no age rule; these are data lines whose writer needs the
counters (rotations, deletions) for its own report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO


class RotatingLines:
    """Append lines to `path`, rotating by `max_bytes` (0: never by size) and `max_age_sec` (0: never)."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int = 0, max_age_sec: float = 0.0, keep: int = 5,
        flush: bool = True, truncate: bool = False,
    ) -> None:
        if max_bytes < 0 or max_age_sec < 0 or keep < 0:
            raise ValueError('rotation: max_bytes, max_age_sec and keep must be >= 0')
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_sec = max_age_sec
        self.keep = keep
        self.flush = flush
        self.rotations = 0
        self.deleted = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = None
        self._size = 0
        self._opened_at = 0.0
        self._open('w' if truncate else 'a')

    def _open(self, mode: str) -> None:
        self._file = self.path.open(mode, encoding='utf-8')
        self._size = self._file.tell() if mode == 'a' else 0
        self._opened_at = time.monotonic()

    def old_file(self, n: int) -> Path:
        return self.path.with_name(f'{self.path.name}.{n}')

    def write(self, line: str) -> None:
        """Append one line (without its newline). Rotates first when it would not fit."""
        data = line + '\n'
        size = len(data.encode('utf-8')) if not data.isascii() else len(data)
        if self._size and (
            (self.max_bytes and self._size + size > self.max_bytes)
            or (self.max_age_sec and time.monotonic() - self._opened_at >= self.max_age_sec)
        ):
            self.rotate()
        assert self._file is not None, 'closed'
        self._file.write(data)
        self._size += size
        if self.flush:
            self._file.flush()

    def rotate(self) -> None:
        """path -> path.1 -> path.2 ...; beyond `keep` old files the oldest is deleted."""
        assert self._file is not None, 'closed'
        self._file.close()
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
            self.deleted += 1
        else:
            oldest = self.old_file(self.keep)
            if oldest.exists():
                oldest.unlink()
                self.deleted += 1
            for n in range(self.keep - 1, 0, -1):
                if self.old_file(n).exists():
                    self.old_file(n).replace(self.old_file(n + 1))
            self.path.replace(self.old_file(1))
        self.rotations += 1
        self._open('w')

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
