"""YOLOv8-format decoding and NMS, exact, on a golden ONNX graph built here.

No PyPI wheel ships trained YOLO weights, so the fixture builds a tiny ONNX graph (onnx helper API)
that takes a real `images` input and always outputs planted candidates in the `[1, 84, N]`
layout. It runs through real onnxruntime inside the real YoloV8DetectorNode; the expected boxes
are worked out by hand below, including the letterbox mapping for a non-square frame.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from schnitzel_stream_ros.nodes.compute.decoders import Letterbox, decode_yolo, letterbox, nms
from schnitzel_stream_ros.nodes.compute.onnx_detector import OnnxDetectorNode, YoloV8DetectorNode
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

# (cx, cy, w, h, {class: score}) in 640 x 640 model-input pixels
CANDIDATES = [
    (100, 200, 40, 80, {0: 0.9}),            # A: kept
    (104, 204, 40, 80, {0: 0.8}),            # B: IoU 0.747 with A, same class -> suppressed
    (100, 200, 40, 80, {2: 0.7}),            # C: same box as A, other class -> kept (class-aware NMS)
    (400, 320, 60, 120, {0: 0.6}),           # D: kept
    (500, 100, 20, 20, {0: 0.2}),            # E: below conf 0.25 -> dropped
    (300, 500, 50, 50, {5: 0.5, 7: 0.55}),   # F: best class 7 -> kept as class 7
    (420, 330, 60, 120, {0: 0.3}),           # G: IoU 0.44 with D -> kept at iou 0.45, dropped at 0.40
]
#: candidate slots in the output; the rest score 0. Real exports have thousands (8400 at 640), and
#: the decoder tells [1, 84, N] from [1, N, 84] by N being the larger dimension.
SLOTS = 100
CLASS_MAP = {
    0: 'PERSON', 2: 'FORKLIFT', 7: {'object_type': 'TRUCK', 'event_type': 'VEHICLE_SEEN', 'severity': 'LOW'},
}


def planted_output() -> np.ndarray:
    out = np.zeros((1, 84, SLOTS), dtype=np.float32)
    for n, (cx, cy, w, h, scores) in enumerate(CANDIDATES):
        out[0, 0:4, n] = (cx, cy, w, h)
        for cls, score in scores.items():
            out[0, 4 + cls, n] = score
    return out


@pytest.fixture(scope='module')
def golden_model(tmp_path_factory):
    """images [1,3,640,640] -> output0 = planted + 0 * mean(images) (the input is really consumed)."""
    planted = numpy_helper.from_array(planted_output(), 'p')
    zero = numpy_helper.from_array(np.zeros((), np.float32), 'z')
    nodes = [
        helper.make_node('Constant', [], ['planted'], value=planted),
        helper.make_node('Constant', [], ['zero'], value=zero),
        helper.make_node('ReduceMean', ['images'], ['mean'], keepdims=0),
        helper.make_node('Mul', ['mean', 'zero'], ['nothing']),
        helper.make_node('Add', ['planted', 'nothing'], ['output0']),
    ]
    graph = helper.make_graph(
        nodes, 'golden_yolo',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info('output0', TensorProto.FLOAT, [1, 84, SLOTS])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)], producer_name='test')
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp('models') / 'golden_yolo.onnx'
    onnx.save(model, str(path))
    return path


def run_detector(cls, model, frame, **config):
    params = resolve_params(cls, {'model_path': str(model), 'class_map': CLASS_MAP, **config})
    ctx = SimpleContext('yolo', params)
    node = cls(ctx)
    node.setup()
    node.process(StreamPacket.new(Kind.FRAME, 'cam1', frame, meta={'frame_idx': 7, 'epoch': 2}))
    return ctx


def boxes(dets):
    return [(d['class_id'], tuple(d['bbox'][k] for k in ('x1', 'y1', 'x2', 'y2')), d['confidence'])
            for d in dets]


def test_square_frame_exact_boxes_after_nms(golden_model):
    ctx = run_detector(YoloV8DetectorNode, golden_model, np.zeros((640, 640, 3), np.uint8))
    dets = ctx.outputs['detections'][0].payload
    assert boxes(dets) == [
        (0, (80, 160, 120, 240), 0.9),     # A
        (2, (80, 160, 120, 240), 0.7),     # C
        (0, (370, 260, 430, 380), 0.6),    # D
        (7, (275, 475, 325, 525), 0.55),   # F
        (0, (390, 270, 450, 390), 0.3),    # G
    ]
    assert [d['object_type'] for d in dets] == ['PERSON', 'FORKLIFT', 'PERSON', 'TRUCK', 'PERSON']
    assert dets[0]['event_type'] == 'ZONE_INTRUSION' and dets[0]['severity'] == 'MEDIUM'
    assert dets[3]['event_type'] == 'VEHICLE_SEEN' and dets[3]['severity'] == 'LOW'
    assert ctx.counters['detected_total'] == 5


def test_letterboxed_frame_maps_boxes_back_to_frame_pixels(golden_model):
    # 1280 x 640 -> scale 0.5, content 640 x 320 at y offset 160: frame = (input - pad) / 0.5
    ctx = run_detector(YoloV8DetectorNode, golden_model, np.zeros((640, 1280, 3), np.uint8))
    dets = ctx.outputs['detections'][0].payload
    assert boxes(dets) == [
        (0, (160, 0, 240, 160), 0.9),
        (2, (160, 0, 240, 160), 0.7),
        (0, (740, 200, 860, 440), 0.6),
        (7, (550, 630, 650, 640), 0.55),   # y2 730 clipped to the frame
        (0, (780, 220, 900, 460), 0.3),
    ]
    meta = ctx.outputs['detections'][0].meta
    assert (meta['frame_width'], meta['frame_height']) == (1280, 640)


def test_iou_threshold_and_max_det_and_conf(golden_model):
    frame = np.zeros((640, 640, 3), np.uint8)
    tight = run_detector(YoloV8DetectorNode, golden_model, frame, iou=0.4).outputs['detections'][0].payload
    assert [d['bbox']['x1'] for d in tight] == [80, 80, 370, 275]  # G now suppressed by D
    top2 = run_detector(YoloV8DetectorNode, golden_model, frame, max_det=2).outputs['detections'][0].payload
    assert boxes(top2) == boxes(tight)[:2]
    strict = run_detector(YoloV8DetectorNode, golden_model, frame, conf=0.65).outputs['detections'][0].payload
    assert [d['confidence'] for d in strict] == [0.9, 0.7]
    low = run_detector(YoloV8DetectorNode, golden_model, frame, conf=0.1).outputs['detections'][0].payload
    assert 0.2 in [d['confidence'] for d in low]  # E appears once the threshold is below it


def test_unmapped_and_filtered_classes_are_dropped_and_counted(golden_model):
    frame = np.zeros((640, 640, 3), np.uint8)
    ctx = run_detector(YoloV8DetectorNode, golden_model, frame, class_map={0: 'PERSON'})
    assert {d['class_id'] for d in ctx.outputs['detections'][0].payload} == {0}
    assert ctx.counters['unmapped_total'] == 2  # C (class 2) and F (class 7)
    only2 = run_detector(YoloV8DetectorNode, golden_model, frame, classes=[2]).outputs['detections'][0]
    only2 = only2.payload
    assert [d['class_id'] for d in only2] == [2]


def test_yolo_node_keeps_upstream_ports_and_ours_swaps_them(golden_model):
    frame = np.zeros((640, 640, 3), np.uint8)
    yolo = run_detector(YoloV8DetectorNode, golden_model, frame)
    assert yolo.outputs['out'][0].kind == Kind.FRAME  # upstream: detector -> display stays valid
    assert yolo.outputs['detections'][0].kind == Kind.DETECTION
    ours = run_detector(OnnxDetectorNode, golden_model, frame, decoder='yolov8')
    detection, annotated = ours.outputs['out'][0], ours.outputs['frames'][0]
    assert detection.kind == Kind.DETECTION and annotated.kind == Kind.FRAME
    assert annotated.meta['detections'] == detection.payload
    assert annotated.payload is not None and annotated.meta['frame_idx'] == 7
    assert detection.meta['source_packet_id'] == annotated.packet_id
    assert (detection.meta['frame_idx'], detection.meta['epoch']) == (7, 2)


def test_transposed_output_layout_decodes_the_same():
    planted = planted_output()
    box = Letterbox(1.0, 0.0, 0.0)
    normal = decode_yolo(planted, box, 640, 640, conf=0.25, iou=0.45, max_det=100)
    transposed = decode_yolo(planted.transpose(0, 2, 1), box, 640, 640, conf=0.25, iou=0.45, max_det=100)
    assert normal == transposed and len(normal) == 5


def test_bad_output_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"decoder 'yolov8': expected an output of shape \[1, 4 \+ classes"):
        decode_yolo(np.zeros((1, 3), np.float32), Letterbox(1.0, 0.0, 0.0), 10, 10,
                    conf=0.1, iou=0.5, max_det=5)


def test_nms_greedy_keeps_best_of_overlapping_boxes():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float32)
    s = np.array([0.5, 0.9, 0.3, 0.5], dtype=np.float32)
    assert nms(b, s, 0.5) == [1, 2]  # 1 beats 0 and 3 (IoU 0.68); 2 is alone
    assert nms(b, s, 0.99) == [1, 0, 2]  # only the exact duplicate (IoU 1) of box 0 goes


def test_letterbox_geometry():
    canvas, box = letterbox(np.full((100, 200, 3), 7, np.uint8), (64, 64))
    assert canvas.shape == (64, 64, 3)
    assert box == Letterbox(0.32, 0.0, 16.0)
    assert canvas[0, 0, 0] == 114 and canvas[32, 32, 0] == 7


def test_model_errors_name_the_parameter(tmp_path, golden_model):
    def setup(**config):
        OnnxDetectorNode(SimpleContext('det', resolve_params(OnnxDetectorNode, config))).setup()

    with pytest.raises(ValueError, match=r"node 'det': parameter 'model_path': model file not found: nope"):
        setup(model_path='nope.onnx')
    pt = tmp_path / 'yolov8n.pt'
    pt.write_bytes(b'torch')
    with pytest.raises(ValueError, match=r'is not an \.onnx model \(export it first'):
        setup(model_path=str(pt), decoder='yolov8')
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'not a model')
    with pytest.raises(ValueError, match=r"parameter 'model_path': onnxruntime cannot load"):
        setup(model_path=str(junk))
    with pytest.raises(ValueError, match=r"parameter 'model_path' is required for decoder 'yolov8'"):
        setup(decoder='yolov8')
    with pytest.raises(ValueError, match=r"parameter 'class_map'\[3\]: object type 'UNICORN' is not in"):
        setup(model_path=str(golden_model), decoder='yolov8', class_map={3: 'unicorn'})
    with pytest.raises(ValueError, match=r"parameter 'input_size': expected \[width, height\]"):
        setup(model_path=str(golden_model), decoder='yolov8', input_size=[640, 'x'])
    with pytest.raises(ValueError, match=r'none of the execution providers'):
        setup(model_path=str(golden_model), decoder='yolov8', providers=['NoSuchExecutionProvider'])
