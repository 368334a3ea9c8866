"""Identity: pass every packet through unchanged (upstream dev node)."""
from __future__ import annotations

from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Plugin, Port


class Identity(Plugin):
    """Pass-through node: what comes in goes out."""

    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', profile=PayloadProfile.INPROC_ANY),)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        return packet
