"""Detector nodes on onnxruntime: OnnxDetectorNode (ours) and YoloV8DetectorNode (upstream name).

Both run the same OnnxDetector and emit, for every frame, the same two packets:
- a `kind=detection` packet (new packet_id, meta.source_packet_id = the frame's): payload = the
  list of detections (possibly empty, so a tracker sees every frame), meta frame_idx / epoch /
  pos_msec copied from the frame plus frame_width, frame_height, detection_count, model;
- the frame itself, enriched with `meta.detections` (same packet_id): for annotation sinks, in
  process or — as sensor_msgs/Image with the boxes in meta — across containers.
They differ only in which one goes to the default port `out`: OnnxDetectorNode sends detections
there (frames on `frames`); YoloV8DetectorNode keeps upstream's contract, frames on `out`
(detections on `detections`), so upstream graphs `detector -> display` stay valid.

Keep-freshest: inference is slower than capture, so the node expects its inbox to keep only the
newest frame — `config.__runtime__: {inbox_max: 1, inbox_overflow: drop_oldest}` (RUNTIME_HINT).
A slow model then lowers the processed frame rate but never stalls the camera.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import cv2
import numpy as np

from schnitzel_stream_ros.nodes.compute.decoders import DECODERS
from schnitzel_stream_ros.nodes.compute.detector import OnnxDetector
from schnitzel_stream_ros.nodes.compute.models import resolve_model
from schnitzel_stream_ros.nodes.compute.taxonomy import parse_class_map
from schnitzel_stream_ros.nodes.vision.frames import DETECTIONS_META, frame_of
from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import DEFAULT_INPUT, DEFAULT_OUTPUT, Param, Plugin, Port

FRAME_INPUT = Port(DEFAULT_INPUT, kinds=frozenset({Kind.FRAME}), profile=PayloadProfile.INPROC_ANY,
                   description='numpy BGR (or gray/BGRA) frames')
#: meta entries of a frame that its detection packet carries on
_CARRIED_META = (MetaKey.FRAME_IDX, MetaKey.POS_MSEC, MetaKey.EPOCH)
#: default class map per decoder: the bundled SSD model's class 1 and COCO's class 0 are persons
_DEFAULT_CLASS_MAP = {'ssd': {1: 'PERSON'}, 'yolov8': {0: 'PERSON'}}
_DEFAULT_CONF = {'ssd': 0.5, 'yolov8': 0.25}


def _port(name: str, kind: str) -> Port:
    if kind == Kind.DETECTION:
        return Port(name, kinds=frozenset({Kind.DETECTION}), profile=PayloadProfile.JSON_PORTABLE,
                    description='list of {bbox, confidence, class_id, class_name, object_type, '
                                'event_type, severity}')
    return Port(name, kinds=frozenset({Kind.FRAME}), profile=PayloadProfile.INPROC_ANY,
                description='the input frame with meta.detections')


def _changed(params: tuple[Param, ...], name: str, **changes: Any) -> tuple[Param, ...]:
    return tuple(dataclasses.replace(p, **changes) if p.name == name else p for p in params)


def detection_packet(frame: StreamPacket, detections: list[dict[str, Any]], frame_w: int, frame_h: int,
                     model: str) -> StreamPacket:
    """The `kind=detection` child of a frame (what a detector emits; the snapshot node rebuilds it)."""
    meta = {key: frame.meta[key] for key in _CARRIED_META if key in frame.meta}
    meta.update({
        'frame_width': frame_w, 'frame_height': frame_h, 'detection_count': len(detections),
        'model': model, MetaKey.IDEMPOTENCY_KEY: f'{frame.idempotency_key}:detections',
    })
    return frame.child(kind=Kind.DETECTION, payload=detections, meta=meta)


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """3-channel BGR view of a gray, gray+1 or BGRA frame (no copy for BGR)."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


