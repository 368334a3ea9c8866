"""Knobs: the tunables of the nodes that matter are dynamic parameters with bounds, and a change
applies to the next frame / claim without a restart. Each is changed here the way the runtime
changes it (PluginHost.apply_params, which `ros2 param set` and the controller end in), after the
same check a `ros2 param set` gets.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.nodes.compute.iou_tracker import IouTrackerNode
from schnitzel_stream_ros.nodes.compute.onnx_detector import OnnxDetectorNode
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
from schnitzel_stream_ros.nodes.policy.event_builder import ProtocolV02EventBuilderNode
from schnitzel_stream_ros.nodes.vision.frame_knobs import FrameThrottle
from schnitzel_stream_ros.nodes.vision.rtsp import OpenCvRtspSource
from schnitzel_stream_ros.nodes.vision.snapshot import DetectionSnapshotNode
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


def _wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.02)


def _host(plugin, node_id: str, config: dict, sink: bool = False) -> PluginHost:
    return PluginHost(node_id, plugin, resolve_params(plugin, config), is_source=False, is_sink=sink)


def test_detector_input_side_changes_live():
    path = asset(PHOTO_PERSON)
    if path is None:
        pytest.skip(missing_reason(PHOTO_PERSON))
    frame = cv2.imread(str(path))
    host = _host(OnnxDetectorNode, 'det', {})
    seen = []
    host.connect('out', seen.append)
    host.setup()
    try:
        schema = OnnxDetectorNode.param_schema()['input_side']
        assert schema.dynamic and (schema.min, schema.max) == (32, 2048)
        with pytest.raises(ParamError, match=r"'input_side': 4096 is above the maximum 2048"):
            schema.check(4096)

        def person_score() -> float:
            seen.clear()
            host.handle(StreamPacket.new(Kind.FRAME, 'cam', frame, meta={'frame_idx': 0}), 'in')
            people = [d['confidence'] for d in seen[0].payload if d['object_type'] == 'PERSON']
            return max(people, default=0.0)

        full = person_score()
        assert full >= 0.8  # at the model's 300 x 300
        host.apply_params({'input_side': 48})
        assert host.plugin.detector.size == (48, 48)
        coarse = person_score()
        assert coarse != full  # the same session scored a 48 x 48 picture: the next frame used the knob
        host.apply_params({'input_side': None})
        assert host.plugin.detector.size == (300, 300) and person_score() == full
    finally:
        host.close()


def _forwarder_workers(node_id: str) -> int:
    return sum(1 for t in threading.enumerate()
               if t.name.startswith(f'{node_id}-forwarder-') and t.is_alive())


def _event(i: int) -> StreamPacket:
    return StreamPacket.new(Kind.EVENT, 'cam0', {'i': i}, meta={'idempotency_key': f'k{i}'})


def test_delivery_concurrency_changes_live(tmp_path):
    backend = serve_in_thread()  # the reference backend on 127.0.0.1, a real HTTP server
    host = _host(DurableForwarderSink, 'deliver_knob', {
        'path': str(tmp_path / 'q.db'), 'url': backend.url + '/events', 'concurrency': 4}, sink=True)
    host.setup()
    try:
        assert DurableForwarderSink.param_schema()['concurrency'].dynamic
        _wait_until(lambda: _forwarder_workers('deliver_knob') == 4, '4 workers')
        host.apply_params({'concurrency': 1})
        _wait_until(lambda: _forwarder_workers('deliver_knob') == 1, 'the surplus workers to end')
        config = host.plugin.forwarder.config
        assert config.concurrency == 1 and config.batch_size == 128  # the rest stays
        for i in range(20):  # the one worker left delivers
            host.handle(_event(i), 'in')
        _wait_until(lambda: host.plugin.queue.depth() == 0, 'delivery with one worker')
        host.apply_params({'concurrency': 3})
        _wait_until(lambda: _forwarder_workers('deliver_knob') == 3, '3 workers')
        for i in range(20, 40):
            host.handle(_event(i), 'in')
        _wait_until(lambda: host.plugin.queue.depth() == 0, 'delivery with three workers')
        assert backend.stats()['unique'] == 40
    finally:
        host.close()
        backend.stop()
    assert _forwarder_workers('deliver_knob') == 0


def _frame_with_people() -> StreamPacket:
    frame = np.full((480, 640, 3), 90, np.uint8)
    cv2.rectangle(frame, (100, 100), (200, 400), (20, 200, 20), -1)
    detections = [{'bbox': {'x1': 100, 'y1': 100, 'x2': 200, 'y2': 400}, 'confidence': 0.9, 'class_id': 1,
                   'class_name': 'person', 'object_type': 'PERSON', 'event_type': 'ZONE_INTRUSION',
                   'severity': 'MEDIUM'}]
    return StreamPacket.new(Kind.FRAME, 'cam0', frame, meta={'frame_idx': 7, 'detections': detections})


def test_event_snapshots_switch_and_shrink_live_and_reach_the_event(tmp_path):
    snap = _host(DetectionSnapshotNode, 'snap', {'directory': str(tmp_path / 'snaps'), 'max_side': 320,
                                                 'max_files': 3})
    tracker = _host(IouTrackerNode, 'trk', {})
    events = _host(ProtocolV02EventBuilderNode, 'events', {'site_id': 'S001'})
    out = []
    snap.connect('out', lambda p: tracker.handle(p, 'in'))
    tracker.connect('out', lambda p: events.handle(p, 'in'))
    events.connect('out', out.append)
    for host in (snap, tracker, events):
        host.setup()
    try:
        schema = DetectionSnapshotNode.param_schema()
        assert all(schema[name].dynamic for name in ('snapshot', 'max_side', 'quality'))
        snap.handle(_frame_with_people(), 'in')
        path = Path(out[-1].payload['snapshot_path'])  # the event carries the snapshot's path
        picture = cv2.imread(str(path))
        assert picture.shape[:2] == (240, 320)  # longest side 320, aspect kept
        big = path.stat().st_size

        snap.apply_params({'max_side': 64, 'quality': 30})  # low-bandwidth: smaller snapshots
        snap.handle(_frame_with_people(), 'in')
        small = Path(out[-1].payload['snapshot_path'])
        assert cv2.imread(str(small)).shape[:2] == (48, 64) and small.stat().st_size < big

        snap.apply_params({'snapshot': False})  # off: the event goes on without one
        snap.handle(_frame_with_people(), 'in')
        assert out[-1].payload['snapshot_path'] is None and len(list((tmp_path / 'snaps').iterdir())) == 2

        snap.apply_params({'snapshot': True})
        for _ in range(3):
            snap.handle(_frame_with_people(), 'in')
        files = sorted((tmp_path / 'snaps').iterdir())
        assert len(files) == 3 and not path.exists()  # bounded: the oldest ones were deleted
        assert snap.metrics.counters['snapshots_evicted_total'] == 2
    finally:
        for host in (snap, tracker, events):
            host.close()
