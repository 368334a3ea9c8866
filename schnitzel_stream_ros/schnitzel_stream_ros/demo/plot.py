"""PNG charts of a run timeline (observability/timeline.py), drawn with matplotlib.

Three panels that read at a glance: frames per second the cameras deliver, frames per second the
detectors process (their own panel: on one axis the camera curves hid under the detector curves),
and the latency of the edges a site operator watches (p50 solid, p99 dashed, one colour per edge,
logarithmic: 0.1 ms and 500 ms on one axis). Every axis says its unit; legends sit beside the
plots, never on the curves. A bare matplotlib Figure draws on the Agg canvas: no display (servers,
CI), no global pyplot state.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: (node, series, label): cameras by frames produced, detectors by frames processed
CAMERA_SERIES = (('cam0', 'rate', 'cam0'), ('cam1', 'rate', 'cam1'))
DETECTOR_SERIES = (('det0', 'consumed_rate', 'det0 (cam0)'), ('det1', 'consumed_rate', 'det1 (cam1)'))
LATENCY_EDGES = ('cam0.out->det0.in', 'cam1.out->det1.in', 'fusion.out->backend.in', 'fusion.out->robot.in')


def _load(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _series(rows: list[dict], part: str, name: str, key: str) -> tuple[list[float], list[float]]:
    """(t, value) where the timeline has a value (a node or edge that appeared late starts late)."""
    points = [(r['t'], r[part].get(name, {}).get(key)) for r in rows]
    kept = [(t, v) for t, v in points if isinstance(v, int | float)]
    return [t for t, _ in kept], [float(v) for _, v in kept]


def draw_timeline(rows: list[dict]) -> Any:
    """The figure (three axes) for timeline rows; plot_timeline() saves it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 9), layout='constrained')
    FigureCanvasAgg(figure)  # drawn in memory: no display, no pyplot state
    cameras, detectors, latency = figure.subplots(3, 1, sharex=True)
    for axis, series, title in ((cameras, CAMERA_SERIES, 'cameras: frames delivered'),
                                (detectors, DETECTOR_SERIES, 'detectors: frames processed')):
        for node, key, label in series:
            t, v = _series(rows, 'nodes', node, key)
            axis.plot(t, v, linewidth=1.6, label=label)
        axis.set_title(title, loc='left', fontsize=11)
        axis.set_ylabel('frames/s')
        axis.set_ylim(bottom=0)
    for index, edge in enumerate(LATENCY_EDGES):
        colour = f'C{index}'
        t, p50 = _series(rows, 'edges', edge, 'latency_p50_ms')
        latency.plot(t, p50, color=colour, linewidth=1.6, label=f'{edge} p50')
        t, p99 = _series(rows, 'edges', edge, 'latency_p99_ms')
        latency.plot(t, p99, color=colour, linewidth=1.0, linestyle='--', label=f'{edge} p99')
    latency.set_title('edge latency: emitted -> taken from the inbox', loc='left', fontsize=11)
    latency.set_ylabel('ms (log)')
    latency.set_yscale('log')
    latency.set_xlabel('time since start [s]')
    for axis in (cameras, detectors, latency):
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return figure


def plot_timeline(timeline: Path, png: Path) -> Path:
    rows = _load(timeline) if timeline.is_file() else []
    png.parent.mkdir(parents=True, exist_ok=True)
    draw_timeline(rows).savefig(png, dpi=100)
    return png
