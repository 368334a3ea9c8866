"""The pipe between a queue's owner and its delivery process: one JSON object per line.

Owner -> delivery process (its stdin): `start` (once: node, file, parameters -- credentials travel
here, never on the command line or in the environment), `done`/`failed` (answers to calls),
`knobs` (live batch size / concurrency), `stop`. Delivery process -> owner (its stdout): calls
(`settle`, `release_backoff`, each with an `id`), `expired`, `metrics`. Lines are bounded; a line
that is not a JSON object is an error naming the pipe, never a crash of the reader.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import IO, Any

#: Longest line either side accepts: a settle of a 100,000-row claim with long error texts fits.
MAX_LINE_BYTES = 64 * 1024 * 1024


class ChannelError(Exception):
    pass


class LineChannel:
    """Thread-safe writes, bounded reads of JSON-object lines on a pair of binary pipes."""

    def __init__(self, reader: IO[bytes], writer: IO[bytes], name: str) -> None:
        self._reader = reader
        self._writer = writer
        self._name = name
        self._write_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(',', ':'), allow_nan=False).encode() + b'\n'
        with self._write_lock:
            try:
                self._writer.write(line)
                self._writer.flush()
            except (OSError, ValueError) as exc:  # closed pipe: the other side is gone
                raise ChannelError(f'{self._name}: cannot send ({exc})') from exc

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None at the end of the pipe."""
        line = self._reader.readline(MAX_LINE_BYTES + 1)
        if not line:
            return None
        if len(line) > MAX_LINE_BYTES:
            raise ChannelError(f'{self._name}: a line over {MAX_LINE_BYTES} bytes')
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ChannelError(f'{self._name}: not JSON ({exc})') from None
        if not isinstance(message, dict) or not isinstance(message.get('type'), str):
            raise ChannelError(f'{self._name}: not a message object: {line[:80]!r}')
        return message

    def close(self) -> None:
        for pipe in (self._writer, self._reader):
            with contextlib.suppress(OSError):
                pipe.close()
