"""EveryNthFrameSamplerNode: keep every Nth frame (upstream vision pack node, same keys)."""
from __future__ import annotations

from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port


class EveryNthFrameSamplerNode(Plugin):
    """Pass a frame when (frame_idx - offset) % every_n == 0; count kept and dropped frames."""

    PASSTHROUGH = True
    INPUTS = (Port('in', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('every_n', int, 1, 'keep one frame in every_n', min=1, dynamic=True),
        Param('offset', int, 0, 'frame index that is kept first', dynamic=True),
    )

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        payload = packet.payload
        frame_idx = payload.get('frame_idx') if isinstance(payload, dict) else None
        if frame_idx is None:
            frame_idx = packet.meta.get(MetaKey.FRAME_IDX)
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, int):
            raise TypeError(f'node {self.node_id!r}: frame without an integer frame_idx (payload or meta) '
                            f'from source_id {packet.source_id!r}')
        if (frame_idx - self.params['offset']) % self.params['every_n'] == 0:
            self.count('kept_total')
            return packet
        self.count('dropped_total')
        return None
