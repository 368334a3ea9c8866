"""ament_python package of schnitzel_stream_ros.

launch/, config/ and models/ go to share/schnitzel_stream_ros so `ros2 launch` finds them; console
scripts go to lib/schnitzel_stream_ros (setup.cfg) so `ros2 run` and launch_ros find them.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'schnitzel_stream_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', sorted(glob('launch/*.py'))),
        (f'share/{PACKAGE}/config', sorted(glob('config/*.yaml'))),
        # the bundled person detector and its provenance note (nodes/compute/models.py finds them here)
        (f'share/{PACKAGE}/models', [*sorted(glob('models/*.onnx')), 'models/README.md']),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest']},
    zip_safe=True,
    maintainer='schnitzel_stream maintainers',
    maintainer_email='maintainers@schnitzel-stream.org',
    description='StreamPacket graphs of composable plugin nodes on ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'schnitzel-stream = schnitzel_stream_ros.cli:main',
            # the component container (launch_ros ComposableNodeContainer, `ros2 run`, the runner)
            'component_container = schnitzel_stream_ros.runtime.container_main:main',
            # opens a launched graph's start gate once every node is loaded and wired
            'start_gate = schnitzel_stream_ros.runtime.start_gate_main:main',
            'pingpong = schnitzel_stream_ros.demo.pingpong:main',
            # a simulated robot: drives a path, drains a battery (robot lane tests and demo)
            'sim_robot = schnitzel_stream_ros.demo.sim_robot:main',
        ],
        # Graph plugins by name (graph files, the upstream alias table and `schnitzel-stream plugins`).
        'schnitzel_stream_ros.plugins': [
            'StaticSource = schnitzel_stream_ros.nodes.core.static_source:StaticSource',
            'Identity = schnitzel_stream_ros.nodes.core.identity:Identity',
            'BurstNode = schnitzel_stream_ros.nodes.core.burst:BurstNode',
            'PrintSink = schnitzel_stream_ros.nodes.core.print_sink:PrintSink',
            'JsonlSink = schnitzel_stream_ros.nodes.core.jsonl_sink:JsonlSink',
            'JsonFileSink = schnitzel_stream_ros.nodes.core.json_file_sink:JsonFileSink',
            'BytesToFileRefNode = schnitzel_stream_ros.nodes.core.blob_ref:BytesToFileRefNode',
            'FileRefToBytesNode = schnitzel_stream_ros.nodes.core.blob_ref:FileRefToBytesNode',
            'EveryNthFrameSamplerNode = '
            'schnitzel_stream_ros.nodes.core.every_nth_sampler:EveryNthFrameSamplerNode',
            'SyntheticSource = schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource',
            # vision sources and models
            'OpenCvVideoFileSource = schnitzel_stream_ros.nodes.vision.video_file:OpenCvVideoFileSource',
            'OpenCvRtspSource = schnitzel_stream_ros.nodes.vision.rtsp:OpenCvRtspSource',
            'OpenCvWebcamSource = schnitzel_stream_ros.nodes.vision.webcam:OpenCvWebcamSource',
            'MockDetectorNode = schnitzel_stream_ros.nodes.compute.mock_detector:MockDetectorNode',
            'YoloV8DetectorNode = schnitzel_stream_ros.nodes.compute.onnx_detector:YoloV8DetectorNode',
            'OnnxDetectorNode = schnitzel_stream_ros.nodes.compute.onnx_detector:OnnxDetectorNode',
            'IouTrackerNode = schnitzel_stream_ros.nodes.compute.iou_tracker:IouTrackerNode',
            # policy, events, fusion
            'ZonePolicyNode = schnitzel_stream_ros.nodes.policy.zone_policy:ZonePolicyNode',
            'DedupPolicyNode = schnitzel_stream_ros.nodes.policy.dedup:DedupPolicyNode',
            'ProtocolV02EventBuilderNode = '
            'schnitzel_stream_ros.nodes.policy.event_builder:ProtocolV02EventBuilderNode',
            'EventRouterNode = schnitzel_stream_ros.nodes.policy.event_router:EventRouterNode',
            'SensorFusionNode = schnitzel_stream_ros.nodes.fusion.sensor_fusion:SensorFusionNode',
            # sensors
            'SerialLineSensorSource = schnitzel_stream_ros.nodes.sensors.serial_line:SerialLineSensorSource',
            'SimulatedSensorSource = schnitzel_stream_ros.nodes.sensors.simulated:SimulatedSensorSource',
            'RosSensorTopicSource = schnitzel_stream_ros.nodes.sensors.ros_topic:RosSensorTopicSource',
            'RosImageTopicSource = schnitzel_stream_ros.nodes.sensors.ros_image:RosImageTopicSource',
            'RosEventTopicSource = schnitzel_stream_ros.nodes.sensors.ros_event_topic:RosEventTopicSource',
            # robot telemetry policies (readings -> detections for the event builder)
            'GeofencePolicyNode = schnitzel_stream_ros.nodes.robot.geofence:GeofencePolicyNode',
            'BatteryPolicyNode = schnitzel_stream_ros.nodes.robot.battery:BatteryPolicyNode',
            'StallPolicyNode = schnitzel_stream_ros.nodes.robot.stall:StallPolicyNode',
            'DiagnosticsPolicyNode = schnitzel_stream_ros.nodes.robot.diagnostics:DiagnosticsPolicyNode',
            # audio lane: sources, resampling, loudness, voice activity, LOUD_NOISE / VOICE policy
            'AudioFileSource = schnitzel_stream_ros.nodes.audio.file_source:AudioFileSource',
            'AudioCaptureSource = schnitzel_stream_ros.nodes.audio.capture_source:AudioCaptureSource',
            'AudioResampleNode = schnitzel_stream_ros.nodes.audio.resample:AudioResampleNode',
            'AudioLoudnessNode = schnitzel_stream_ros.nodes.audio.loudness:AudioLoudnessNode',
            'VoiceActivityNode = schnitzel_stream_ros.nodes.audio.voice_activity:VoiceActivityNode',
            'AudioEventPolicyNode = schnitzel_stream_ros.nodes.audio.event_policy:AudioEventPolicyNode',
            # sinks to ROS topics
            'RobotEventSink = schnitzel_stream_ros.nodes.sinks.robot_event:RobotEventSink',
            'AnnotatedImageSink = schnitzel_stream_ros.nodes.sinks.annotated_image:AnnotatedImageSink',
            # delivery (issue 6): durable queue nodes, HTTP sinks
            'SqliteQueueSink = schnitzel_stream_ros.nodes.delivery.sqlite_queue_sink:SqliteQueueSink',
            'SqliteQueueSource = schnitzel_stream_ros.nodes.delivery.sqlite_queue_source:SqliteQueueSource',
            'SqliteQueueAckSink = '
            'schnitzel_stream_ros.nodes.delivery.sqlite_queue_ack_sink:SqliteQueueAckSink',
            'HttpJsonSink = schnitzel_stream_ros.nodes.delivery.http_json_sink:HttpJsonSink',
            'DurableForwarderSink = '
            'schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink:DurableForwarderSink',
        ],
    },
)
