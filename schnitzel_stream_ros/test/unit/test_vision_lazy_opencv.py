"""A vision container that waits for frames does not map OpenCV (~24 MB of libraries): the detector,
its decoders, the tracker and the image sinks import cv2 on first use (bench/README.md, idle vision
container). Checked in a fresh interpreter, with the bundled model's session really created; the
first frame then brings OpenCV in and is processed as before (test_vision_detector.py checks what
it finds)."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = '''
import sys
import numpy as np
from schnitzel_stream_ros.nodes.compute.onnx_detector import OnnxDetectorNode
from schnitzel_stream_ros.nodes.compute.iou_tracker import IouTrackerNode
from schnitzel_stream_ros.nodes.sinks.annotated_image import AnnotatedImageSink
from schnitzel_stream_ros.nodes.sinks.overlay import draw
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

ctx = SimpleContext('det', resolve_params(OnnxDetectorNode, {'intra_op_threads': 1}))
node = OnnxDetectorNode(ctx)
node.setup()
print('after setup', 'cv2' in sys.modules)
node.process(StreamPacket.new(Kind.FRAME, 'cam', np.zeros((240, 320), np.uint8), meta={'frame_idx': 0}))
print('after a frame', 'cv2' in sys.modules, type(ctx.outputs['out'][0].payload).__name__)
'''


def test_opencv_is_imported_by_the_first_frame_not_before():
    done = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['after setup False', 'after a frame True list']
