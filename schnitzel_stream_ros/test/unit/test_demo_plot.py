"""The run report's plot (demo/plot.py): readable at a glance — cameras and detectors on their own
axes, legends beside the plots (not over the curves), units on every axis, gaps where a node or edge
had no value, a PNG written without a display."""

from __future__ import annotations

import json

from schnitzel_stream_ros.demo.plot import draw_timeline, plot_timeline


def _rows(n: int = 60) -> list[dict]:
    rows = []
    for i in range(n):
        nodes = {'cam0': {'rate': 10.0}, 'cam1': {'rate': 12.0}, 'det0': {'consumed_rate': 10.0}}
        if i >= 20:  # det1 appears late
            nodes['det1'] = {'consumed_rate': 6.0}
        edges = {'cam0.out->det0.in': {'latency_p50_ms': 0.2, 'latency_p99_ms': 40.0},
                 'fusion.out->backend.in': {'latency_p50_ms': None, 'latency_p99_ms': None}}
        rows.append({'t': float(i), 'nodes': nodes, 'edges': edges})
    return rows


def test_cameras_and_detectors_have_their_own_axes_with_units_and_legends_beside_them():
    figure = draw_timeline(_rows())
    figure.canvas.draw()
    cameras, detectors, latency = figure.axes
    assert [line.get_label() for line in cameras.get_lines()] == ['cam0', 'cam1']
    assert [line.get_label() for line in detectors.get_lines()] == ['det0 (cam0)', 'det1 (cam1)']
    assert cameras.get_ylabel() == detectors.get_ylabel() == 'frames/s'
    assert latency.get_ylabel() == 'ms (log)' and latency.get_yscale() == 'log'
    assert latency.get_xlabel() == 'time since start [s]'
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes:
        legend = axis.get_legend().get_window_extent(renderer)
        assert legend.x0 >= axis.get_window_extent(renderer).x1  # beside the plot, over no curve
        assert legend.x1 <= figure.bbox.x1  # and inside the picture
    det1 = detectors.get_lines()[1]
    assert list(det1.get_xdata()) == [float(i) for i in range(20, 60)]  # no invented zeros before it ran
    p50, p99 = latency.get_lines()[0], latency.get_lines()[1]
    assert p50.get_color() == p99.get_color() and p99.get_linestyle() == '--'
    assert len(latency.get_lines()[2].get_xdata()) == 0  # an edge without values draws nothing


def test_png_from_a_timeline_file_with_a_damaged_line(tmp_path):
    timeline = tmp_path / 'timeline.jsonl'
    timeline.write_text('\n'.join(json.dumps(r) for r in _rows()) + '\n{"t": 61, "nodes": {\n')
    png = plot_timeline(timeline, tmp_path / 'out' / 'demo.png')
    data = png.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    width, height = int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')
    assert (width, height) == (1100, 900)
    assert plot_timeline(tmp_path / 'missing.jsonl', tmp_path / 'empty.png').stat().st_size > 1000
