"""InitialValue: the seed a loop needs before its first measurement.

A loop in which every node waits for its input never starts; an InitialValue emits one packet of
its own when the graph starts (Plugin.on_start: every node is wired, sources begin) and from then
on passes every packet through. In a control loop it is the actuator's first setting, e.g. the
frame rate a camera gate starts with before the controller has measured anything.
"""
from __future__ import annotations

from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port


class InitialValue(Plugin):
    """Emit `value` (as a `kind` packet) once when the graph starts, then pass packets through."""

    CYCLE_KIND = 'initial'
    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'),)
    PARAMS = (
        Param('value', dict, {}, 'payload of the seed packet'),
        Param('kind', str, Kind.CONTROL, 'packet kind of the seed'),
        Param('source_id', str, '', 'source_id of the seed (default: the node id)'),
    )

    def on_start(self) -> None:
        seed = StreamPacket.new(self.params['kind'], self.params['source_id'] or self.node_id,
                                dict(self.params['value']), {'seed': True})
        self.count('seeded_total')
        self.emit(seed)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        return packet
