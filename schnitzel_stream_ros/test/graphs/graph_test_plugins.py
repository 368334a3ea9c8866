"""Plugins that exist only to exercise the graph validator (kinds, profiles, ports, params, API).

Imported by test graphs as `graph_test_plugins:<Class>`; tests put this directory on sys.path
and add `graph_test_plugins` to the plugin allowlist.
"""
from __future__ import annotations

from collections.abc import Iterator

from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class FooSource(Plugin):
    """Emits kind foo."""

    ROLE = Role.SOURCE
    OUTPUTS = (Port('out', frozenset({'foo'})),)

    def produce(self) -> Iterator[StreamPacket]:
        yield StreamPacket.new('foo', 'dev', {})


class BarSink(Plugin):
    """Accepts kind bar only."""

    ROLE = Role.SINK
    INPUTS = (Port('in', frozenset({'bar'})),)
    OUTPUTS = ()

    def process(self, packet: StreamPacket, port: str = 'in') -> None:
        return None


class InprocSource(Plugin):
    """Emits process-local payloads of kind raw."""

    ROLE = Role.SOURCE
    OUTPUTS = (Port('out', frozenset({'raw'}), PayloadProfile.INPROC_ANY),)


class RefSink(Plugin):
    """Needs references (ref_portable input)."""

    ROLE = Role.SINK
    INPUTS = (Port('in', profile=PayloadProfile.REF_PORTABLE),)
    OUTPUTS = ()


class ImageSource(Plugin):
    """Publishes sensor_msgs images, not StreamPackets."""

    ROLE = Role.SOURCE
    OUTPUTS = (
        Port('out', frozenset({'frame'}), PayloadProfile.INPROC_ANY, msg_type='sensor_msgs/msg/Image'),
    )


class TwoOutNode(Plugin):
    """Two outputs, no default one."""

    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('left'), Port('right'))


class TwoInNode(Plugin):
    """Two required inputs."""

    INPUTS = (Port('main'), Port('aux'))
    OUTPUTS = (Port('out'),)


class OptionalInNode(Plugin):
    """An input that may stay unconnected."""

    INPUTS = (Port('in'), Port('control', required=False))
    OUTPUTS = (Port('out'),)


class ParamNode(Plugin):
    """Typed, bounded and required parameters."""

    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out'),)
    PARAMS = (
        Param('threshold', float, description='score threshold', min=0.0, max=1.0),
        Param('mode', str, 'fast', choices=('fast', 'exact')),
        Param('count', int, 1, min=1),
        Param('labels', list, []),
    )


class FutureApiNode(Plugin):
    """Written for a plugin API this runtime does not provide."""

    API_VERSION = '2.0'


class BadPortNode(Plugin):
    """Declares a port name ROS cannot use."""

    OUTPUTS = (Port('bad-name'),)


class NotAPlugin:
    """A class that is not a Plugin."""
