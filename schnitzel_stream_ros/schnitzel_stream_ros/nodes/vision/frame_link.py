"""FrameLinkSender / FrameLinkReceiver: frames between hosts, JPEG on the wire, losses counted at the sender.

A frame is worth little a second later, so frames never wait for a link (docs/hosts.md): the sender
compresses each frame to JPEG (its output declares the wire encoding `compressed_image`, the only way
a frame may cross hosts, graph/placement.py), numbers it, and publishes it best effort. The receiver
on the other host counts what arrives per sender and reports back on `feedback_topic`
(std_msgs/String, JSON `{"sender", "received", "highest"}`) every `feedback_sec`.

The sender thereby knows what the link lost: `highest - received` frames it sent never arrived
(`link_lost_total`). Without feedback for `link_timeout_sec` it treats the link as down (a
partition): it drops frames on the spot, counted as `partition_dropped_total` — never queued —
and sends one probe frame per `probe_sec` until feedback returns. Both counters are in the sending
host's run report (`cross_host`), so the frames a partition cost are counted where they were made.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from std_msgs.msg import String

from schnitzel_stream_ros.codec.compressed_image import CompressedFrame, compress_frame
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import REQUIRED, Param, Plugin, Port

STRING_MSG_TYPE = 'std_msgs/msg/String'
LINK_META_KEY = 'frame_link'
MAX_FEEDBACK_CHARS = 4096
#: senders a receiver keeps counts for (a hostile peer must not grow the table)
MAX_SENDERS = 64


def _feedback_port(direction: str) -> Port:
    return Port(
        'feedback',
        frozenset({Kind.RAW}),
        PayloadProfile.INPROC_ANY,
        msg_type=STRING_MSG_TYPE,
        required=False,
        topic_param='feedback_topic',
        description=f'link feedback {direction} (std_msgs/String JSON, no edge needed)',
    )


def _counter_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62 else None


class FrameLinkSender(Plugin):
    """Compress frames to JPEG and send them to another host; count what the link and partitions lose."""

    PEER_TOPIC_PARAM = 'feedback_topic'
    INPUTS = (
        Port('in', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),
        _feedback_port('from the receiver'),
    )
    OUTPUTS = (
        Port(
            'out',
            frozenset({Kind.FRAME}),
            PayloadProfile.INPROC_ANY,
            wire_encoding='compressed_image',
            description='JPEG frames numbered per sender (an edge to a FrameLinkReceiver)',
        ),
    )
    PARAMS = (
        Param('feedback_topic', str, REQUIRED, "absolute topic of the receiver's feedback"),
        Param('jpeg_quality', int, 80, 'JPEG quality of frames on the link', min=1, max=100),
        Param('link_timeout_sec', float, 2.0, 'no feedback for this long: the link is down', min=0.1),
        Param(
            'probe_sec', float, 1.0, 'while down, one frame per this many seconds probes the link', min=0.05
        ),
    )

    def setup(self) -> None:
        if not self.params['feedback_topic'].startswith('/'):
            raise ValueError(
                f"node '{self.node_id}': parameter 'feedback_topic' must be an absolute topic name"
            )
        self._seq = 0
        self._lost = 0
        self._last_feedback = time.monotonic()  # the start gate matched the link: it starts up
        self._last_probe = 0.0
        self._down = False

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        if port == 'feedback':
            self._feedback(packet)
            return None
        now = time.monotonic()
        if now - self._last_feedback > self.params['link_timeout_sec']:
            if not self._down:
                self._down = True
                self.count('link_down_total')
                self.log.warning(
                    f"node '{self.node_id}': no feedback for {now - self._last_feedback:.1f} s: link "
                    'down, frames are dropped (counted) and probes sent'
                )
            if now - self._last_probe < self.params['probe_sec']:
                self.count('partition_dropped_total')
                return None
            self._last_probe = now
        payload = packet.payload
        if isinstance(payload, np.ndarray):
            payload = CompressedFrame.from_msg(
                compress_frame(payload, 'jpeg', jpeg_quality=self.params['jpeg_quality'])
            )
        elif not isinstance(payload, CompressedFrame):
            self.count('not_a_frame_total')
            return None
        self._seq += 1
        self.count('sent_total')
        numbered = packet.with_meta(**{LINK_META_KEY: {'sender': self.node_id, 'seq': self._seq}})
        return dataclasses.replace(numbered, payload=payload)

    def _feedback(self, packet: StreamPacket) -> None:
        text = getattr(packet.payload, 'data', None)
        try:
            if not isinstance(text, str) or len(text) > MAX_FEEDBACK_CHARS:
                raise ValueError('not a std_msgs/String of bounded size')
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError('not a JSON object')
        except ValueError as exc:
            self.count('feedback_invalid_total')
            self.log.debug(f"node '{self.node_id}': feedback ignored: {exc}")
            return
        if data.get('sender') != self.node_id:
            return  # another sender's feedback on a shared topic
        received, highest = _counter_int(data.get('received')), _counter_int(data.get('highest'))
        if received is None or highest is None or received > highest or highest > self._seq:
            self.count('feedback_invalid_total')
            return
        lost = highest - received
        if lost > self._lost:
            self.count('link_lost_total', lost - self._lost)
            self._lost = lost
        self._last_feedback = time.monotonic()
        if self._down:
            self._down = False
            self.log.warning(
                f"node '{self.node_id}': feedback again: link up ({self._lost} frames lost so far)"
            )


class FrameLinkReceiver(Plugin):
    """Receive frames from FrameLinkSenders on other hosts; tell each sender what arrived."""

    PEER_TOPIC_PARAM = 'feedback_topic'
    INPUTS = (Port('in', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    OUTPUTS = (
        Port('out', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),
        _feedback_port('to the sender'),
    )
    PARAMS = (
        Param('feedback_topic', str, REQUIRED, 'absolute topic the feedback goes to (the senders listen)'),
        Param('feedback_sec', float, 0.5, 'seconds between feedback messages', min=0.05),
    )

    @classmethod
    def tick_period(cls, params: Mapping[str, Any]) -> float | None:
        return params.get('feedback_sec', 0.5)

    def setup(self) -> None:
        if not self.params['feedback_topic'].startswith('/'):
            raise ValueError(
                f"node '{self.node_id}': parameter 'feedback_topic' must be an absolute topic name"
            )
        self._senders: dict[str, list[int]] = {}  # sender -> [received, highest seq]

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        link = packet.meta.get(LINK_META_KEY)
        sender = link.get('sender') if isinstance(link, Mapping) else None
        seq = _counter_int(link.get('seq')) if isinstance(link, Mapping) else None
        if isinstance(sender, str) and 0 < len(sender) <= 256 and seq is not None:
            counts = self._senders.get(sender)
            if counts is None and len(self._senders) < MAX_SENDERS:
                counts = self._senders[sender] = [0, 0]
            if counts is not None:
                counts[0] += 1
                counts[1] = max(counts[1], seq)
        self.count('received_total')
        return packet

    def on_tick(self) -> None:
        for sender, (received, highest) in self._senders.items():
            text = json.dumps({'sender': sender, 'received': received, 'highest': highest})
            self.emit(StreamPacket.new(Kind.RAW, self.node_id, String(data=text)), 'feedback')
