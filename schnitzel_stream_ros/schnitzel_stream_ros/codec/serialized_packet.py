"""schnitzel_stream_msgs/StreamPacket read straight from its serialized form (CDR).

Why: a container's DDS inputs of StreamPackets subscribe `raw=True` and hand the bytes to
`PacketCodec.decode_serialized`. Otherwise rclpy builds a Python message object field by field
(the generated constructor evaluates every default, each field goes through its property setter)
before the codec reads the same fields back out: ~12 us for a small packet, more than the rest of
a cross-process hop's receiving Python work. This reader takes ~4.5 us; rosbags' CDR reader, the
well-kept pure-Python one, ~8 us (`python bench/codec_bench.py`: `info_cdr_readers` and
`info_serialized_decode`, all in the same run; `bench/runtime_bench.py` P3 for the hop). The fields
read here are then checked and turned into a packet by the very code that decodes a message object,
so both accept and refuse the same (fuzzed against rclpy: test/unit/test_serialized_packet.py).

What is read: little-endian plain CDR (XCDR1, encapsulation 0x0001), which Fast DDS and Cyclone
DDS write for ROS 2 types on little-endian hosts; anything else (big endian, XCDR2) returns None
and the caller lets rclpy deserialise it. A string is read as rclpy reads it (up to its first NUL,
invalid UTF-8 replaced), so a serialized packet and the message rclpy would have made from it give
the same packet.

Hostile input (it comes from any process on the DDS domain): every length is checked against the
bytes left before anything is sliced, bounded sequences hold at most their bound, so a malformed
message is a ValueError naming the field, never a read past the end, a hang or a large allocation.
Byte fields (payload_bytes, image data) are memoryviews of the received bytes: no copy.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

#: the encapsulation read here (first two bytes): CDR, little endian
_CDR_LE = b'\x00\x01'
_U32 = struct.Struct('<I').unpack_from
_STAMP = struct.Struct('<iI').unpack_from  # builtin_interfaces/Time: int32 sec, uint32 nanosec
_U64 = struct.Struct('<Q').unpack_from
_THREE_U32 = struct.Struct('<3I').unpack_from
#: CDR aligns to the start of the body, which follows the 4-byte encapsulation header
_BODY = 4


class Time(NamedTuple):
    sec: int
    nanosec: int


class Header(NamedTuple):
    stamp: Time
    frame_id: str


class ImageFields(NamedTuple):
    """sensor_msgs/Image, as the codec reads it (attribute names of the message)."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


class CompressedImageFields(NamedTuple):
    header: Header
    format: str
    data: memoryview


class BlobRefFields(NamedTuple):
    scheme: str
    path: str
    content_type: str
    size_bytes: int
    sha256: str


class PacketFields(NamedTuple):
    """schnitzel_stream_msgs/StreamPacket's fields, named as on the message."""

    header: Header
    packet_id: str
    kind: str
    source_id: str
    idempotency_key: str
    payload_encoding: str
    payload_json: str
    content_type: str
    payload_bytes: memoryview
    image: list[ImageFields]
    compressed_image: list[CompressedImageFields]
    blob_ref: list[BlobRefFields]
    meta_json: str


# the tuples are made with tuple.__new__ (one C call): a NamedTuple's own __new__ is Python code
_new = tuple.__new__
#: the strings between the stamp and payload_bytes, in the message's order
_LEADING_STRINGS = ('header.frame_id', 'packet_id', 'kind', 'source_id', 'idempotency_key',
                    'payload_encoding', 'payload_json', 'content_type')


def _ends_early(field: str, missing: int) -> None:
    raise ValueError(f'{field}: the message ends {missing} bytes early')


def _read_strings(data: bytes, pos: int, fields: tuple[str, ...], out: list[str]) -> int:
    """Appends the strings that follow `pos` (one per field name) to `out`; returns the new pos.

    A string is a 4-aligned uint32 size (its NUL included), then its bytes."""
    end = len(data)
    for field in fields:
        start = ((pos + 3) & ~3) + 4  # 4 is a multiple of 4: aligned to the body as to the buffer
        if start > end:
            _ends_early(field, start - end)
        pos = start + _U32(data, start - 4)[0]
        if pos > end:
            _ends_early(field, pos - end)
        nul = data.find(b'\x00', start, pos)  # as rclpy reads it: up to the first NUL
        out.append(data[start:nul if nul >= 0 else pos].decode('utf-8', 'replace'))
    return pos


