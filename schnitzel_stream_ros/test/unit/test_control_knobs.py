"""Knobs: the tunables of the nodes that matter are dynamic parameters with bounds, and a change
applies to the next frame / claim without a restart. Each is changed here the way the runtime
changes it (PluginHost.apply_params, which `ros2 param set` and the controller end in), after the
same check a `ros2 param set` gets.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from schnitzel_stream_ros.nodes.compute.onnx_detector import OnnxDetectorNode
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
from schnitzel_stream_ros.nodes.vision.frame_knobs import FrameThrottle
from schnitzel_stream_ros.nodes.vision.rtsp import OpenCvRtspSource
from schnitzel_stream_ros.nodes.vision.webcam import OpenCvWebcamSource
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import ParamError, resolve_params
from schnitzel_stream_ros.runtime.plugin_host import PluginHost
from schnitzel_stream_ros.testing.assets import PHOTO_PERSON, asset, missing_reason


@pytest.mark.parametrize('source', [OpenCvRtspSource, OpenCvWebcamSource])
def test_live_cameras_have_rate_and_resolution_knobs(source):
    schema = source.param_schema()
    fps, scale = schema['fps'], schema['resolution_scale']
    assert fps.dynamic and scale.dynamic
    assert (fps.default, fps.min, fps.max) == (0.0, 0.0, 240.0)
    assert (scale.default, scale.min, scale.max) == (1.0, 0.05, 1.0)
    with pytest.raises(ParamError, match=r"'resolution_scale': 2\.0 is above the maximum 1\.0"):
        scale.check(2.0)


def test_frame_throttle_keeps_one_frame_per_period_of_read_time():
    throttle = FrameThrottle()
    reads = [i / 25 for i in range(50)]  # a 25 frames/s camera for 2 s
    kept = [t for t in reads if throttle.keep(t, 10.0)]
    assert len(kept) == 17  # every 0.12 s (3 frames of 0.04 s): 0, 0.12, ... 1.92
    assert kept[:4] == pytest.approx([0.0, 0.12, 0.24, 0.36])
    # a change applies to the next frame: 0 = every frame again
    assert all(throttle.keep(2.0 + i / 25, 0.0) for i in range(5))
    # a camera clock that went back (reconnect) restarts the schedule instead of stalling
    assert throttle.keep(0.5, 10.0)


def test_frame_throttle_shrinks_and_never_enlarges():
    frame = np.zeros((480, 640, 3), np.uint8)
    assert FrameThrottle.scale(frame, 0.5).shape == (240, 320, 3)
    assert FrameThrottle.scale(frame, 1.0) is frame


def test_detector_score_threshold_changes_live():
    path = asset(PHOTO_PERSON)
    if path is None:
        pytest.skip(missing_reason(PHOTO_PERSON))
    frame = cv2.imread(str(path))
    host = PluginHost('det', OnnxDetectorNode, resolve_params(OnnxDetectorNode, {}), is_source=False,
                      is_sink=False)
    seen = []
    host.connect('out', seen.append)
    host.setup()
    try:
        assert OnnxDetectorNode.param_schema()['conf'].dynamic

        def people() -> int:
            seen.clear()
            host.handle(StreamPacket.new(Kind.FRAME, 'cam', frame, meta={'frame_idx': 0}), 'in')
            return len([d for d in seen[0].payload if d['object_type'] == 'PERSON'])

        assert people() == 1  # the astronaut, scored >= 0.8
        host.apply_params({'conf': 0.999})
        assert people() == 0  # same instance, same session: only the threshold moved
        host.apply_params({'conf': None})
        assert people() == 1  # back to the decoder's default (0.5)
    finally:
        host.close()


def test_delivery_batch_size_changes_live(tmp_path):
    params = resolve_params(DurableForwarderSink, {
        'path': str(tmp_path / 'q.db'), 'url': 'http://127.0.0.1:9/events', 'batch_size': 128})
    host = PluginHost('deliver', DurableForwarderSink, params, is_source=False, is_sink=True)
    host.setup()
    try:
        assert DurableForwarderSink.param_schema()['batch_size'].dynamic
        forwarder = host.plugin.forwarder
        assert forwarder.config.batch_size == 128
        host.apply_params({'batch_size': 8})
        assert forwarder.config.batch_size == 8 and forwarder.config.concurrency == 4  # the rest stays
    finally:
        host.close()
