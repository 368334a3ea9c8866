"""`/<namespace>/_graph/apply`: the running graph's reconciler, reachable as a ROS service.

`schnitzel-stream apply NEW_GRAPH` (runtime/apply_cli.py) sends the new graph's text here
(schnitzel_stream_msgs/srv/ApplyGraph). The text is hostile input like any other: bounded in size,
loaded and validated here again (fail closed: one line per error, nothing changed). A valid graph
is handed to the reconciler's own thread — the one that also restarts dead containers — so edits
and supervision never interleave; the answer is one line per refused or applied change.

The service runs on its own node, context and executor thread: its callback waits for the
reconciler, which meanwhile needs the runner's other executor to talk to the containers.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.graph.model import ValidatedGraph

SERVICE = '_graph/apply'
NODE_NAME = 'graph_reconciler'
MAX_GRAPH_TEXT = 1 << 20  # bytes
MAX_LABEL = 256  # characters of the source label (it names the file in error lines)
APPLY_TIMEOUT_SEC = 120.0


def service_name(namespace: str) -> str:
    return ('' if namespace == '/' else namespace.rstrip('/')) + '/' + SERVICE


def validate_text(text: str, label: str) -> tuple[ValidatedGraph | None, list[str]]:
    """(graph, []) or (None, one line per error) for a graph file's text."""
    from schnitzel_stream_ros.graph.load import load_graph_text
    from schnitzel_stream_ros.graph.validate import validate

    label = ''.join(ch for ch in label[:MAX_LABEL] if ch.isprintable())
    if len(text.encode('utf-8', 'replace')) > MAX_GRAPH_TEXT:
        return None, [f'{label}: the graph text is larger than {MAX_GRAPH_TEXT} bytes']
    loaded = load_graph_text(text, label or '<apply>')
    if loaded.graph is None:
        return None, [str(e) for e in loaded.errors]
    result = validate(loaded.graph)
    errors = sorted([*loaded.errors, *result.errors], key=lambda e: e.position.line)
    if errors or result.graph is None:
        return None, [str(e) for e in errors]
    return result.graph, []


@dataclass
class ApplyJob:
    """One apply request, waiting for the reconciler's thread."""

    graph: ValidatedGraph
    force: bool
    dry_run: bool
    done: threading.Event = field(default_factory=threading.Event)
    success: bool = False
    messages: list[str] = field(default_factory=list)


class GraphService:
    """Serves ApplyGraph for a namespace; `run_pending` runs the jobs on the reconciler's thread."""

    def __init__(self, namespace: str) -> None:
        from rclpy.node import Node

        from schnitzel_stream_msgs.srv import ApplyGraph
        from schnitzel_stream_ros.runtime.container_handles import init_context
        from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

        self.jobs: queue.Queue[ApplyJob] = queue.Queue(maxsize=4)
        self.context = init_context()
        self.node = Node(NODE_NAME, namespace=namespace, context=self.context)
        self.node.create_service(ApplyGraph, service_name(namespace), self._serve)
        from diagnostic_msgs.msg import DiagnosticArray

        from schnitzel_stream_ros.runtime.diagnostics import DIAGNOSTICS_TOPIC, QOS

        self.diagnostics = self.node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, QOS)
        executor = make_executor('single', self.context)
        executor.add_node(self.node)
        self.spinner = Spinner(executor, self.context, 'graph-service').start()
        self._published_at = 0.0

    def publish_statuses(self, statuses: Callable[[float], list[Any]], period_sec: float = 1.0) -> None:
        """The supervisor's view of its containers on /diagnostics, at most every `period_sec`."""
        import time

        from schnitzel_stream_ros.runtime.diagnostics import to_message

        now = time.monotonic()
        if now - self._published_at < period_sec:
            return
        self._published_at = now
        self.diagnostics.publish(to_message(statuses(now), self.node.get_clock().now().to_msg()))

    def _serve(self, request: Any, response: Any) -> Any:
        graph, errors = validate_text(request.graph_text, request.source_label)
        if graph is None:
            response.success, response.messages = False, ['refused: the new graph is invalid', *errors]
            return response
        response.success, response.messages = self.submit(graph, bool(request.force), bool(request.dry_run))
        return response

    def submit(self, graph: ValidatedGraph, force: bool, dry_run: bool,
               timeout: float = APPLY_TIMEOUT_SEC) -> tuple[bool, list[str]]:
        """Hand a validated graph to the reconciler's thread and wait for its answer (the ROS service
        and the control plane's HTTP API both come through here: one queue, one reconciler)."""
        job = ApplyJob(graph, force, dry_run)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            return False, ['refused: other edits are still waiting']
        if not job.done.wait(timeout):
            return False, ['the reconciler did not answer in time']
        return job.success, job.messages

    def run_pending(self, apply: Callable[[ValidatedGraph, bool, bool], tuple[bool, list[str]]]) -> None:
        """Run the waiting jobs (on the caller's thread)."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                job.success, job.messages = apply(job.graph, job.force, job.dry_run)
            except Exception as exc:
                job.success, job.messages = False, [f'apply failed: {type(exc).__name__}: {exc}']
            finally:
                job.done.set()

    def close(self) -> None:
        import rclpy

        while True:  # an edit still waiting is answered now, not after APPLY_TIMEOUT_SEC
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            job.success, job.messages = False, ['refused: the run is ending']
            job.done.set()
        self.spinner.stop()
        self.node.destroy_node()
        with contextlib.suppress(Exception):
            rclpy.shutdown(context=self.context)
