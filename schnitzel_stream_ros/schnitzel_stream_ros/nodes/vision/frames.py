"""What a frame packet looks like, in one place, for every vision node.

A frame packet is `kind=frame`, payload = the image itself (numpy uint8, BGR, height x width x 3),
profile `inproc_any`. Its position travels in meta: `frame_idx` (always), `pos_msec` (files),
`epoch` (live sources), `idempotency_key`. The payload is the bare array (not upstream's
`{frame, frame_idx}` dict) because that is what the codec turns into sensor_msgs/Image when a
frame crosses a container. Upstream-style dict payloads are still *read* everywhere, so packets
made by upstream-written plugins keep working.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from schnitzel_stream_ros.packet import Kind, MetaKey, StreamPacket

#: meta key under which detectors attach their detections to a frame packet (annotation input)
DETECTIONS_META = 'detections'


def frame_of(packet: StreamPacket, node_id: str) -> np.ndarray:
    """The image of a frame packet; a clear error naming the node when there is none."""
    payload = packet.payload
    if isinstance(payload, dict):  # upstream layout {frame, frame_idx}
        payload = payload.get('frame')
    if not isinstance(payload, np.ndarray) or payload.ndim not in (2, 3) or payload.size == 0:
        got = type(packet.payload).__name__
        raise TypeError(
            f'node {node_id!r}: packet {packet.packet_id} (kind={packet.kind}, source_id={packet.source_id}) '
            f'has no image payload (got {got}); expected a numpy BGR frame'
        )
    return payload


def frame_idx_of(packet: StreamPacket) -> int | None:
    """meta.frame_idx, else an upstream payload's frame_idx, else None."""
    idx = packet.meta.get(MetaKey.FRAME_IDX)
    if isinstance(idx, int) and not isinstance(idx, bool):
        return idx
    payload = packet.payload
    if isinstance(payload, dict):
        idx = payload.get('frame_idx')
        if isinstance(idx, int) and not isinstance(idx, bool):
            return idx
    return None


def frame_packet(source_id: str, frame: np.ndarray, ts: str, meta: dict[str, Any]) -> StreamPacket:
    """A new frame packet (fresh packet_id) from a source."""
    return StreamPacket.new(Kind.FRAME, source_id, payload=frame, meta=meta, ts=ts)
