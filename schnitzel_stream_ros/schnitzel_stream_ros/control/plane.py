"""What the control plane can see and do, without HTTP: the API (control/app.py) is a thin layer on it.

Its owner — the runner, or the standalone `schnitzel-stream control` next to a launched graph
(control/standalone.py) — gives it three callables: the graph that runs now, `submit()` (the way to
the one reconciler: the runner's job queue of runtime/graph_service.py, or the `_graph/apply`
service that also serves `schnitzel-stream apply`) and `report()` (the run report of this moment),
and feeds `view` with progress snapshots. Actions raise ActionError with an HTTP status and a
one-line reason; nothing is half-applied (graph edits are all-or-nothing in the reconciler, a
parameter is one service call, dead-letter operations are one SQLite transaction each).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from schnitzel_stream_ros.control.camera_frames import CameraFrames
from schnitzel_stream_ros.control.config import ControlConfig
from schnitzel_stream_ros.control.queues import QueueInspector, UnknownQueue
from schnitzel_stream_ros.control.site_view import SiteView, fq_name, graph_document
from schnitzel_stream_ros.graph.model import ValidatedGraph

#: (validated graph, its text, its label, force, dry_run) -> (success, lines): the runner hands the graph
#: to its reconciler's queue; a standalone control plane sends the text to the `_graph/apply` service
Submit = Callable[[ValidatedGraph, str, str, bool, bool], tuple[bool, list[str]]]
#: queue statistics are read from SQLite at most this often, however many pages watch
QUEUE_STATS_EVERY_SEC = 1.0
ANNOTATED_SINK = ':AnnotatedImageSink'


class ActionError(Exception):
    """A refused request: HTTP status, one-line reason, optional detail lines (validator output)."""

    def __init__(self, status: int, reason: str, lines: list[str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.lines = list(lines or [])


class ControlPlane:
    def __init__(self, config: ControlConfig, *, graph: Callable[[], ValidatedGraph],
                 submit: Callable[[], Submit | None], report: Callable[[], dict[str, Any]],
                 ros: bool = True) -> None:
        self.config = config
        self.graph = graph
        self._submit = submit
        self._report = report
        self.view = SiteView(graph)
        self.queues = QueueInspector()
        self.frames = CameraFrames()
        self.bridge: Any = None
        if ros:
            from schnitzel_stream_ros.control.ros_bridge import RosBridge

            self.bridge = RosBridge(self.view, image_topics=self.image_topics, frames=self.frames)
        self._queue_cache: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._queue_lock = threading.Lock()
        self.closing = False  # set at close(): open push streams end

    # -- reads ----------------------------------------------------------------------------------
    def graph_doc(self) -> dict[str, Any]:
        return graph_document(self.graph())

    def image_topics(self) -> set[str]:
        """Output topics of the graph's annotated-image sinks (the camera frames the page shows)."""
        return {topic for n in self.graph().nodes if n.plugin_ref.endswith(ANNOTATED_SINK)
                for topic in n.output_topics.values()}

    def queue_summary(self) -> list[dict[str, Any]]:
        with self._queue_lock:
            at, rows = self._queue_cache
            if time.monotonic() - at >= QUEUE_STATS_EVERY_SEC:
                rows = self.queues.summary(self.graph(), self.view.metrics()['nodes'])
                self._queue_cache = (time.monotonic(), rows)
            return rows

    def _node(self, node_id: str) -> Any:
        try:
            return self.graph().node(node_id)
        except KeyError:
            raise ActionError(404, f"no node '{node_id}' in the running graph") from None

    def node_params(self, node_id: str) -> dict[str, Any]:
        """The dynamic parameters of a node with the values the node holds now (parameter service)."""
        node = self._node(node_id)
        schema = node.plugin_cls.param_schema()
        names = sorted(n for n, p in schema.items() if p.dynamic)
        fq = fq_name(node)
        values: dict[str, Any] = {}
        if names and self.bridge is not None:
            from schnitzel_stream_ros.control.ros_bridge import ParamRefused

            try:
                values = {n: v for n, (_t, v) in self.bridge.get_parameters(fq, names).items()}
            except ParamRefused as exc:
                raise ActionError(503, str(exc)) from None
        return {'node': node_id, 'fq_name': fq, 'params': [
            {'name': n, 'type': schema[n].type_name, 'value': values.get(n),
             'description': schema[n].description, 'min': schema[n].min, 'max': schema[n].max,
             'choices': list(schema[n].choices) if schema[n].choices else None}
            for n in names
        ]}

    # -- actions --------------------------------------------------------------------------------
    def set_param(self, node_id: str, name: str, value: Any) -> dict[str, Any]:
        node = self._node(node_id)
        if self.bridge is None:
            raise ActionError(503, 'parameters cannot be set: no ROS node in this control plane')
        from schnitzel_stream_ros.control.ros_bridge import ParamRefused

        fq = fq_name(node)
        try:
            now = self.bridge.set_parameter(fq, name, value)
        except ParamRefused as exc:
            status = 503 if 'not available' in str(exc) or 'no answer' in str(exc) else 400
            raise ActionError(status, str(exc)) from None
        return {'node': node_id, 'name': name, 'value': now}

    def check_graph(self, text: str, label: str) -> ValidatedGraph:
        from schnitzel_stream_ros.runtime.graph_service import validate_text

        graph, errors = validate_text(text, label)
        if graph is None:
            raise ActionError(422, 'refused: the new graph is invalid', errors)
        return graph

    def _reconcile(self, graph: ValidatedGraph, text: str, label: str, force: bool,
                   dry_run: bool) -> tuple[bool, list[str]]:
        submit = self._submit()
        if submit is None:
            raise ActionError(503, 'the graph is not running yet (or no longer): no reconciler to edit it')
        return submit(graph, text, label, force, dry_run)

    def validate_graph(self, text: str, label: str) -> dict[str, Any]:
        """Validate, then the diff against what runs (a dry run of the reconciler); changes nothing."""
        try:
            graph = self.check_graph(text, label)
        except ActionError as exc:
            return {'valid': False, 'lines': exc.lines, 'diff': []}
        ok, lines = self._reconcile(graph, text, label, False, True)
        return {'valid': True, 'applicable': ok, 'lines': [] if ok else lines, 'diff': lines if ok else []}

    def apply_graph(self, text: str, label: str, force: bool) -> dict[str, Any]:
        graph = self.check_graph(text, label)
        ok, lines = self._reconcile(graph, text, label, force, False)
        if not ok:
            raise ActionError(409, lines[0] if lines else 'refused by the reconciler', lines)
        return {'applied': True, 'lines': lines}

    def redrive(self, node_id: str, seqs: list[int] | None) -> dict[str, Any]:
        try:
            return self.queues.redrive(self.graph(), node_id, seqs)
        except UnknownQueue as exc:
            raise ActionError(404, str(exc)) from None

    def purge(self, node_id: str, seqs: list[int] | None) -> dict[str, Any]:
        try:
            return self.queues.purge(self.graph(), node_id, seqs)
        except UnknownQueue as exc:
            raise ActionError(404, str(exc)) from None

    def dead_letters(self, node_id: str, limit: int, after: int) -> dict[str, Any]:
        try:
            return self.queues.list_dead(self.graph(), node_id, limit, after)
        except UnknownQueue as exc:
            raise ActionError(404, str(exc)) from None

    def snapshot_report(self) -> dict[str, Any]:
        """The run report of this moment; written beside --report-json (`<name>.live.json`) if given."""
        from schnitzel_stream_ros.observability.report import write_report

        report = self._report()
        path = None
        if self.config.report_path is not None:
            target = self.config.report_path
            path = target.with_name(f'{target.stem}.live{target.suffix or ".json"}')
            write_report(report, path)
        return {'path': str(path) if path else None, 'report': report}

    def close(self) -> None:
        self.closing = True
        if self.bridge is not None:
            self.bridge.close()
        self.queues.close()