class _Reader:
    """A cursor over one serialized message, for what follows the leading strings."""

    __slots__ = ('data', 'end', 'pos', 'view')

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.view = memoryview(data)
        self.end = len(data)
        self.pos = pos

    def _need(self, size: int, field: str) -> int:
        pos = self.pos
        if size > self.end - pos:
            _ends_early(field, size - (self.end - pos))
        self.pos = pos + size
        return pos

    def uint32(self, field: str) -> int:
        self.pos = (self.pos + 3) & ~3
        return _U32(self.data, self._need(4, field))[0]

    def uint64(self, field: str) -> int:
        self.pos = _BODY + ((self.pos - _BODY + 7) & ~7)
        return _U64(self.data, self._need(8, field))[0]

    def octet(self, field: str) -> int:
        return self.data[self._need(1, field)]

    def string(self, field: str) -> str:
        out: list[str] = []
        self.pos = _read_strings(self.data, self.pos, (field,), out)
        return out[0]

    def octets(self, field: str) -> memoryview:
        size = self.uint32(field)
        start = self._need(size, field)
        return self.view[start:start + size]

    def count(self, field: str, bound: int) -> int:
        n = self.uint32(field)
        if n > bound:
            raise ValueError(f'{field}: {n} elements, at most {bound}')
        return n

    def header(self, field: str) -> Header:
        self.pos = (self.pos + 3) & ~3
        stamp = _new(Time, _STAMP(self.data, self._need(8, f'{field}.stamp')))
        return _new(Header, (stamp, self.string(f'{field}.frame_id')))


def read_packet_fields(data: bytes) -> PacketFields | None:
    """The fields of a serialized StreamPacket; None for an encapsulation other than plain CDR.

    ValueError (naming the field) for bytes that are not a StreamPacket of that encoding. `data` is
    bytes (PacketCodec.decode_serialized turns other bytes-likes into bytes before it calls this)."""
    if data[:2] != _CDR_LE:
        return None
    end = len(data)
    if end < _BODY + 8:
        _ends_early('header.stamp', _BODY + 8 - end)
    stamp = _new(Time, _STAMP(data, _BODY))
    fields: list[Any] = []
    pos = _read_strings(data, _BODY + 8, _LEADING_STRINGS, fields)
    fields[0] = _new(Header, (stamp, fields[0]))
    start = ((pos + 3) & ~3) + 4  # payload_bytes: its size, then the bytes
    if start > end:
        _ends_early('payload_bytes', start - end)
    pos = start + _U32(data, start - 4)[0]
    if pos > end:
        _ends_early('payload_bytes', pos - end)
    fields.append(memoryview(data)[start:pos])
    pos = (pos + 3) & ~3
    if pos + 12 <= end and _THREE_U32(data, pos) == (0, 0, 0):  # no image, compressed image, blob ref
        fields += ([], [], [])
        _read_strings(data, pos + 12, ('meta_json',), fields)
    else:
        r = _Reader(data, pos)
        for name, read in (('image', _image), ('compressed_image', _compressed), ('blob_ref', _blob_ref)):
            fields.append([read(r, f'{name}[{i}]') for i in range(r.count(name, 1))])
        fields.append(r.string('meta_json'))
    return _new(PacketFields, fields)


def _image(r: _Reader, field: str) -> ImageFields:
    header = r.header(f'{field}.header')
    height = r.uint32(f'{field}.height')
    width = r.uint32(f'{field}.width')
    encoding = r.string(f'{field}.encoding')
    is_bigendian = r.octet(f'{field}.is_bigendian')
    step = r.uint32(f'{field}.step')
    return _new(ImageFields, (header, height, width, encoding, is_bigendian, step, r.octets(f'{field}.data')))


def _compressed(r: _Reader, field: str) -> CompressedImageFields:
    header = r.header(f'{field}.header')
    return _new(CompressedImageFields, (header, r.string(f'{field}.format'), r.octets(f'{field}.data')))


def _blob_ref(r: _Reader, field: str) -> BlobRefFields:
    scheme = r.string(f'{field}.scheme')
    path = r.string(f'{field}.path')
    content_type = r.string(f'{field}.content_type')
    size_bytes = r.uint64(f'{field}.size_bytes')
    return _new(BlobRefFields, (scheme, path, content_type, size_bytes, r.string(f'{field}.sha256')))
