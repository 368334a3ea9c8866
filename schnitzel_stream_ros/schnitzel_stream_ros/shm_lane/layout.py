"""What one frame-lane sample holds, and the checks a reader makes before it trusts one.

A sample is one iceoryx2 `Slice[c_uint8]` plus a fixed user header (`FrameHeader`):

    [ packet JSON (meta_len bytes) | padding | pixels (pixel_len bytes, at pixel_off) ]

A frame the writer copies in starts at the next multiple of 64 after the JSON; a frame a source wrote
straight into a loaned sample (lane.FrameLaneWriter.loan_frame) starts at `LOAN_META_RESERVE`, the
room kept in front of it for the JSON. The packet JSON carries what the StreamPacket message would
carry besides the pixels (packet_id, ts, kind, source_id, meta). Everything in a sample is hostile
input to the reader: the header is checked against the slice it came with (magic, version, sizes,
shape × dtype = pixel_len, pixel_off), the JSON is bounded (`MAX_META_BYTES`), and a sample failing
any check is refused and counted, never read.
"""
from __future__ import annotations

import ctypes
import json
import struct
from typing import Any, NamedTuple

import numpy as np

MAGIC = 0x53534C31  # 'SSL1'
VERSION = 2  # 2: pixel_off in the header (frames written in place by their source)
#: Bound of a sample's packet JSON (the StreamPacket meta limit is 64 KiB; ids and ts fit beside it).
MAX_META_BYTES = 80 * 1024
PIXEL_ALIGN = 64
#: Room for the packet JSON in front of a frame written in place (a larger JSON: the frame is copied).
LOAN_META_RESERVE = 4096
#: Largest frame a lane accepts (8K RGB is 99.5 MB): a bound for the hostile-header check.
MAX_PIXEL_BYTES = 256 * 1024 * 1024

DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t) for t in ('uint8', 'uint16', 'int16', 'float32', 'int8',
                                                           'int32', 'float64'))
DTYPE_CODES = {dt: code for code, dt in enumerate(DTYPES)}
TYPESTRS = tuple(dt.str for dt in DTYPES)  # numpy's array-interface names of DTYPES, made once


class FrameHeader(ctypes.Structure):
    """iceoryx2 user header of one frame sample (fixed size, shared-memory compatible)."""

    _fields_ = [
        ('magic', ctypes.c_uint32),
        ('version', ctypes.c_uint16),
        ('dtype', ctypes.c_uint16),
        ('height', ctypes.c_uint32),
        ('width', ctypes.c_uint32),
        ('channels', ctypes.c_uint32),
        ('meta_len', ctypes.c_uint32),
        ('pixel_off', ctypes.c_uint32),  # where the pixels start in the slice (>= meta_len, aligned)
        ('_reserved', ctypes.c_uint32),
        ('pixel_len', ctypes.c_uint64),
        ('seq', ctypes.c_uint64),  # per writer incarnation, from 0; gaps at a reader = frames it missed
        ('epoch', ctypes.c_uint64),  # random per writer incarnation: a restarted producer is a new one
        ('t_send_ns', ctypes.c_uint64),  # CLOCK_MONOTONIC when the sample was sent (latency on one host)
    ]


#: The header's bytes, packed and unpacked in one call each: a field at a time through ctypes cost
#: ~13 attribute calls per frame on each side (measured, issue 23). Same layout as FrameHeader.
HEADER = struct.Struct('<IHHIIIIIIQQQQ')
assert HEADER.size == ctypes.sizeof(FrameHeader)
#: The header's bytes at an address (a ctypes view: no foreign call, so the GIL stays held).
HEADER_BYTES = ctypes.c_char * HEADER.size


class Header(NamedTuple):
    """A sample's header as read once (`read_header`), the fields of FrameHeader in order."""

    magic: int
    version: int
    dtype: int
    height: int
    width: int
    channels: int
    meta_len: int
    pixel_off: int
    reserved: int
    pixel_len: int
    seq: int
    epoch: int
    t_send_ns: int


def read_header(address: int) -> Header:
    """The header at `address` (a sample's user header), copied out of shared memory at once."""
    return tuple.__new__(Header, HEADER.unpack_from(HEADER_BYTES.from_address(address)))  # _make, less a call


def write_header(address: int, dtype: int, height: int, width: int, channels: int, meta_len: int,
                 pixel_off: int, pixel_len: int, seq: int, epoch: int, t_send_ns: int) -> None:
    HEADER.pack_into(HEADER_BYTES.from_address(address), 0, MAGIC, VERSION, dtype, height, width, channels,
                     meta_len, pixel_off, 0, pixel_len, seq, epoch, t_send_ns)


