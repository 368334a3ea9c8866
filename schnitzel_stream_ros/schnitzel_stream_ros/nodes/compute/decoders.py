"""Model input preparation and output decoding for the two detector families we support.

- `ssd`: TensorFlow Object Detection API graphs (our bundled person detector). Input uint8 NHWC RGB
  of any size (the graph resizes and normalises itself); outputs `num_detections`,
  `detection_boxes` (normalised ymin, xmin, ymax, xmax), `detection_scores`, `detection_classes`;
  NMS is already inside the graph.
- `yolov8`: Ultralytics YOLOv8 / YOLO11 exports. Input float32 NCHW RGB in [0, 1], letterboxed to a
  square; output `[1, 4 + C, N]` with box centre/size in input pixels and C class scores; NMS is
  ours (class-aware, greedy, like Ultralytics' default).

Pure numpy + cv2 and no onnxruntime here, so the decoding is testable on planted outputs.
Boxes come back in pixels of the original frame, clipped to it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

DECODERS = ('ssd', 'yolov8')
LETTERBOX_FILL = 114  # Ultralytics' padding grey


@dataclass(frozen=True)
class RawDetection:
    """One decoded box in frame pixels (floats; rounding happens where the packet is made)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the model input: input = frame * scale + pad."""

    scale: float
    pad_x: float
    pad_y: float


# -- SSD (TF Object Detection API) ---------------------------------------------------------------

def prepare_ssd(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [1, h, w, 3] RGB, stretched to `size` (w, h) as the graph's own resizer would."""
    width, height = size
    if frame_bgr.shape[1] != width or frame_bgr.shape[0] != height:
        frame_bgr = cv2.resize(frame_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(frame_bgr[:, :, ::-1])[np.newaxis]


def ssd_outputs(names: Sequence[str]) -> dict[str, str]:
    """Which output name is which: role (num, boxes, scores, classes) -> output name."""
    roles: dict[str, str] = {}
    for name in names:
        low = name.lower()
        for role in ('boxes', 'scores', 'classes', 'num'):
            if role in low and role not in roles:
                roles[role] = name
                break
    missing = {'boxes', 'scores', 'classes'} - set(roles)
    if missing:
        raise ValueError(f"decoder 'ssd': model outputs {list(names)} lack {sorted(missing)} "
                         '(expected detection_boxes, detection_scores, detection_classes[, num_detections])')
    return roles


def decode_ssd(
    outputs: Mapping[str, np.ndarray], roles: Mapping[str, str], frame_w: int, frame_h: int, conf: float,
) -> list[RawDetection]:
    boxes = np.asarray(outputs[roles['boxes']])[0]
    scores = np.asarray(outputs[roles['scores']])[0]
    classes = np.asarray(outputs[roles['classes']])[0]
    count = len(scores)
    if 'num' in roles:
        count = min(count, int(np.asarray(outputs[roles['num']]).reshape(-1)[0]))
    keep = np.nonzero(scores[:count] >= conf)[0]
    out: list[RawDetection] = []
    for i in keep:
        ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
        out.append(RawDetection(
            x1=min(max(xmin, 0.0), 1.0) * frame_w, y1=min(max(ymin, 0.0), 1.0) * frame_h,
            x2=min(max(xmax, 0.0), 1.0) * frame_w, y2=min(max(ymax, 0.0), 1.0) * frame_h,
            score=float(scores[i]), class_id=round(float(classes[i])),
        ))
    return out


# -- YOLOv8 / YOLO11 -----------------------------------------------------------------------------

def letterbox(frame_bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Fit the frame into `size` (w, h) keeping its aspect ratio; pad the rest evenly (grey)."""
    width, height = size
    frame_h, frame_w = frame_bgr.shape[:2]
    scale = min(width / frame_w, height / frame_h)
    new_w, new_h = round(frame_w * scale), round(frame_h * scale)
    pad_x, pad_y = (width - new_w) / 2.0, (height - new_h) / 2.0
    resized = frame_bgr if (new_w, new_h) == (frame_w, frame_h) else cv2.resize(
        frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = round(pad_x - 0.1), round(pad_y - 0.1)
    canvas = np.full((height, width, 3), LETTERBOX_FILL, dtype=np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas, Letterbox(scale, float(left), float(top))


def prepare_yolo(frame_bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """float32 [1, 3, h, w] RGB in [0, 1], letterboxed; and how to map boxes back."""
    canvas, box = letterbox(frame_bgr, size)
    chw = canvas[:, :, ::-1].transpose(2, 0, 1)
    return (np.ascontiguousarray(chw, dtype=np.float32) * (1.0 / 255.0))[np.newaxis], box


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best score first (ties: lower index first)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    keep: list[int] = []
    suppressed = np.zeros(len(scores), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        inter_w = np.maximum(0.0, np.minimum(x2[i], x2) - np.maximum(x1[i], x1))
        inter_h = np.maximum(0.0, np.minimum(y2[i], y2) - np.maximum(y1[i], y1))
        inter = inter_w * inter_h
        union = areas[i] + areas - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        suppressed |= iou > iou_threshold
    return keep


def decode_yolo(
    output: np.ndarray, box: Letterbox, frame_w: int, frame_h: int, *, conf: float, iou: float, max_det: int,
) -> list[RawDetection]:
    """Decode `[1, 4 + C, N]` (or `[1, N, 4 + C]`): threshold, class-aware NMS, back to frame pixels."""
    pred = np.asarray(output, dtype=np.float32)
    if pred.ndim != 3 or pred.shape[0] != 1 or min(pred.shape[1:]) < 5:
        raise ValueError(f"decoder 'yolov8': expected an output of shape [1, 4 + classes, boxes], "
                         f'got {list(pred.shape)}')
    pred = pred[0]
    if pred.shape[0] > pred.shape[1]:  # [N, 4 + C]: some exports are transposed (N > 4 + C always)
        pred = pred.T
    class_scores = pred[4:]
    class_ids = np.argmax(class_scores, axis=0)
    scores = class_scores[class_ids, np.arange(class_scores.shape[1])]
    candidates = np.nonzero(scores >= conf)[0]
    if candidates.size == 0:
        return []
    cx, cy, w, h = (pred[k, candidates] for k in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    cand_scores = scores[candidates]
    cand_classes = class_ids[candidates]
    kept: list[int] = []
    for cls in np.unique(cand_classes):
        members = np.nonzero(cand_classes == cls)[0]
        kept.extend(int(members[k]) for k in nms(boxes[members], cand_scores[members], iou))
    kept.sort(key=lambda i: (-float(cand_scores[i]), i))
    out: list[RawDetection] = []
    for i in kept[:max_det]:
        bx1, by1, bx2, by2 = ((float(boxes[i, k]) - (box.pad_x if k % 2 == 0 else box.pad_y)) / box.scale
                              for k in range(4))
        out.append(RawDetection(
            x1=min(max(bx1, 0.0), frame_w), y1=min(max(by1, 0.0), frame_h),
            x2=min(max(bx2, 0.0), frame_w), y2=min(max(by2, 0.0), frame_h),
            score=float(cand_scores[i]), class_id=int(cand_classes[i]),
        ))
    return out
