"""Upstream plugin paths (schnitzel-stream-platform) -> our registered plugin names.

Graph files written for the upstream platform name classes like
`schnitzel_stream.nodes.dev:StaticSource`. Each maps to the entry-point name under which our
equivalent (same config keys) is registered, so the table does not care which module of this
suite implements it. An alias whose plugin is not registered yet is reported as "not available in
this version" — never silently replaced.
"""
from __future__ import annotations

UPSTREAM_PACKAGE = 'schnitzel_stream'

_UPSTREAM_CLASSES: dict[str, tuple[str, ...]] = {
    'schnitzel_stream.nodes.dev': ('StaticSource', 'Identity', 'BurstNode', 'PrintSink'),
    'schnitzel_stream.nodes.file_sink': ('JsonlSink', 'JsonFileSink'),
    'schnitzel_stream.nodes.http': ('HttpJsonSink',),
    'schnitzel_stream.nodes.durable_sqlite': ('SqliteQueueSink', 'SqliteQueueSource', 'SqliteQueueAckSink'),
    'schnitzel_stream.nodes.blob_ref': ('BytesToFileRefNode', 'FileRefToBytesNode'),
    'schnitzel_stream.packs.vision.nodes': (
        'OpenCvVideoFileSource', 'OpenCvRtspSource', 'OpenCvWebcamSource', 'EveryNthFrameSamplerNode',
        'MockDetectorNode', 'YoloV8DetectorNode', 'ProtocolV02EventBuilderNode', 'ZonePolicyNode',
        'DedupPolicyNode', 'OpenCvBboxDisplaySink',
    ),
    'schnitzel_stream.packs.experiments.nodes': (
        'SyntheticRiskEventSource', 'SlowScoringNode', 'BackpressureMetricsSink',
    ),
    'schnitzel_stream.packs.robotics.nodes': ('PersonFollowCmdVelNode', 'Ros2CmdVelSink'),
}

#: upstream `module:Class` -> entry-point name in the `schnitzel_stream_ros.plugins` group
UPSTREAM_ALIASES: dict[str, str] = {
    f'{module}:{cls}': cls for module, classes in _UPSTREAM_CLASSES.items() for cls in classes
}


def is_upstream_reference(ref: str) -> bool:
    """True for references into the upstream package (aliased or not)."""
    module = ref.split(':', 1)[0]
    return module == UPSTREAM_PACKAGE or module.startswith(UPSTREAM_PACKAGE + '.')