class OnnxDetectorNode(Plugin):
    """Object detector on onnxruntime (SSD or YOLOv8 outputs); default: the bundled person detector."""

    INPUTS = (FRAME_INPUT,)
    DETECTIONS_PORT: ClassVar[str] = DEFAULT_OUTPUT
    FRAMES_PORT: ClassVar[str] = 'frames'
    OUTPUTS = (_port(DEFAULT_OUTPUT, Kind.DETECTION), _port('frames', Kind.FRAME))
    #: inbox settings this node expects (graph: config.__runtime__): keep only the freshest frame
    RUNTIME_HINT: ClassVar[Mapping[str, Any]] = {'inbox_max': 1, 'inbox_overflow': 'drop_oldest'}
    PARAMS = (
        Param('model_path', str, None,
              description='.onnx model (a path, or a bundled model file name); '
                          'default: the bundled person detector'),
        Param('decoder', str, 'ssd', choices=DECODERS, description='output format: ssd | yolov8'),
        Param('input_size', list, None, description='model input [width, height] or [size] '
              '(default: from the model, else 300 for ssd and 640 for yolov8)'),
        Param('input_side', int, None, min=32, max=2048, dynamic=True,
              description='a knob: the model input as a square of this many pixels from the next frame on '
                          '(unset: input_size); only for models whose input size is not fixed'),
        Param('conf', float, None, min=0.0, max=1.0, dynamic=True,
              description='score threshold (default 0.5 for ssd, 0.25 for yolov8); a knob: settable live'),
        Param('iou', float, 0.45, min=0.0, max=1.0, description='NMS IoU threshold (yolov8)'),
        Param('max_det', int, 100, min=1, description='most detections per frame'),
        Param('classes', list, None, description='keep only these class ids'),
        Param('class_map', dict, None, description='{class_id: OBJECT_TYPE or {object_type, event_type, '
              'severity}} (default: the person class)'),
        Param('providers', list, None, description="onnxruntime execution providers, in order of preference "
              "(default: from device, else ['CPUExecutionProvider'])"),
        Param('device', str, '', description="upstream: 'cpu', 'cuda' or a GPU index"),
        Param('intra_op_threads', int, 2, min=0,
              description='onnxruntime threads per inference (0: all cores)'),
    )

    def setup(self) -> None:
        p = self.params
        where = f'node {self.node_id!r}'
        decoder: str = p['decoder']
        if p['model_path'] is None and decoder != 'ssd':
            raise ValueError(f"{where}: parameter 'model_path' is required for decoder {decoder!r} (no YOLO "
                             'weights ship with the suite: export yours with `yolo export format=onnx`)')
        model = resolve_model(p['model_path'], f"{where}: parameter 'model_path'")
        raw_map = p['class_map'] if p['class_map'] is not None else _DEFAULT_CLASS_MAP[decoder]
        class_map = parse_class_map(raw_map, f"{where}: parameter 'class_map'")
        self.detector = OnnxDetector(
            model_path=model, decoder=decoder, class_map=class_map,
            conf=p['conf'] if p['conf'] is not None else _DEFAULT_CONF[decoder],
            iou=p['iou'], max_det=p['max_det'], input_size=self._input_size(where),
            providers=self._providers(), intra_op_threads=p['intra_op_threads'],
            classes=self._classes(where), where=where,
        )
        if self.detector.missing_providers:
            self.log.warning(f'{where}: execution providers not available here, skipped: '
                             f'{self.detector.missing_providers}')
        self.model_name = model.name
        self._unmapped_seen = 0
        self._default_size = self.detector.size
        if p['input_side'] is not None:
            self._set_input_side(p['input_side'])

    def _set_input_side(self, side: int | None) -> None:
        """The size the next frame is fed at; a model with a fixed input keeps its own (logged)."""
        if self.detector.fixed_size is not None:
            if side is not None:
                self.count('input_side_refused_total')
                self.log.warning(f"node '{self.node_id}': parameter 'input_side' {side} ignored: the model's "
                                 f'input is fixed at {self.detector.fixed_size}')
            return
        self.detector.size = (side, side) if side is not None else self._default_size
        self.gauge('input_side', self.detector.size[0])

    def _input_size(self, where: str) -> tuple[int, int] | None:
        raw = self.params['input_size']
        if raw is None:
            return None
        ok = isinstance(raw, list) and len(raw) in (1, 2) and all(
            isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 8192 for v in raw)
        if not ok:
            raise ValueError(f"{where}: parameter 'input_size': expected [width, height] or [size] "
                             f'(integers 16..8192), got {raw!r}')
        return (raw[0], raw[-1])

    def _providers(self) -> list[str]:
        if self.params['providers']:
            return [str(p) for p in self.params['providers']]
        device = str(self.params['device']).strip().lower()
        if device and device != 'cpu':  # 'cuda', 'cuda:0', '0'
            return ['CUDAExecutionProvider', 'CPUExecutionProvider']
        return ['CPUExecutionProvider']

    def _classes(self, where: str) -> frozenset[int] | None:
        raw = self.params['classes']
        if raw is None:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise ValueError(f"{where}: parameter 'classes': expected a list of class ids, got {raw!r}")
        return frozenset(raw)

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if 'input_side' in changed:
            self._set_input_side(changed['input_side'])
        if 'conf' in changed:  # the next frame is scored with it; None: the decoder's default again
            conf = changed['conf']
            self.detector.conf = conf if conf is not None else _DEFAULT_CONF[self.params['decoder']]

    def process(self, packet: StreamPacket, port: str = DEFAULT_INPUT) -> None:
        frame = as_bgr(frame_of(packet, self.node_id))
        frame_h, frame_w = frame.shape[:2]
        started = time.perf_counter()
        detections = self.detector.detect(frame)
        self.gauge('inference_ms', round((time.perf_counter() - started) * 1000.0, 2))
        self.count('frames_total')
        if detections:
            self.count('detected_total', len(detections))
            self.count('frames_with_detections_total')
        if self.detector.unmapped_total != self._unmapped_seen:
            self.count('unmapped_total', self.detector.unmapped_total - self._unmapped_seen)
            self._unmapped_seen = self.detector.unmapped_total
        self.emit(detection_packet(packet, detections, frame_w, frame_h, self.model_name),
                  self.DETECTIONS_PORT)
        self.emit(packet.with_meta(**{DETECTIONS_META: detections}), self.FRAMES_PORT)


class YoloV8DetectorNode(OnnxDetectorNode):
    """YOLOv8/YOLO11 detector on onnxruntime (upstream name and keys; frames + detections on `out`)."""

    FRAMES_PORT: ClassVar[str] = DEFAULT_OUTPUT
    DETECTIONS_PORT: ClassVar[str] = 'detections'
    OUTPUTS = (_port(DEFAULT_OUTPUT, Kind.FRAME), _port('detections', Kind.DETECTION))
    PARAMS = _changed(_changed(OnnxDetectorNode.PARAMS, 'decoder', default='yolov8'),
                      'model_path', description='.onnx model exported from YOLOv8/YOLO11 (required)')
