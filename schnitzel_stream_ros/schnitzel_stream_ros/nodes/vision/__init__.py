"""Vision sources and frame nodes (upstream `schnitzel_stream.packs.vision.nodes`, OpenCV based).

Modules: frames (the frame packet layout), video_file (OpenCvVideoFileSource), live_capture (reader
thread, reconnect, stall watchdog), live_source (shared live-camera plugin base), rtsp
(OpenCvRtspSource), webcam (OpenCvWebcamSource). The frame sampler (EveryNthFrameSamplerNode)
lives with the core nodes. See docs/vision.md.
"""
