"""ament_python package of schnitzel_stream_ros.

launch/, config/ and models/ go to share/schnitzel_stream_ros so `ros2 launch` finds them; console
scripts go to lib/schnitzel_stream_ros (setup.cfg) so `ros2 run` and launch_ros find them; their
shebang is the interpreter that ran this file (scripts/bootstrap runs colcon with the suite's own).
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'schnitzel_stream_ros'

# Graph plugins by name (graph files, the upstream alias table and `schnitzel-stream plugins`).
PLUGINS = [
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
    'McapReplaySource = schnitzel_stream_ros.nodes.core.mcap_replay:McapReplaySource',
    # control loops (issue 13): cycle breakers, the camera rate gate, PID, a simulated plant, the controller
    'Delay = schnitzel_stream_ros.nodes.control.delay:Delay',
    'InitialValue = schnitzel_stream_ros.nodes.control.initial_value:InitialValue',
    'RateGate = schnitzel_stream_ros.nodes.control.rate_gate:RateGate',
    'PidController = schnitzel_stream_ros.nodes.control.pid:PidController',
    'SimulatedLoadNode = schnitzel_stream_ros.nodes.control.simulated_load:SimulatedLoadNode',
    'AutonomicController = schnitzel_stream_ros.nodes.control.autonomic_controller:AutonomicController',
    'LatencyProbe = schnitzel_stream_ros.nodes.control.latency_probe:LatencyProbe',
    'HostCpuSource = schnitzel_stream_ros.nodes.control.host_cpu:HostCpuSource',
    'DetectionSnapshotNode = schnitzel_stream_ros.nodes.vision.snapshot:DetectionSnapshotNode',
    # vision sources and models
    'OpenCvVideoFileSource = schnitzel_stream_ros.nodes.vision.video_file:OpenCvVideoFileSource',
    'OpenCvRtspSource = schnitzel_stream_ros.nodes.vision.rtsp:OpenCvRtspSource',
    'FrameCompressNode = schnitzel_stream_ros.nodes.vision.compress:FrameCompressNode',
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
    # state: windows and aggregates on event time
    'WindowAggregateNode = schnitzel_stream_ros.nodes.windows.window_aggregate:WindowAggregateNode',
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
    'SyntheticRiskEventSource = schnitzel_stream_ros.nodes.experiments.risk_source:SyntheticRiskEventSource',
    'SlowScoringNode = schnitzel_stream_ros.nodes.experiments.slow_scoring:SlowScoringNode',
    'BackpressureMetricsSink = schnitzel_stream_ros.nodes.experiments.metrics_sink:BackpressureMetricsSink',
    'PersonFollowCmdVelNode = schnitzel_stream_ros.nodes.robot.person_follow:PersonFollowCmdVelNode',
    'Ros2CmdVelSink = schnitzel_stream_ros.nodes.robot.cmd_vel_sink:Ros2CmdVelSink',
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
    'OpenCvBboxDisplaySink = schnitzel_stream_ros.nodes.sinks.bbox_display:OpenCvBboxDisplaySink',
    # delivery (issue 6): durable queue nodes, HTTP sinks
    'SqliteQueueSink = schnitzel_stream_ros.nodes.delivery.sqlite_queue_sink:SqliteQueueSink',
    'SqliteQueueSource = schnitzel_stream_ros.nodes.delivery.sqlite_queue_source:SqliteQueueSource',
    'SqliteQueueAckSink = '
    'schnitzel_stream_ros.nodes.delivery.sqlite_queue_ack_sink:SqliteQueueAckSink',
    'HttpJsonSink = schnitzel_stream_ros.nodes.delivery.http_json_sink:HttpJsonSink',
    'DurableForwarderSink = '
    'schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink:DurableForwarderSink',
    'DurableEdgeSender = schnitzel_stream_ros.nodes.delivery.durable_edge_sender:DurableEdgeSender',
    'DurableEdgeReceiver = schnitzel_stream_ros.nodes.delivery.durable_edge_receiver:DurableEdgeReceiver',
    'FrameLinkSender = schnitzel_stream_ros.nodes.vision.frame_link:FrameLinkSender',
    'FrameLinkReceiver = schnitzel_stream_ros.nodes.vision.frame_link:FrameLinkReceiver',
]


def write_component_types(path: str) -> None:
    """`ros2 component types` reads the ament resource `rclcpp_components` (lines `TypeName;library`).
    Written from PLUGINS at every build, so the list can never drift from the entry points; the names
    are the canonical `module:Class` that `ros2 component load` and launch files give our container."""
    refs = sorted(entry.split('=', 1)[1].strip() for entry in PLUGINS)
    text = ''.join(f"{ref};{ref.split(':', 1)[0]}\n" for ref in refs)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    current = None
    if os.path.exists(path):
        with open(path) as existing:
            current = existing.read()
    if current != text:
        with open(path, 'w') as out:
            out.write(text)


write_component_types(f'resource/rclcpp_components/{PACKAGE}')

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    # the operator page (control/static): served by the runner from the installed package;
    # the Fast DDS profile the containers start with (runtime/fastdds_profile.py)
    package_data={'schnitzel_stream_ros.control': ['static/*'], 'schnitzel_stream_ros.runtime': ['*.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        # `ros2 component types` reads this resource (lines `TypeName;library`): our plugins, named as
        # `ros2 component load` and launch files name them for our container (canonical module:Class)
        ('share/ament_index/resource_index/rclcpp_components', [f'resource/rclcpp_components/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', sorted(glob('launch/*.py'))),
        (f'share/{PACKAGE}/config', sorted(glob('config/*.yaml'))),
        (f'share/{PACKAGE}/config/examples', sorted(glob('config/examples/*.yaml'))),
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
            # the same, named as rclcpp_components' multi-threaded and isolated containers
            'component_container_mt = schnitzel_stream_ros.runtime.container_main:main_mt',
            'component_container_isolated = schnitzel_stream_ros.runtime.container_main:main_isolated',
            # opens a launched graph's start gate once every node is loaded and wired
            'start_gate = schnitzel_stream_ros.runtime.start_gate_main:main',
            # brings a graph of unconfigured managed nodes up in dependency order (lifecycle)
            'lifecycle_manager = schnitzel_stream_ros.runtime.lifecycle_manager_main:main',
            'pingpong = schnitzel_stream_ros.demo.pingpong:main',
            # a simulated robot: drives a path, drains a battery (robot lane tests and demo)
            'sim_robot = schnitzel_stream_ros.demo.sim_robot:main',
            # the control plane (HTTP API + operator page) beside a launched graph (control/standalone.py)
            'control_plane = schnitzel_stream_ros.control.standalone:main',
        ],
        'schnitzel_stream_ros.plugins': PLUGINS,
    },
)
