"""The site's durable queues as the control plane sees them: depth, oldest age, dead letters.

Which queues: the nodes of the running graph whose plugin lives in nodes/delivery and names a
queue file (`path`). Each file is opened once, through delivery/shared.py (so a queue the runner's
own process already holds is the same object), only when it exists, and kept until close(). The
dead-letter operations are the ones `schnitzel-stream deadletter` runs: short SQLite transactions
next to the node that uses the file.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.graph.model import ValidatedGraph

DELIVERY_PLUGINS = 'schnitzel_stream_ros.nodes.delivery.'
MAX_LIST = 500


class UnknownQueue(LookupError):
    """No durable queue node of that id in the running graph (or its file does not exist yet)."""


def queue_nodes(graph: ValidatedGraph) -> dict[str, Path]:
    """node id -> queue file of every durable-queue node."""
    return {
        n.id: Path(str(n.params['path']))
        for n in graph.nodes
        if n.plugin_ref.startswith(DELIVERY_PLUGINS) and isinstance(n.params.get('path'), str)
    }


class QueueInspector:
    """Opens the queue files of a graph on demand and answers for them."""

    def __init__(self) -> None:
        self._open: dict[Path, DurableQueue] = {}
        self._lock = threading.Lock()

    def _queue(self, path: Path) -> DurableQueue | None:
        from schnitzel_stream_ros.delivery.shared import open_shared

        key = path.expanduser().resolve()
        with self._lock:
            queue = self._open.get(key)
            if queue is None and key.is_file():
                queue = self._open[key] = open_shared(key, 'control-plane')
            return queue

    def summary(self, graph: ValidatedGraph, node_metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per queue node: file stats plus the node's breaker state from its gauges."""
        rows = []
        for node_id, path in queue_nodes(graph).items():
            row: dict[str, Any] = {'node': node_id, 'path': str(path)}
            metrics = node_metrics.get(node_id, {})
            row['breaker'] = metrics.get('breaker', 'closed' if 'counters' in metrics else None)
            queue = self._queue(path)
            if queue is None:
                row['state'] = 'no file yet'
            else:
                stats = queue.stats()
                row.update(state='open', depth=stats['queue_depth'], bytes=stats['queue_bytes'],
                           oldest_age_sec=round(stats['oldest_age_sec'], 3),
                           dead_letters=stats['dead_letter_depth'])
            rows.append(row)
        return rows

    def for_node(self, graph: ValidatedGraph, node_id: str) -> DurableQueue:
        path = queue_nodes(graph).get(node_id)
        if path is None:
            raise UnknownQueue(f"node '{node_id}' is not a durable queue node of the running graph")
        queue = self._queue(path)
        if queue is None:
            raise UnknownQueue(f"node '{node_id}': queue file {path} does not exist yet")
        return queue

    def list_dead(self, graph: ValidatedGraph, node_id: str, limit: int, after: int) -> dict[str, Any]:
        queue = self.for_node(graph, node_id)
        rows = []
        for row in queue.list_dead(min(limit, MAX_LIST), after):
            record = {k: getattr(row, k) for k in row.__slots__ if k != 'payload_json'}
            try:
                record['payload'] = json.loads(row.payload_json)
            except ValueError:
                record['payload'] = None
            rows.append(record)
        return {'node': node_id, 'dead_letters': rows, 'total': queue.dead_count()}

    def redrive(self, graph: ValidatedGraph, node_id: str, seqs: list[int] | None) -> dict[str, Any]:
        queue = self.for_node(graph, node_id)
        result = queue.redrive(seqs)
        return {'moved': result.moved, 'already_queued': result.already_queued,
                'left_no_room': result.left_no_room, 'dead_letters_left': queue.dead_count()}

    def purge(self, graph: ValidatedGraph, node_id: str, seqs: list[int] | None) -> dict[str, Any]:
        queue = self.for_node(graph, node_id)
        return {'purged': queue.purge(seqs), 'dead_letters_left': queue.dead_count()}

    def close(self) -> None:
        from schnitzel_stream_ros.delivery.shared import release_shared

        with self._lock:
            for queue in self._open.values():
                release_shared(queue)
            self._open.clear()
