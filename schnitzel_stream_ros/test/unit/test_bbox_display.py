"""OpenCvBboxDisplaySink: upstream's overlay window as a sensor_msgs/Image output, headless-safe.

The window itself cannot be opened here: this machine has no display and the suite's OpenCV is
opencv-python-headless (no GUI backend). So these tests run the real plugin on the real headless
OpenCV and check what a headless machine must do — publish the annotated frame, say once why no
window opened, keep going. The only stand-in is the build-information text of a GTK build (an
excerpt in the format of cv2.getBuildInformation()): to check that such a build is recognised, and
to make the plugin try the real (headless, failing) cv2.namedWindow.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from schnitzel_stream_ros.codec.image import image_msg_to_frame
from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate
from schnitzel_stream_ros.nodes.sinks.bbox_display import (
    OpenCvBboxDisplaySink,
    gui_backend,
    window_unavailable,
)
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

TS = '2026-02-14T12:00:00.500000Z'
GREEN = (48, 220, 48)  # upstream's default box colour
GTK_BUILD_EXCERPT = """
  OpenCL:                        YES (no extra features)

  GUI:                           GTK3
    GTK+:                        YES (ver 3.24.38)
      GThread :                  YES (ver 2.74.6)
    VTK support:                 NO
"""


def make(monkeypatch, env=None, **params):
    for name in ('DISPLAY', 'WAYLAND_DISPLAY'):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    ctx = SimpleContext(node_id='display', params=resolve_params(OpenCvBboxDisplaySink, params))
    sink = OpenCvBboxDisplaySink(ctx)
    sink.setup()
    return sink, ctx


def frame_packet(frame, meta=None, payload=None):
    return StreamPacket.new('frame', 'cam01', frame if payload is None else payload, meta=meta, ts=TS)


def published(ctx) -> np.ndarray:
    msg = ctx.outputs['image'][-1].payload
    assert isinstance(msg, Image) and msg.encoding == 'bgr8'
    return image_msg_to_frame(msg)


def colour_at(image, x, y):
    return tuple(int(c) for c in image[y, x])


BOX = {'bbox': {'x1': 20, 'y1': 60, 'x2': 80, 'y2': 100}, 'class_name': 'person', 'confidence': 0.9}


def test_boxes_from_the_detector_meta_are_published_as_an_image(monkeypatch):
    sink, ctx = make(monkeypatch, show_stats=False)
    frame = np.full((120, 160, 3), 40, dtype=np.uint8)
    frame.flags.writeable = False  # frames are shared read-only between nodes
    packet = frame_packet(frame, meta={'frame_idx': 7, 'detections': [BOX, {'no': 'bbox'}]})
    assert sink.process(packet) is None
    image = published(ctx)
    assert colour_at(image, 20, 80) == GREEN and colour_at(image, 80, 80) == GREEN  # left and right edge
    assert colour_at(image, 50, 80) == (40, 40, 40)  # inside the box: untouched
    assert (image[:30] == 40).all()  # no caption with show_stats false (the label sits above the box)
    assert (frame == 40).all()
    header = ctx.outputs['image'][0].payload.header
    assert header.frame_id == 'cam01' and header.stamp.nanosec == 500_000_000
    assert ctx.counters == {'published_total': 1}
    assert 'out' not in ctx.outputs  # forward is false


def test_upstream_payload_colour_thickness_caption_and_forward(monkeypatch):
    sink, ctx = make(monkeypatch, color_bgr=[255, 0, 0], line_thickness=3, forward=True)
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    packet = frame_packet(None, payload={'frame': frame, 'frame_idx': 3, 'detections': [BOX]})
    assert sink.process(packet) is packet  # forward: the input frame goes on unchanged
    image = published(ctx)
    assert colour_at(image, 21, 80) == (255, 0, 0) and colour_at(image, 19, 80) == (255, 0, 0)  # 3 px line
    b, g, r = (image[:30, :, c].astype(int) for c in range(3))
    grey = (b == g) & (g == r) & (b > 128)
    assert grey.sum() > 20  # show_stats (default): white (anti-aliased) text in the corner
    assert (frame == 0).all()


def test_frames_without_an_image_are_counted_not_published(monkeypatch):
    sink, ctx = make(monkeypatch)
    sink.process(StreamPacket.new('frame', 'cam01', {'frame': None, 'frame_idx': 0}, ts=TS))
    sink.process(frame_packet(np.zeros((10, 10, 3), dtype=np.float32)))
    assert ctx.outputs == {} and ctx.counters == {'invalid_frames_total': 2}


@pytest.mark.parametrize('env, reason', [
    ({}, 'DISPLAY and WAYLAND_DISPLAY are unset'),
    ({'DISPLAY': ':0'}, 'this OpenCV build has no GUI support'),
    ({'WAYLAND_DISPLAY': 'wayland-0'}, 'this OpenCV build has no GUI support'),
])
def test_headless_says_so_once_and_keeps_publishing(monkeypatch, caplog, env, reason):
    assert gui_backend(cv2.getBuildInformation()) is None  # the suite's OpenCV is the headless build
    with caplog.at_level(logging.INFO, logger='schnitzel_stream.display'):
        sink, ctx = make(monkeypatch, env)
        for _ in range(5):
            sink.process(frame_packet(np.zeros((40, 40, 3), dtype=np.uint8), meta={'detections': [BOX]}))
        sink.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"node 'display': no display ({reason}")
    assert 'publishing ~/image only' in lines[0]
    assert sink.window is None and ctx.counters == {'published_total': 5}


def test_a_window_that_fails_to_open_falls_back_to_publishing(monkeypatch, caplog):
    """The build information claims a GUI (stand-in); the real headless cv2.namedWindow then fails."""
    monkeypatch.setattr(cv2, 'getBuildInformation', lambda: GTK_BUILD_EXCERPT)
    with caplog.at_level(logging.INFO, logger='schnitzel_stream.display'):
        sink, ctx = make(monkeypatch, {'DISPLAY': ':0'})
        assert sink.window == 'Schnitzel Stream - YOLO'  # a window is wanted: display and "GUI" present
        for _ in range(3):
            sink.process(frame_packet(np.zeros((40, 40, 3), dtype=np.uint8)))
        sink.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith("node 'display': no display (the OpenCV window failed: ")
    assert lines[0].endswith('publishing ~/image only (view it with rqt_image_view or Foxglove)')
    assert sink.window is None and ctx.counters == {'published_total': 3}  # never shown, always published


def test_display_off_is_silent(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger='schnitzel_stream.display'):
        sink, ctx = make(monkeypatch, {'DISPLAY': ':0'}, display='off')
        sink.process(frame_packet(np.zeros((40, 40, 3), dtype=np.uint8)))
    assert caplog.records == [] and ctx.counters == {'published_total': 1}


def test_gui_builds_are_recognised():
    assert gui_backend(GTK_BUILD_EXCERPT) == 'GTK3'
    assert gui_backend('  GUI:                           NONE\n') is None
    assert gui_backend('no such section') is None
    assert window_unavailable({'DISPLAY': ':0'}, GTK_BUILD_EXCERPT) is None
    assert window_unavailable({}, GTK_BUILD_EXCERPT) == 'DISPLAY and WAYLAND_DISPLAY are unset'


def test_colour_is_checked_before_start(tmp_path):
    graph = tmp_path / 'g.yaml'
    graph.write_text(
        'nodes:\n'
        '  - {id: src, plugin: StaticSource, config: {kind: frame}}\n'
        '  - id: display\n'
        '    plugin: OpenCvBboxDisplaySink\n'
        '    config: {color_bgr: [0, 300, 0]}\n'
        'edges: [{from: src, to: display}]\n'
    )
    result = load_and_validate(graph, PluginRegistry(Allowlist()))
    assert [str(e) for e in result.errors] == [
        f"{graph}:5: node 'display': parameter 'color_bgr': expected [b, g, r] with integers 0..255, "
        'got [0, 300, 0]'
    ]
