"""PrintSink: one JSON line per packet on stdout (upstream dev node)."""
from __future__ import annotations

import json
import sys

from schnitzel_stream_ros.nodes.core.packet_record import packet_record
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class PrintSink(Plugin):
    """Print each packet as one JSON line; with `forward`, pass it on (then usable as kind: node)."""

    ROLE = Role.SINK
    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', profile=PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('prefix', str, '', 'text printed before each line'),
        Param('forward', bool, False, 'emit the packet on `out` after printing'),
    )

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        # A dev sink must not crash on a frame: non-JSON values print as their str() (upstream).
        line = json.dumps(packet_record(packet), default=str)
        sys.stdout.write(self.params['prefix'] + line + '\n')
        sys.stdout.flush()
        return packet if self.params['forward'] else None
