"""One DurableQueue per file per process, shared by every node that names that file.

The upstream pattern puts SqliteQueueSink, SqliteQueueSource and SqliteQueueAckSink on the same
`path` in one graph. If each opened its own DurableQueue, the source's leases would be invisible to
the ack sink and three committers would contend for one SQLite write lock. Sharing one object (one
writer connection, one group committer, one lease table) keeps acks, leases and group commit
coherent. The first opener's options (limits, policy) apply; a later opener asking for different
ones is told so in the log rather than silently ignored.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.delivery.queue import DurableQueue

_LOG = logging.getLogger('schnitzel_stream.delivery.shared')
_lock = threading.Lock()
_open: dict[Path, tuple[DurableQueue, int, dict[str, Any]]] = {}


def _key(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def open_shared(path: str | os.PathLike[str], node_id: str, **options: Any) -> DurableQueue:
    """The process-wide queue for `path` (opened on first use). Pair with `release_shared`."""
    key = _key(path)
    with _lock:
        entry = _open.get(key)
        if entry is None:
            queue = DurableQueue(key, node_id=node_id, **options)
            _open[key] = (queue, 1, dict(options))
            return queue
        queue, users, first_options = entry
        if options and options != first_options:
            _LOG.warning(
                'node %s: queue %s is already open by node %s with %s; keeping those options',
                node_id,
                key,
                queue.node_id,
                first_options,
            )
        _open[key] = (queue, users + 1, first_options)
        return queue


def release_shared(queue: DurableQueue) -> None:
    """Drop one user; the last one closes the queue (pending writes are committed first)."""
    key = _key(queue.path)
    with _lock:
        entry = _open.get(key)
        if entry is None or entry[0] is not queue:
            queue.close()
            return
        _, users, options = entry
        if users > 1:
            _open[key] = (queue, users - 1, options)
            return
        del _open[key]
    queue.close()
