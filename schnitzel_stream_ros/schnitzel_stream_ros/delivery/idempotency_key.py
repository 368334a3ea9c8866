"""The wire form of an idempotency key: any Unicode key as a header-safe, stable ASCII text.

Keys come from packet meta, which on a cross-process edge any DDS publisher can write, and from
graph config (a `site_id` like `Łódź`). An HTTP header value is a line of visible ASCII; a key
outside that set either cannot be sent at all (a non-Latin-1 character) or, worse, breaks the
header block (`\\r\\n` would start a header of the sender's choosing). So the queue stores, and the
client sends, this fixed form:

  1. The key's UTF-8 bytes (lone surrogates kept with `surrogatepass`, so every str has one).
  2. Every byte outside visible ASCII (0x21-0x7E), and `%` itself, becomes `%XX` (upper-case hex).
     A key of visible ASCII without `%` — `event:cam0:7`, a UUID — is therefore unchanged.
  3. If that text is longer than `MAX_WIRE_KEY_CHARS`, the key becomes `%sha256:` + the SHA-256
     hex of its UTF-8 bytes. `%s` can never come out of step 2 (`%` is always followed by two hex
     digits there), so a hashed key never equals an encoded one.

The mapping is a function of the key alone: the same key gives the same header on every retry,
every restart and every process, so the backend's deduplication keeps working. Distinct keys give
distinct wire forms (step 2 is injective; step 3 up to SHA-256 collisions).
"""

from __future__ import annotations

import hashlib

#: Longest wire form sent as is; servers commonly limit a header line to 4-8 KB.
MAX_WIRE_KEY_CHARS = 200
HASH_PREFIX = '%sha256:'

_SAFE = frozenset(range(0x21, 0x7F)) - {ord('%')}
_BYTE_FORM = [chr(b) if b in _SAFE else f'%{b:02X}' for b in range(256)]


def wire_key(key: str) -> str:
    """The header-safe form of `key` (see the module docstring for the exact rule)."""
    raw = key.encode('utf-8', 'surrogatepass')
    encoded = ''.join([_BYTE_FORM[b] for b in raw])
    if len(encoded) > MAX_WIRE_KEY_CHARS:
        return HASH_PREFIX + hashlib.sha256(raw).hexdigest()
    return encoded


def is_header_safe(text: str) -> bool:
    """True when `text` can be sent as a header value unchanged: visible ASCII, bounded length."""
    return 0 < len(text) <= max(MAX_WIRE_KEY_CHARS, len(HASH_PREFIX) + 64) and all(
        0x21 <= ord(c) <= 0x7E for c in text
    )


def header_key(stored: str) -> str:
    """What to send for a stored key. Keys stored by this queue are wire forms already and go out
    unchanged; a row from an older or upstream file may hold a raw key, which is encoded here with
    the same rule (so its retries agree with each other)."""
    return stored if is_header_safe(stored) else wire_key(stored)
