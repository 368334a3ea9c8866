"""Where an event goes on a message bus: `<prefix>.<site>.<camera>.<type>` (NATS) or
`<prefix>/<site>/<camera>/<type>` (MQTT), from the event's own fields.

The fields come from packets, which any DDS publisher on a cross-process edge can write, so they are
hostile text: a `.` would add a NATS subject token, `*`/`>` or `+`/`#` would be wildcards (a
publish to a wildcard subject is refused by the server, or on MQTT closes the connection), a
`/` adds an MQTT level, NUL and whitespace are invalid, `$` at the start of an MQTT topic is the
broker's own namespace. One fixed, injective encoding makes any text a safe token for both buses:

  * UTF-8 bytes (lone surrogates kept), each byte outside `[A-Za-z0-9_-]` becomes `%XX` (upper-case
    hex) -- `%` is neither a separator nor a wildcard on either bus, and `site-1`, `cam0`, `PERSON`
    stay as they are;
  * an empty or missing field becomes `_`;
  * a token longer than `MAX_TOKEN_CHARS` becomes its first 40 characters + `~` + 16 hex of the
    SHA-256 of the field (`~` never comes out of the first rule, so a shortened token never equals
    an encoded one).

Routing is a convenience for subscribers (`events.site-1.>`, `events/+/cam0/#`); the event itself,
unchanged in the message body, stays the truth.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

MAX_TOKEN_CHARS = 64
#: (body field, fallback field) per route token: protocol-v0.2 events, then the packet envelope.
ROUTE_FIELDS = (('site_id', None), ('camera_id', 'source_id'), ('event_type', 'kind'))
_SAFE = frozenset(b'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-')
_BYTE_FORM = [chr(b) if b in _SAFE else f'%{b:02X}' for b in range(256)]
_PREFIX_NATS = re.compile(r'[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*')
_PREFIX_MQTT = re.compile(r'[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*')
#: Route lookups parse at most this much of a body (a route needs three short top-level fields).
MAX_ROUTE_BODY_BYTES = 1 << 20


def token(value: Any) -> str:
    """One bus-safe token for `value` (see the module docstring for the exact rule)."""
    if value is None or value == '':
        return '_'
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    raw = text.encode('utf-8', 'surrogatepass')
    encoded = ''.join([_BYTE_FORM[b] for b in raw])
    if len(encoded) > MAX_TOKEN_CHARS:
        return encoded[:40] + '~' + hashlib.sha256(raw).hexdigest()[:16]
    return encoded


def route_of(body: bytes) -> tuple[str, str, str]:
    """(site, camera, type) tokens of one event body: the payload of a protocol event, or the
    envelope `{packet_id, ts, kind, source_id, payload, meta}` (its payload's fields first).
    A body that is not a JSON object routes as `_._._` (it is still delivered)."""
    event: Mapping[str, Any] = {}
    if len(body) <= MAX_ROUTE_BODY_BYTES:
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, Mapping):
            inner = parsed.get('payload')
            event = {**parsed, **inner} if isinstance(inner, Mapping) else parsed
    tokens = []
    for name, fallback in ROUTE_FIELDS:
        value = event.get(name)
        if (value is None or value == '') and fallback:
            value = event.get(fallback)
        tokens.append(token(value))
    return tokens[0], tokens[1], tokens[2]


def check_nats_prefix(prefix: str) -> str:
    """A subject prefix from the graph: dot-separated tokens of `[A-Za-z0-9_-]`, no wildcards."""
    if not _PREFIX_NATS.fullmatch(prefix or ''):
        raise ValueError(
            f'expected dot-separated tokens of [A-Za-z0-9_-] (no wildcards), got {prefix!r}'
        )
    return prefix


def check_mqtt_prefix(prefix: str) -> str:
    """A topic prefix from the graph: slash-separated levels of `[A-Za-z0-9_-]` (no `$`, no wildcards)."""
    if not _PREFIX_MQTT.fullmatch(prefix or ''):
        raise ValueError(
            f'expected slash-separated levels of [A-Za-z0-9_-] (no wildcards, no $), got {prefix!r}'
        )
    return prefix


def nats_subject(prefix: str, body: bytes) -> str:
    return '.'.join((prefix, *route_of(body)))


def mqtt_topic(prefix: str, body: bytes) -> str:
    return '/'.join((prefix, *route_of(body)))
