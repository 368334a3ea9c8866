"""DurableEdgeReceiver: the consuming host's end of a durable edge between hosts (docs/hosts.md).

It is a DurableForwarderSink (commit into this host's queue, deliver to the backend at least once)
that also acknowledges: once a batch of events from a DurableEdgeSender is committed here, their
idempotency keys go back on `ack_topic`, and only then does the sender delete its copies. An event
sent twice (an acknowledgement lost in a partition) has the same key: the queue keeps one row per
key while it waits, and the backend deduplicates by the same key once it was delivered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from std_msgs.msg import String

from schnitzel_stream_ros.nodes.delivery.durable_edge_sender import STRING_MSG_TYPE
from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import DurableForwarderSink
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import REQUIRED, Param, Port


class DurableEdgeReceiver(DurableForwarderSink):
    """Commit events of another host's DurableEdgeSender, acknowledge their keys, deliver them."""

    DURABLE_EDGE = 'receiver'
    PEER_TOPIC_PARAM = 'ack_topic'
    OUTPUTS = (
        *DurableForwarderSink.OUTPUTS,
        Port(
            'ack',
            frozenset({Kind.RAW}),
            PayloadProfile.INPROC_ANY,
            msg_type=STRING_MSG_TYPE,
            topic_param='ack_topic',
            description='keys committed here, for the sender (no edge needed)',
        ),
    )
    PARAMS = (
        *DurableForwarderSink.PARAMS,
        Param('ack_topic', str, REQUIRED, 'absolute topic the acknowledgements go to (the sender listens)'),
    )

    def setup(self) -> None:
        if not self.params['ack_topic'].startswith('/'):
            raise ValueError(f"node '{self.node_id}': parameter 'ack_topic' must be an absolute topic name")
        super().setup()

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        out = super().process(packet, port)  # returns after the commit
        self._acknowledge([packet])
        return out

    def process_batch(self, packets: Sequence[StreamPacket], port: str = 'in') -> list[StreamPacket] | None:
        outs = super().process_batch(packets, port)  # all committed, or raised (then none is acknowledged)
        self._acknowledge(packets)
        return outs

    def _acknowledge(self, packets: Sequence[StreamPacket]) -> None:
        keys = [p.idempotency_key for p in packets if p.idempotency_key]
        if keys:
            self.count('acks_sent_total', len(keys))
            text = json.dumps({'keys': keys}, separators=(',', ':'))
            self.emit(StreamPacket.new(Kind.RAW, self.node_id, String(data=text)), 'ack')
