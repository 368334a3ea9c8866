"""Compute nodes: the ONNX detector (SSD / YOLOv8 decoders), the mock detector, the IoU tracker.

Modules: taxonomy (class -> event type and severity), models (the bundled person detector),
onnx_session (onnxruntime session options), decoders (pre/post-processing, NMS), onnx_detector
(OnnxDetectorNode, YoloV8DetectorNode), mock_detector (MockDetectorNode), iou_tracker
(IouTrackerNode). See docs/vision.md.
"""
