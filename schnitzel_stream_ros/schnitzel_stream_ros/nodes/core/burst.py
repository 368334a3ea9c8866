"""BurstNode: N copies of each input packet, to create controlled fan-out and backpressure."""
from __future__ import annotations

from collections.abc import Iterator

from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port


class BurstNode(Plugin):
    """Emit `count` new packets per input, meta[meta_key] = 0..count-1 (upstream dev node)."""

    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', profile=PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('count', int, 1, 'packets to emit per input packet', min=0),
        Param('meta_key', str, 'burst_seq', 'meta key that carries the copy index'),
    )

    def process(self, packet: StreamPacket, port: str = 'in') -> Iterator[StreamPacket]:
        key = self.params['meta_key']
        for index in range(self.params['count']):
            # new packet ids, like upstream: copies are distinct packets downstream (dedup, queues)
            yield StreamPacket.new(packet.kind, packet.source_id, packet.payload,
                                   {**packet.meta, key: index}, ts=packet.ts)
