"""Building the messages the packet codec sends (StreamPacket, Header, Time, Image), without the
generated constructors' cost.

Why: a generated rosidl message constructor evaluates every default eagerly (StreamPacket() builds a
Header, which builds a Time, then ours replaces both), reads the environment's check-fields flag and
goes through a property setter per field: about 9 µs for one StreamPacket message, more than the rest
of encoding a small packet. The codec has already validated every value it sets, so here the
message's slots are filled directly: one object, one assignment per field.

That relies on the layout rosidl_generator_py generates (a `_<field>` slot per field plus
`_check_fields`). It is verified once, at import, against the generated constructors (same slots,
equal messages, every field readable); if anything differs — another rosidl version — the
generated constructors are used instead (`FAST_BUILDERS` says which), so messages are never wrong,
only slower.
"""

from __future__ import annotations

import array
from typing import Any

from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg

_IMAGE_FIELDS = ('header', 'height', 'width', 'encoding', 'is_bigendian', 'step', 'data')
_PACKET_FIELDS = (
    'header', 'packet_id', 'kind', 'source_id', 'idempotency_key', 'payload_encoding', 'payload_json',
    'content_type', 'payload_bytes', 'image', 'compressed_image', 'blob_ref', 'meta_json',
)


def _fast_time(sec: int, nanosec: int) -> Time:
    msg = Time.__new__(Time)
    msg._check_fields = False
    msg._sec = sec
    msg._nanosec = nanosec
    return msg


def _fast_header(stamp: Time, frame_id: str) -> Header:
    msg = Header.__new__(Header)
    msg._check_fields = False
    msg._stamp = stamp
    msg._frame_id = frame_id
    return msg


def _fast_packet_msg(
    header: Header, packet_id: str, kind: str, source_id: str, idempotency_key: str, meta_json: str,
    payload_encoding: str,
) -> StreamPacketMsg:
    """A StreamPacket message with the common fields set and every payload field empty."""
    msg = StreamPacketMsg.__new__(StreamPacketMsg)
    msg._check_fields = False
    msg._header = header
    msg._packet_id = packet_id
    msg._kind = kind
    msg._source_id = source_id
    msg._idempotency_key = idempotency_key
    msg._payload_encoding = payload_encoding
    msg._payload_json = ''
    msg._content_type = ''
    msg._payload_bytes = array.array('B')
    msg._image = []
    msg._compressed_image = []
    msg._blob_ref = []
    msg._meta_json = meta_json
    return msg


def _fast_image(
    header: Header, height: int, width: int, encoding: str, is_bigendian: int, step: int,
    data: array.array | memoryview,
) -> Image:
    msg = Image.__new__(Image)
    msg._check_fields = False
    msg._header = header
    msg._height = height
    msg._width = width
    msg._encoding = encoding
    msg._is_bigendian = is_bigendian
    msg._step = step
    msg._data = data
    return msg


def _generated_image(
    header: Header, height: int, width: int, encoding: str, is_bigendian: int, step: int,
    data: array.array | memoryview,
) -> Image:
    if not isinstance(data, array.array):  # the checking setter would test a buffer value by value
        copied = array.array('B')
        copied.frombytes(data)
        data = copied
    msg = Image(check_fields=True)  # its data setter takes an array.array('B') as is (no copy)
    msg.header = header
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = is_bigendian
    msg.step = step
    msg.data = data
    return msg


def _generated_time(sec: int, nanosec: int) -> Time:
    return Time(sec=sec, nanosec=nanosec)


def _generated_header(stamp: Time, frame_id: str) -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


def _generated_packet_msg(
    header: Header, packet_id: str, kind: str, source_id: str, idempotency_key: str, meta_json: str,
    payload_encoding: str,
) -> StreamPacketMsg:
    # field checks off: every value is validated by the codec (the checking setters cost ~20 µs)
    msg = StreamPacketMsg(check_fields=False)
    msg.header = header
    msg.packet_id = packet_id
    msg.kind = kind
    msg.source_id = source_id
    msg.idempotency_key = idempotency_key
    msg.meta_json = meta_json
    msg.payload_encoding = payload_encoding
    return msg


def _slots_are(cls: type, fields: tuple[str, ...]) -> bool:
    return sorted(getattr(cls, '__slots__', ())) == sorted(['_check_fields', *(f'_{f}' for f in fields)])


def _verified() -> bool:
    """The slot-filling builders give what the generated constructors give (see the module doc)."""
    try:
        if not (
            _slots_are(Time, ('sec', 'nanosec'))
            and _slots_are(Header, ('stamp', 'frame_id'))
            and _slots_are(StreamPacketMsg, _PACKET_FIELDS)
            and _slots_are(Image, _IMAGE_FIELDS)
        ):
            return False
        args: tuple[Any, ...] = ('id-1', 'raw', 'src', 'key', '{"a":1}', 'json')
        fast = _fast_packet_msg(_fast_header(_fast_time(12, 345), 'src'), *args)
        generated = _generated_packet_msg(_generated_header(_generated_time(12, 345), 'src'), *args)
        fields_readable = all(getattr(fast, f) is not None for f in _PACKET_FIELDS)
        image_args: tuple[Any, ...] = (2, 3, 'mono8', 0, 3, array.array('B', range(6)))
        fast_image = _fast_image(_fast_header(_fast_time(1, 2), 'cam'), *image_args)
        generated_image = _generated_image(_generated_header(_generated_time(1, 2), 'cam'), *image_args)
        image_same = fast_image == generated_image and repr(fast_image) == repr(generated_image)
        return fields_readable and image_same and fast == generated and repr(fast) == repr(generated)
    except Exception:  # any surprise in the generated classes: use them as they are
        return False


FAST_BUILDERS = _verified()
#: Time(sec, nanosec), Header(stamp, frame_id) and StreamPacket message builders for the codec
new_time = _fast_time if FAST_BUILDERS else _generated_time
new_header = _fast_header if FAST_BUILDERS else _generated_header
new_packet_msg = _fast_packet_msg if FAST_BUILDERS else _generated_packet_msg
#: sensor_msgs/Image(header, height, width, encoding, is_bigendian, step, data): data is an
#: array.array('B') or a flat memoryview of bytes (kept as is: publishing reads it as a buffer)
new_image = _fast_image if FAST_BUILDERS else _generated_image

__all__ = ['FAST_BUILDERS', 'new_header', 'new_image', 'new_packet_msg', 'new_time']
