"""PNG line charts of a run timeline (observability/timeline.py), drawn with OpenCV.

OpenCV is already a dependency (frames, JPEG/PNG); a plotting library would be one more for a
single picture. Two panels: frames per second of the cameras and detectors, and the latency
(p50 solid, p99 thin) of the edges a site operator watches.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

WIDTH, PANEL_HEIGHT, MARGIN = 960, 300, 60
COLOURS = [(200, 80, 0), (0, 140, 255), (60, 170, 60), (180, 60, 180), (40, 40, 220), (120, 120, 0)]
#: (node, series): cameras by frames produced, detectors by frames processed (they emit two packets each)
FPS_SERIES = (('cam0', 'rate'), ('cam1', 'rate'), ('det0', 'consumed_rate'), ('det1', 'consumed_rate'))
LATENCY_EDGES = ('cam0.out->det0.in', 'cam1.out->det1.in', 'fusion.out->backend.in', 'fusion.out->robot.in')


def _load(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _panel(title: str, unit: str, series: Sequence[tuple[str, list[float], list[float | None], int]],
           t_max: float, paired: bool = False) -> np.ndarray:
    """One chart; `paired`: consecutive series (p50, p99 of one edge) share a colour."""
    img = np.full((PANEL_HEIGHT, WIDTH, 3), 255, np.uint8)
    left, right, top, bottom = MARGIN, WIDTH - 20, 30, PANEL_HEIGHT - 40
    values = [v for _name, _t, ys, _w in series for v in ys if v is not None]
    y_max = max(values) * 1.15 if values and max(values) > 0 else 1.0
    cv2.rectangle(img, (left, top), (right, bottom), (0, 0, 0), 1)
    cv2.putText(img, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(5):
        y_val = y_max * i / 4
        y = int(bottom - (bottom - top) * i / 4)
        cv2.line(img, (left, y), (right, y), (225, 225, 225), 1)
        cv2.putText(img, f'{y_val:.3g}', (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1,
                    cv2.LINE_AA)
    cv2.putText(img, unit, (5, top - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, f'time [s], 0 .. {t_max:.0f}', (right - 170, PANEL_HEIGHT - 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    legend_x = left + 10
    for index, (name, ts, ys, width) in enumerate(series):
        colour = COLOURS[(index // 2 if paired else index) % len(COLOURS)]
        points = [
            (int(left + (right - left) * t / max(t_max, 1e-6)), int(bottom - (bottom - top) * y / y_max))
            for t, y in zip(ts, ys, strict=True) if y is not None
        ]
        if len(points) > 1:
            cv2.polylines(img, [np.array(points, np.int32)], False, colour, width * 2 - 1 if width > 1 else 1,
                          cv2.LINE_AA)
        cv2.putText(img, name, (legend_x, top + 16 + 14 * index), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    return img


def plot_timeline(timeline: Path, png: Path) -> Path:
    rows = _load(timeline) if timeline.is_file() else []
    ts = [r['t'] for r in rows]
    t_max = ts[-1] if ts else 1.0
    fps = [
        (f'{node} {"frames" if key == "rate" else "processed"}/s', ts,
         [r['nodes'].get(node, {}).get(key) for r in rows], 2)
        for node, key in FPS_SERIES
    ]
    latency: list[tuple[str, list[float], list[float | None], int]] = []
    for edge in LATENCY_EDGES:
        latency.append((f'{edge} p50', ts, [r['edges'].get(edge, {}).get('latency_p50_ms') for r in rows], 2))
        latency.append((f'{edge} p99', ts, [r['edges'].get(edge, {}).get('latency_p99_ms') for r in rows], 1))
    image = np.vstack([
        _panel('frames per second', 'fps', fps, t_max),
        _panel('edge latency: emit -> taken from the inbox (p50 thick, p99 thin)', 'ms', latency, t_max,
               paired=True),
    ])
    png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), image):
        raise OSError(f'could not write {png}')
    return png
