"""Strict JSON text for the durable and HTTP lanes: refuse, never stringify.

The upstream contract says these lanes take JSON values only and name node, kind and source_id
when they refuse. `json.dumps(default=str)` would silently turn a numpy array into its repr and the
backend would store garbage; NaN would produce text strict parsers reject; int dict keys would come
back as strings. The codec's strict encoder (`codec.json_values`) refuses all of that and names the
field (`payload.bbox.x1`); this module adds the packet's node, kind and source_id to its message.
"""

from __future__ import annotations

from typing import Any

from schnitzel_stream_ros.codec.json_values import dumps_json
from schnitzel_stream_ros.delivery.errors import NotJsonError


def to_json_text(value: Any, *, field: str, node_id: str, kind: str, source_id: str) -> str:
    """Compact JSON text of `value`, or NotJsonError naming the node, kind, source_id and field."""
    try:
        return dumps_json(value, field)
    except (TypeError, ValueError) as exc:
        raise NotJsonError(
            f'node {node_id!r}: packet kind={kind!r} source_id={source_id!r} is not JSON: {exc}; '
            'durable and HTTP lanes carry JSON values only'
        ) from None
