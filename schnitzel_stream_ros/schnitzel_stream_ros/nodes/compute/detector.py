"""OnnxDetector: one onnxruntime session + a decoder + the class map, frame in, detections out.

Kept apart from the plugin so the benchmark and tests run the exact code the graph node runs.
A detection is the dict the protocol v0.2 event builder consumes (upstream layout):
`{bbox: {x1, y1, x2, y2} (int pixels, origin top-left), confidence, class_id, class_name,
object_type, event_type, severity}` — the tracker later adds `track_id`.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from schnitzel_stream_ros.memory import release_free_heap
from schnitzel_stream_ros.nodes.compute.decoders import (
    DECODERS,
    decode_ssd,
    decode_yolo,
    prepare_ssd,
    prepare_yolo,
    ssd_outputs,
)
from schnitzel_stream_ros.nodes.compute.taxonomy import EventClass

#: default model input (w, h) per decoder when the model does not fix it
DEFAULT_INPUT_SIZE = {'ssd': (300, 300), 'yolov8': (640, 640)}


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Sequential execution, all graph optimisations, a bounded thread pool that does not spin.

    Bounded threads matter on an edge box: capture, codecs and other nodes share the same cores,
    and onnxruntime's default (all cores, spinning) starves them. Spinning keeps the pool's threads
    busy-waiting after every inference: at camera rates that burnt ~50 % more CPU for nothing and
    slowed every other thread on a 2-core machine (measured: 10 fps pacing, 52 % vs 35 % of a core).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.add_session_config_entry('session.inter_op.allow_spinning', '0')
    options.log_severity_level = 3  # errors only: onnxruntime warns about harmless shape details
    return options


def choose_providers(wanted: Sequence[str], where: str) -> tuple[list[str], list[str]]:
    """(available providers in the wanted order, wanted but not available here)."""
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if not chosen:
        raise ValueError(f'{where}: none of the execution providers {list(wanted)} is available '
                         f'(available: {sorted(available)})')
    return chosen, missing


#: Sessions in use, by (model file, threads, providers). Two cameras running the same model share
#: one session — onnxruntime allows concurrent run() on one session — which saves the model's
#: weights and arena once per extra detector (~35 MB each for the bundled model). Weak: a session
#: goes away with its last detector (node unloaded).
_SESSIONS: weakref.WeakValueDictionary[tuple[str, int, tuple[str, ...]], Any] = weakref.WeakValueDictionary()
_SESSIONS_LOCK = threading.Lock()


def shared_session(model_path: Path, intra_op_threads: int, providers: Sequence[str]) -> Any:
    key = (str(model_path.resolve()), intra_op_threads, tuple(providers))
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            options = session_options(intra_op_threads)
            session = ort.InferenceSession(key[0], options, providers=list(providers))
            _SESSIONS[key] = session
            release_free_heap()  # the model's parse and optimisation copies are freed: give them back
        return session


@dataclass
class OnnxDetector:
    model_path: Path
    decoder: str
    class_map: dict[int, EventClass]
    conf: float
    iou: float = 0.45
    max_det: int = 100
    input_size: tuple[int, int] | None = None
    providers: Sequence[str] = ('CPUExecutionProvider',)
    intra_op_threads: int = 2
    classes: frozenset[int] | None = None  # keep only these class ids (upstream `classes`)
    where: str = 'detector'  # names the node in errors
    session: Any = field(init=False, repr=False)
    unmapped_total: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"{self.where}: parameter 'decoder': {self.decoder!r} "
                             f'is not one of {list(DECODERS)}')
        if self.model_path.suffix.lower() != '.onnx':
            hint = ''
            if self.model_path.suffix.lower() == '.pt':
                hint = ' (export it first, e.g. `yolo export model=yolov8n.pt format=onnx`)'
            raise ValueError(f"{self.where}: parameter 'model_path': {self.model_path} "
                             f'is not an .onnx model{hint}')
        providers, self.missing_providers = choose_providers(self.providers, self.where)
        try:
            self.session = shared_session(self.model_path, self.intra_op_threads, providers)
        except Exception as exc:  # onnxruntime raises its own exception types; one line names the file
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{self.where}: parameter 'model_path': onnxruntime cannot load "
                             f'{self.model_path}: {first_line}') from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.fixed_size = self._size_from_model(model_input.shape)  # None: the model takes any size
        self.size = self.input_size or self.fixed_size or DEFAULT_INPUT_SIZE[self.decoder]
        if self.decoder == 'ssd':
            self.ssd_roles = ssd_outputs(self.output_names)

    def _size_from_model(self, shape: Sequence[Any]) -> tuple[int, int] | None:
        """(w, h) when the model fixes its input size (NHWC for ssd, NCHW for yolov8)."""
        if len(shape) != 4:
            return None
        h, w = (shape[1], shape[2]) if self.decoder == 'ssd' else (shape[2], shape[3])
        return (w, h) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None

    def prepare(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Any]:
        """The model input tensor for a frame, and what decoding needs to map boxes back."""
        if self.decoder == 'ssd':
            return prepare_ssd(frame_bgr, self.size), None
        return prepare_yolo(frame_bgr, self.size)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: tensor})

    def decode(self, outputs: list[np.ndarray], box: Any, frame_w: int, frame_h: int) -> list[dict[str, Any]]:
        if self.decoder == 'ssd':
            raw = decode_ssd(dict(zip(self.output_names, outputs, strict=True)), self.ssd_roles,
                             frame_w, frame_h, self.conf)
            raw = raw[:self.max_det]
        else:
            raw = decode_yolo(outputs[0], box, frame_w, frame_h,
                              conf=self.conf, iou=self.iou, max_det=self.max_det)
        detections: list[dict[str, Any]] = []
        for det in raw:
            if self.classes is not None and det.class_id not in self.classes:
                continue
            mapped = self.class_map.get(det.class_id)
            if mapped is None:
                self.unmapped_total += 1
                continue
            detections.append({
                'bbox': {'x1': round(det.x1), 'y1': round(det.y1), 'x2': round(det.x2), 'y2': round(det.y2)},
                'confidence': round(det.score, 4),
                'class_id': det.class_id,
                'class_name': mapped.object_type.lower(),
                'object_type': mapped.object_type,
                'event_type': mapped.event_type,
                'severity': mapped.severity,
            })
        return detections

    def detect(self, frame_bgr: np.ndarray) -> list[dict[str, Any]]:
        """Detections in a BGR frame (pixels of that frame)."""
        tensor, box = self.prepare(frame_bgr)
        return self.decode(self.infer(tensor), box, frame_bgr.shape[1], frame_bgr.shape[0])
