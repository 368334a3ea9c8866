"""A packet as a JSON record, for sinks that write or print packets.

One definition so PrintSink, JsonlSink and JsonFileSink write the same shape (upstream's
`{packet_id, ts, kind, source_id, payload, meta}` or just the payload).
"""
from __future__ import annotations

import json
from typing import Any

from schnitzel_stream_ros.packet import StreamPacket

BODY_CHOICES = ('payload', 'packet')


def packet_record(packet: StreamPacket, body: str = 'packet') -> Any:
    if body == 'payload':
        return packet.payload
    return {
        'packet_id': packet.packet_id,
        'ts': packet.ts,
        'kind': packet.kind,
        'source_id': packet.source_id,
        'payload': packet.payload,
        'meta': dict(packet.meta),
    }


class NotJsonError(TypeError):
    """A file lane got a payload that is not JSON (contract: refuse, never str() it)."""


def strict_json(node_id: str, packet: StreamPacket, record: Any, **dumps_kwargs: Any) -> str:
    """json.dumps without fallbacks; the error names the node, kind and source_id."""
    try:
        return json.dumps(record, allow_nan=False, **dumps_kwargs)
    except (TypeError, ValueError) as exc:
        raise NotJsonError(
            f'node {node_id!r}: packet kind {packet.kind!r} from source_id {packet.source_id!r} '
            f'is not JSON: {exc}'
        ) from exc
