"""StreamPacket: the one record every node, topic, queue and backend shares (contract v1).

Immutable, cheap to derive, and the same fields as schnitzel-stream-platform's packet so graphs and
backends written for it keep working. Transport encodings live in `schnitzel_stream_ros.codec`;
this module knows nothing about ROS.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Kind:
    """Well-known packet kinds (any other non-empty string is allowed too)."""

    FRAME = 'frame'
    DETECTION = 'detection'
    EVENT = 'event'
    SENSOR = 'sensor'
    METRICS = 'metrics'
    CONTROL = 'control'
    BYTES = 'bytes'
    BYTES_REF = 'bytes_ref'
    RAW = 'raw'
    AUDIO = 'audio'  # fixed-duration PCM chunks (nodes/audio/pcm.py: format, rate, channels in meta)


class MetaKey:
    """Well-known meta keys of the upstream contract."""

    IDEMPOTENCY_KEY = 'idempotency_key'
    FRAME_IDX = 'frame_idx'
    POS_MSEC = 'pos_msec'
    EPOCH = 'epoch'
    SOURCE_PACKET_ID = 'source_packet_id'
    DURABLE = 'durable'
    # contract v1 extensions: how a receiver reads a bytes or frame payload
    CONTENT_TYPE = 'content_type'  # MIME type of a bytes payload
    IMAGE_ENCODING = 'image_encoding'  # sensor_msgs/Image encoding of a frame (default by dtype/channels)


class PayloadProfile(StrEnum):
    """How far a payload can travel.

    inproc_any: process-local objects (numpy frames, handles) — never leaves its process as is.
    json_portable: payload and meta are JSON values — can go anywhere.
    ref_portable: the payload is a reference (blob ref), not the bytes — can go anywhere.
    """

    INPROC_ANY = 'inproc_any'
    JSON_PORTABLE = 'json_portable'
    REF_PORTABLE = 'ref_portable'


# source profile -> destination profiles it may feed (upstream matrix)
_PROFILE_ACCEPTED_BY: dict[PayloadProfile, frozenset[PayloadProfile]] = {
    PayloadProfile.INPROC_ANY: frozenset({PayloadProfile.INPROC_ANY}),
    PayloadProfile.JSON_PORTABLE: frozenset({PayloadProfile.INPROC_ANY, PayloadProfile.JSON_PORTABLE}),
    PayloadProfile.REF_PORTABLE: frozenset(PayloadProfile),
}

#: Kinds whose payload is not portable unless encoded (raw frames, raw bytes).
NON_PORTABLE_KINDS = frozenset({Kind.FRAME, Kind.BYTES, Kind.AUDIO})


def profile_compatible(source: PayloadProfile | str, dest: PayloadProfile | str) -> bool:
    """True when packets of profile `source` may be delivered to an input of profile `dest`."""
    return PayloadProfile(dest) in _PROFILE_ACCEPTED_BY[PayloadProfile(source)]


class FrozenMeta(dict):
    """A dict that refuses mutation: packet meta stays what it was when the packet was made.

    A dict subclass (not a MappingProxyType) so `json.dumps` takes it as is, at C speed.
    """

    __slots__ = ()

    def _refuse(self, *_args: Any, **_kwargs: Any) -> None:
        raise TypeError('StreamPacket.meta is immutable: derive a packet with with_meta(...)')

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMeta, (dict(self),))


EMPTY_META = FrozenMeta()


def _freeze(meta: Mapping[str, Any] | None) -> FrozenMeta:
    if not meta:
        return EMPTY_META
    if type(meta) is FrozenMeta:
        return meta
    if type(meta) is not dict and not isinstance(meta, Mapping):  # a plain dict skips the ABC check
        raise TypeError(f'meta must be a mapping, got {type(meta).__name__}')
    return FrozenMeta(meta)


#: Packet ids made from one read of the kernel's random source (`os.urandom`, as uuid.uuid4 does for
#: each id): a source emits tens of thousands of packets a second, and one getrandom call plus a
#: UUID object per packet was the largest single cost of making one (measured, issue 23).
_ID_BATCH = 256
#: The variant of an RFC 4122 UUID is 10xx in the high bits of its 17th hex digit.
_VARIANT_DIGIT = {f'{d:x}': f'{8 | (d & 3):x}' for d in range(16)}
_ids: collections.deque[str] = collections.deque()
if hasattr(os, 'register_at_fork'):  # a forked child must never hand out ids its parent holds too
    os.register_at_fork(after_in_child=_ids.clear)


def _refill_ids() -> None:
    h = os.urandom(16 * _ID_BATCH).hex()
    variant = _VARIANT_DIGIT
    # 122 random bits each: the 13th hex digit is the version (4), the 17th carries the variant.
    # deque.extend/popleft are atomic: threads share the pool without a lock.
    _ids.extend([f'{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{variant[h[i + 16]]}{h[i + 17:i + 20]}-'
                 f'{h[i + 20:i + 32]}' for i in range(0, len(h), 32)])


def new_packet_id() -> str:
    """A random UUID4 (str), as str(uuid.uuid4()) gives, from a pool filled 256 at a time."""
    while True:
        try:
            return _ids.popleft()
        except IndexError:
            _refill_ids()


def format_ts(dt: datetime) -> str:
    """Canonical packet time text: UTC, 'Z' suffix, microseconds only when non-zero.

    One spelling per instant, so time text can be compared and used in keys. Formatted by hand
    rather than with strftime, which does not zero-pad years below 1000 on every libc.
    """
    dt = dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    text = f'{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}'
    if dt.microsecond:
        text += f'.{dt.microsecond:06d}'
    return text + 'Z'


def parse_ts(ts: str) -> datetime:
    """ISO-8601 text -> aware UTC datetime. Text without an offset is taken as UTC.

    Digits below the microsecond are dropped (datetime's resolution, and the contract's).
    """
    if not isinstance(ts, str) or not ts:
        raise ValueError(f'ts: expected an ISO-8601 string, got {ts!r}')
    text = ts[:-1] + '+00:00' if ts.endswith(('Z', 'z')) else ts
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f'ts: not an ISO-8601 time: {ts!r}') from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


_ts_second: tuple[int, str] = (-1, '')  # (UNIX second, its text without the fraction)


def now_ts() -> str:
    """format_ts of now; the text of the current second is made once per second, not per packet."""
    global _ts_second
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _ts_second
    if cached[0] != second:
        cached = _ts_second = (second, format_ts(datetime.fromtimestamp(second, UTC))[:-1])
    return f'{cached[1]}.{micros:06d}Z' if micros else cached[1] + 'Z'


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPacket:
    """One record in a stream. Immutable: derive new packets instead of changing one.

    `derive()` keeps packet_id (pass-through, enrichment); `child()` makes a new packet_id and
    records the parent in meta.source_packet_id (sources, detectors, event builders).
    """

    packet_id: str
    ts: str
    kind: str
    source_id: str
    payload: Any = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=lambda: EMPTY_META)

    def __post_init__(self) -> None:
        if (  # the common case in one expression: this runs for every packet made anywhere
            type(self.packet_id) is str
            and type(self.ts) is str
            and type(self.kind) is str
            and type(self.source_id) is str
            and self.kind
        ):
            if type(self.meta) is not FrozenMeta:
                object.__setattr__(self, 'meta', _freeze(self.meta))
            return
        for name in ('packet_id', 'ts', 'kind', 'source_id'):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f'{name}: expected str, got {type(value).__name__}')
        if not self.kind:
            raise ValueError('kind: must not be empty')
        if type(self.meta) is not FrozenMeta:
            object.__setattr__(self, 'meta', _freeze(self.meta))

    @classmethod
    def new(
        cls,
        kind: str,
        source_id: str,
        payload: Any = None,
        meta: Mapping[str, Any] | None = None,
        ts: str | None = None,
    ) -> StreamPacket:
        """A fresh packet: new UUID4 id, `ts` now (UTC) unless given."""
        return cls(new_packet_id(), ts or now_ts(), kind, source_id, payload, _freeze(meta))

    def derive(self, **changes: Any) -> StreamPacket:
        """Same packet_id, some fields replaced (e.g. payload=..., kind=...)."""
        if 'packet_id' in changes:
            raise ValueError('derive() keeps packet_id; use child() for a new packet')
        return dataclasses.replace(self, **changes)

    def child(
        self,
        kind: str | None = None,
        payload: Any = None,
        meta: Mapping[str, Any] | None = None,
        ts: str | None = None,
    ) -> StreamPacket:
        """A new packet made from this one (new packet_id; meta.source_packet_id = this id)."""
        merged = dict(meta or {})
        merged.setdefault(MetaKey.SOURCE_PACKET_ID, self.packet_id)
        return StreamPacket(
            new_packet_id(), ts or self.ts, kind or self.kind, self.source_id, payload, FrozenMeta(merged)
        )

    def with_meta(self, **entries: Any) -> StreamPacket:
        """Same packet with meta entries added or replaced."""
        return dataclasses.replace(self, meta=FrozenMeta({**self.meta, **entries}))

    @property
    def idempotency_key(self) -> str:
        """Deduplication key: meta.idempotency_key when set, else packet_id (upstream rule)."""
        key = self.meta.get(MetaKey.IDEMPOTENCY_KEY)
        return key if isinstance(key, str) and key else self.packet_id