def pixel_offset(meta_len: int) -> int:
    return (meta_len + PIXEL_ALIGN - 1) // PIXEL_ALIGN * PIXEL_ALIGN


def frame_shape(frame: np.ndarray) -> tuple[int, int, int]:
    """(height, width, channels) of a frame the lane can carry, channels 0 for a 2-D frame (so
    (h, w) and (h, w, 1) arrive as they were sent); ValueError otherwise."""
    if frame.ndim == 2:
        return frame.shape[0], frame.shape[1], 0
    if frame.ndim == 3:
        return frame.shape[0], frame.shape[1], frame.shape[2]
    raise ValueError(f'a frame is a 2-D or 3-D array, got {frame.ndim} dimensions')


#: json's C encoder, made once: `JSONEncoder.encode` builds a new one on every call (~1 µs of a frame's
#: budget, measured: issue 23). Same output as json.dumps(..., separators=(',', ':')), and the same
#: TypeError for a value JSON cannot hold (meta is JSON by contract). Without a markers dict: the C
#: encoder leaves the ids of an encoding that failed in it, and a later object at a reused address
#: would be refused as circular; a circular value hits the recursion limit instead (a refusal too).
_MAKE_ENCODER = getattr(json.encoder, 'c_make_encoder', None)
_ENCODE = (
    _MAKE_ENCODER(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ':', ',',
                  False, False, True)
    if _MAKE_ENCODER is not None
    else json.JSONEncoder(separators=(',', ':')).iterencode
)


def encode_meta(packet: Any) -> bytes:
    fields = {'packet_id': packet.packet_id, 'ts': packet.ts, 'kind': packet.kind,
              'source_id': packet.source_id, 'meta': packet.meta}
    try:
        text = ''.join(_ENCODE(fields, 0)).encode()
    except RecursionError as exc:
        raise ValueError('packet meta is circular or nested too deeply for JSON') from exc
    if len(text) > MAX_META_BYTES:
        raise ValueError(f'packet meta is {len(text)} bytes as JSON, over the lane limit {MAX_META_BYTES}')
    return text


def check_header(header: Header | FrameHeader, slice_len: int) -> str:
    """'' when the header describes a sample that fits its slice; else why it is refused."""
    if header.magic != MAGIC or header.version != VERSION:
        return 'not a frame-lane sample (magic/version)'
    if header.dtype >= len(DTYPES):
        return f'unknown dtype code {header.dtype}'
    if header.meta_len > MAX_META_BYTES:
        return f'meta_len {header.meta_len} over the limit {MAX_META_BYTES}'
    if header.pixel_len > MAX_PIXEL_BYTES:
        return f'pixel_len {header.pixel_len} over the limit {MAX_PIXEL_BYTES}'
    expected = header.height * header.width * max(header.channels, 1) * DTYPES[header.dtype].itemsize
    if expected != header.pixel_len:
        shape = f'{header.height}x{header.width}x{header.channels}'
        return f'shape {shape} does not match pixel_len {header.pixel_len}'
    if header.pixel_off < header.meta_len or header.pixel_off % PIXEL_ALIGN:
        return f'pixel_off {header.pixel_off} overlaps the JSON or is not aligned'
    if header.pixel_off + header.pixel_len > slice_len:
        return f'sample of {slice_len} bytes is shorter than its header says'
    return ''


#: json's scanner, called directly: json.loads adds a detect-encoding, a decoder call and a whitespace
#: regex around it (~1 µs of a frame, measured: issue 23). Our writer's JSON has no whitespace.
_SCAN = json.JSONDecoder().scan_once


def decode_meta(raw: bytes) -> dict[str, Any]:
    """The packet fields of a sample; ValueError for anything but the expected object."""
    try:
        try:
            text = raw.decode()
            data, end = _SCAN(text, 0)
            whole = end == len(text)
        except (UnicodeDecodeError, StopIteration):  # StopIteration: no JSON value at the start
            whole = False
        if not whole:  # whitespace, trailing data, other encodings: json's own rules decide (ValueError)
            data = json.loads(raw)
    except RecursionError as exc:  # nesting deeper than the interpreter's stack: hostile, refused
        raise ValueError('packet JSON is nested too deeply') from exc
    if not isinstance(data, dict):
        raise ValueError('packet JSON is not an object')
    for key in ('packet_id', 'ts', 'kind', 'source_id'):
        if not isinstance(data.get(key), str):
            raise ValueError(f'packet JSON: {key} is not a string')
    if not isinstance(data.get('meta', {}), dict):
        raise ValueError('packet JSON: meta is not an object')
    return data
