"""The audit log of the control plane: one JSON line per mutating call, refused ones included.

Who (the peer address and whether it showed the token — never the token itself), what (method,
path, a short summary of the request), when (wall clock of start and end, so serialised actions
can be checked one after the other), result (HTTP status and a one-line outcome). Lines go to a
RotatingLines file (size-bounded, a few old files kept): a months-long site keeps it bounded.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.observability.rotating_file import RotatingLines

AUDIT_MAX_BYTES = 4 << 20
AUDIT_KEEP = 5
MAX_FIELD = 300  # characters of a summary or outcome written per line


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec='milliseconds').replace('+00:00', 'Z')


def _short(text: Any) -> str:
    text = ' '.join(str(text).split())
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + '…'


class AuditLog:
    """Thread-safe appender of audit lines."""

    def __init__(self, path: str | Path, *, max_bytes: int = AUDIT_MAX_BYTES, keep: int = AUDIT_KEEP) -> None:
        self.path = Path(path)
        self._lines = RotatingLines(self.path, max_bytes=max_bytes, keep=keep)
        self._lock = threading.Lock()
        self.written = 0

    def write(self, *, who: str, authenticated: bool, method: str, path: str, what: str,
              started: float, finished: float, status: int, result: str) -> None:
        line = {
            'when': _iso(started), 'finished': _iso(finished),
            'duration_ms': round((finished - started) * 1000, 1),
            'who': who, 'authenticated': authenticated, 'method': method, 'path': _short(path),
            'what': _short(what), 'status': status, 'result': _short(result),
        }
        with self._lock:
            self._lines.write(json.dumps(line, ensure_ascii=False, separators=(',', ':')))
            self.written += 1

    def counts(self) -> dict[str, int]:
        """Lines written, rotations and old files deleted (the audit file is bounded, counted)."""
        with self._lock:
            lines = self._lines
            return {'written': self.written, 'rotations': lines.rotations, 'deleted_files': lines.deleted}

    def close(self) -> None:
        with self._lock:
            self._lines.close()
