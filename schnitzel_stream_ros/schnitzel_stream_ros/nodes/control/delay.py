"""Delay: the unit delay (z^-1) that lets a graph close a loop.

A cycle of nodes that each answer every packet at once would hand one packet round for ever; a
Delay breaks that by holding packets back: it emits the packet that arrived `count` packets ago
when a new one arrives, so every arrival leaves exactly one packet (the held ones are bounded by
`count`). The graph validator admits a cycle only through a Delay or an InitialValue
(`config.allow_cycles: true`), and refuses `block` inboxes inside a cycle, which could wait on
each other.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port


class Delay(Plugin):
    """Hold `count` packets; each arrival releases the one that came `count` packets earlier."""

    CYCLE_KIND = 'delay'
    PASSTHROUGH = True
    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'),)
    PARAMS = (
        Param('count', int, 1, 'packets held back (the loop delay in packets)', min=1, max=1024),
    )

    def setup(self) -> None:
        self._held: deque[StreamPacket] = deque()

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        self._held.append(packet)
        released = self._held.popleft() if len(self._held) > self.params['count'] else None
        self.gauge('held', len(self._held))
        return released

    def snapshot_state(self) -> Any:
        return list(self._held)  # packets are immutable: the new instance may keep them

    def restore_state(self, state: Any) -> None:
        held = [p for p in state if isinstance(p, StreamPacket)] if isinstance(state, list) else []
        self._held = deque(held[-self.params['count']:])
