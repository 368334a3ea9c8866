"""The bundled person detector, for real: photos with and without a person, and pedestrian footage.

Real model (models/person_ssdlite_mobilenetv2.onnx), real onnxruntime, real media from Debian's
opencv-doc and the scikit-image wheel (scripts/fetch-test-assets). Every frame of the pedestrian
clip shows people walking (checked by eye on the first and last of the frames used).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory

from schnitzel_stream_ros.nodes.compute.decoders import decode_ssd, ssd_outputs
from schnitzel_stream_ros.nodes.compute.models import BUNDLED_PERSON_MODEL, resolve_model
from schnitzel_stream_ros.nodes.compute.onnx_detector import OnnxDetectorNode
from schnitzel_stream_ros.nodes.vision.video_file import OpenCvVideoFileSource
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params
from schnitzel_stream_ros.testing.assets import (
    PEDESTRIAN_CLIP,
    PHOTO_NO_PERSON,
    PHOTO_PERSON,
    asset,
    missing_reason,
)

FIRST_FRAMES = 100


def media(name: str):
    path = asset(name)
    if path is None:
        pytest.skip(missing_reason(name))
    return path


@pytest.fixture(scope='module')
def detector():
    ctx = SimpleContext('det', resolve_params(OnnxDetectorNode, {}))
    node = OnnxDetectorNode(ctx)
    node.setup()
    return node, ctx


def detect(node_ctx, frame):
    node, ctx = node_ctx
    ctx.outputs.clear()
    node.process(StreamPacket.new(Kind.FRAME, 'cam', frame, meta={'frame_idx': 0}))
    return ctx.outputs['out'][0]


def test_the_bundled_model_is_found_without_a_path():
    path = resolve_model(None, 'test')
    assert path.name == BUNDLED_PERSON_MODEL
    assert path.stat().st_size > 10_000_000


def test_the_bundled_model_and_its_note_are_installed_to_share():
    models = Path(get_package_share_directory('schnitzel_stream_ros')) / 'models'
    assert (models / BUNDLED_PERSON_MODEL).is_file()
    assert 'MIT' in (models / 'README.md').read_text()


def test_person_found_in_the_astronaut_photo(detector):
    frame = cv2.imread(str(media(PHOTO_PERSON)))
    packet = detect(detector, frame)
    people = [d for d in packet.payload if d['object_type'] == 'PERSON']
    assert len(people) == 1
    person = people[0]
    assert person['confidence'] >= 0.8
    assert person['event_type'] == 'ZONE_INTRUSION' and person['severity'] == 'MEDIUM'
    box = person['bbox']
    # the astronaut fills the left two thirds of the 512 x 512 photo, top to bottom
    assert box['x1'] < 60 and 300 < box['x2'] < 420 and box['y1'] < 80 and box['y2'] > 450
    assert packet.meta['frame_width'] == 512 and packet.meta['frame_height'] == 512


def test_no_person_in_the_coffee_photo(detector):
    frame = cv2.imread(str(media(PHOTO_NO_PERSON)))
    packet = detect(detector, frame)
    assert packet.payload == []
    assert packet.meta['detection_count'] == 0


def test_people_found_in_at_least_90_percent_of_pedestrian_frames(detector):
    """Video source -> detector plugin, in process, on the first 100 frames of the clip."""
    node, ctx = detector
    source_ctx = SimpleContext('cam1', resolve_params(OpenCvVideoFileSource, {
        'path': str(media(PEDESTRIAN_CLIP)), 'max_frames': FIRST_FRAMES, 'start_ts': '2026-01-01T00:00:00Z',
    }))
    source = OpenCvVideoFileSource(source_ctx)
    source.setup()
    ctx.outputs.clear()
    for frame_packet in source.produce():
        node.process(frame_packet)
    source.close()
    detections = ctx.outputs['out']
    assert len(detections) == FIRST_FRAMES
    with_people = sum(1 for p in detections if any(d['object_type'] == 'PERSON' for d in p.payload))
    assert with_people >= 0.9 * FIRST_FRAMES
    # boxes are inside the 768 x 576 frame and carry the frame's position
    for p in detections:
        for d in p.payload:
            b = d['bbox']
            assert 0 <= b['x1'] < b['x2'] <= 768 and 0 <= b['y1'] < b['y2'] <= 576
    assert [p.meta['frame_idx'] for p in detections] == list(range(FIRST_FRAMES))
    assert detections[3].meta['idempotency_key'] == 'frame:cam1:3:detections'
    assert detections[3].ts == '2026-01-01T00:00:00.300000Z'


def test_gray_and_bgra_frames_are_accepted(detector):
    frame = cv2.imread(str(media(PHOTO_PERSON)))
    gray = detect(detector, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)).payload
    bgra = detect(detector, cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)).payload
    assert len(gray) == 1 and len(bgra) == 1


def test_a_packet_without_an_image_is_refused_with_the_node_named(detector):
    node, _ = detector
    with pytest.raises(TypeError, match=r"node 'det': packet .* has no image payload \(got dict\)"):
        node.process(StreamPacket.new(Kind.FRAME, 'cam', {'frame': None, 'frame_idx': 1}))


def test_ssd_decoding_is_exact_on_planted_outputs():
    names = ['num_detections:0', 'detection_boxes:0', 'detection_scores:0', 'detection_classes:0']
    roles = ssd_outputs(names)
    outputs = {
        'num_detections:0': np.array([2.0], np.float32),
        'detection_boxes:0': np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.2, 0.5], [0.3, 0.3, 0.4, 0.4]]],
                                      np.float32),
        'detection_scores:0': np.array([[0.9, 0.6, 0.95]], np.float32),  # the third is past num_detections
        'detection_classes:0': np.array([[1.0, 3.0, 1.0]], np.float32),
    }
    raw = decode_ssd(outputs, roles, frame_w=200, frame_h=100, conf=0.5)
    assert [(round(r.x1), round(r.y1), round(r.x2), round(r.y2), r.class_id) for r in raw] == [
        (40, 10, 120, 50, 1),
        (0, 0, 100, 100, 3),  # ymax 1.2 clipped to the frame
    ]
    assert decode_ssd(outputs, roles, 200, 100, conf=0.7)[0].score == pytest.approx(0.9)
    with pytest.raises(ValueError, match=r"decoder 'ssd': model outputs .* lack \['boxes'\]"):
        ssd_outputs(['scores', 'classes'])


def test_two_detectors_of_one_model_share_one_session_and_free_it():
    """Two cameras, one model in memory; the session goes with its last detector."""
    import gc

    from schnitzel_stream_ros.nodes.compute import detector as detector_module
    from schnitzel_stream_ros.nodes.compute.models import resolve_model

    model = resolve_model(None, 'test')
    first = detector_module.shared_session(model, 1, ('CPUExecutionProvider',))
    second = detector_module.shared_session(model, 1, ('CPUExecutionProvider',))
    other_threads = detector_module.shared_session(model, 2, ('CPUExecutionProvider',))
    assert first is second
    assert other_threads is not first
    key = (str(model.resolve()), 1, ('CPUExecutionProvider',))
    assert key in detector_module._SESSIONS
    del first, second
    gc.collect()
    assert key not in detector_module._SESSIONS
