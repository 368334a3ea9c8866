"""Reading MCAP recordings as hostile input: every size bounded before anything is allocated.

A recording may come from anywhere (a colleague, a robot, a crash): a record length, a chunk's
declared uncompressed size or a schema can claim gigabytes. So this reader walks the records
itself — mcap's record classes parse each record from a body already read and bounded — and
decompresses a chunk only after its declared size passed the limit, with an output cap so a chunk
cannot inflate beyond what it declared. Every refusal is one line naming the file and the limit.

Order: messages come in file order (the order the recorder received them), which is what a replay
needs. A file whose writer was killed has no summary and may end inside a record: the messages
before that point are delivered and `truncated` says so.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lz4.frame
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import EndOfFile
from mcap.opcode import Opcode
from mcap.records import Channel, Header, Message, Schema

MAGIC = b'\x89MCAP0\r\n'
_MESSAGE_FIXED_BYTES = 2 + 4 + 8 + 8  # channel id, sequence, log time, publish time


class McapLimitError(ValueError):
    """The file breaks a limit or the format; the message names the file and what was wrong."""


@dataclass(frozen=True)
class McapLimits:
    """Bounds for one recording. Defaults fit hours of several 1080p cameras, not a hostile claim."""

    max_file_bytes: int = 64 * 1024**3
    max_message_bytes: int = 64 * 1024**2
    max_chunk_bytes: int = 512 * 1024**2       # one chunk, compressed or not
    max_schema_bytes: int = 1024**2
    max_channels: int = 4096
    max_messages: int = 100_000_000


@dataclass(frozen=True)
class RecordedMessage:
    topic: str
    type_name: str          # schema name, e.g. sensor_msgs/msg/Image
    log_time_ns: int
    publish_time_ns: int
    data: bytes             # CDR, as carried by DDS


@dataclass
class McapReadStats:
    messages: int = 0
    skipped_topics: int = 0
    truncated: bool = False
    profile: str = ''
    topics_seen: set[str] = field(default_factory=set)


@dataclass
class McapRecordingReader:
    """Iterates the messages of one MCAP file in file order, within `limits`."""

    path: Path
    limits: McapLimits = McapLimits()
    topics: frozenset[str] | None = None       # None: every topic
    stats: McapReadStats = field(default_factory=McapReadStats)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise McapLimitError(f'{self.path}: no such file')
        size = self.path.stat().st_size
        if size > self.limits.max_file_bytes:
            raise McapLimitError(
                f'{self.path}: {size} bytes, over the limit of {self.limits.max_file_bytes} (max_file_bytes)')
        with open(self.path, 'rb') as stream:
            if stream.read(len(MAGIC)) != MAGIC:
                raise McapLimitError(f'{self.path}: not an MCAP file (bad magic)')

    def _fail(self, what: str) -> McapLimitError:
        return McapLimitError(f'{self.path}: {what}')

    def messages(self) -> Iterator[RecordedMessage]:
        self.stats = McapReadStats()
        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, int]] = {}
        with open(self.path, 'rb') as stream:
            stream.read(len(MAGIC))
            while True:
                head = stream.read(9)
                if len(head) < 9:
                    self.stats.truncated = True  # no footer: the writer did not finish
                    return
                opcode, length = struct.unpack('<BQ', head)
                limit, limit_name = self._record_limit(opcode)
                if length > limit:
                    raise self._fail(f'record (opcode 0x{opcode:02x}) at offset {stream.tell() - 9} is '
                                     f'{length} bytes, over the limit of {limit} ({limit_name})')
                if opcode not in _READ_OPCODES:
                    stream.seek(length, io.SEEK_CUR)
                    if opcode == Opcode.FOOTER:
                        return
                    continue
                body = stream.read(length)
                if len(body) < length:
                    self.stats.truncated = True
                    return
                if opcode == Opcode.CHUNK:
                    yield from self._chunk_messages(body, schemas, channels)
                else:
                    yield from self._record(opcode, body, schemas, channels)

    def _record_limit(self, opcode: int) -> tuple[int, str]:
        """The largest record body accepted for an opcode, and the limit it comes from."""
        if opcode == Opcode.SCHEMA:
            return self.limits.max_schema_bytes + 1024, 'max_schema_bytes + its fixed fields'
        if opcode == Opcode.MESSAGE:
            limit = self.limits.max_message_bytes + _MESSAGE_FIXED_BYTES
            return limit, 'max_message_bytes + its fixed fields'
        return self.limits.max_chunk_bytes, 'max_chunk_bytes'

    def _record(self, opcode: int, body: bytes, schemas: dict[int, str],
                channels: dict[int, tuple[str, int]]) -> Iterator[RecordedMessage]:
        reader = ReadDataStream(io.BytesIO(body))
        try:
            if opcode == Opcode.HEADER:
                self.stats.profile = Header.read(reader).profile
            elif opcode == Opcode.SCHEMA:
                schema = Schema.read(reader)
                if len(schema.data) > self.limits.max_schema_bytes:
                    raise self._fail(f'schema {schema.name!r} is {len(schema.data)} bytes, over the limit '
                                     f'of {self.limits.max_schema_bytes} (max_schema_bytes)')
                schemas[schema.id] = schema.name
            elif opcode == Opcode.CHANNEL:
                channel = Channel.read(reader)
                if channel.id not in channels and len(channels) >= self.limits.max_channels:
                    raise self._fail(f'more than {self.limits.max_channels} channels (max_channels)')
                channels[channel.id] = (channel.topic, channel.schema_id)
                self.stats.topics_seen.add(channel.topic)
            elif opcode == Opcode.MESSAGE:
                if len(body) < _MESSAGE_FIXED_BYTES:
                    raise self._fail(f'message record of {len(body)} bytes is shorter than its fixed fields')
                message = Message.read(reader, len(body))
                yield from self._message(message.channel_id, message.log_time, message.publish_time,
                                         message.data, schemas, channels)
        except EndOfFile:
            raise self._fail(f'record (opcode 0x{opcode:02x}) ends before its fields') from None
        except UnicodeDecodeError:
            raise self._fail(f'record (opcode 0x{opcode:02x}) holds text that is not UTF-8') from None

    def _message(self, channel_id: int, log_time: int, publish_time: int, data: bytes | memoryview,
                 schemas: dict[int, str], channels: dict[int, tuple[str, int]]) -> Iterator[RecordedMessage]:
        if len(data) > self.limits.max_message_bytes:
            raise self._fail(f'message {self.stats.messages} is {len(data)} bytes, over the limit '
                             f'of {self.limits.max_message_bytes} (max_message_bytes)')
        if channel_id not in channels:
            raise self._fail(f'message {self.stats.messages} names channel {channel_id}, '
                             'which was not declared before it')
        topic, schema_id = channels[channel_id]
        if self.topics is not None and topic not in self.topics:
            self.stats.skipped_topics += 1
            return
        if self.stats.messages >= self.limits.max_messages:
            raise self._fail(f'more than {self.limits.max_messages} messages (max_messages)')
        self.stats.messages += 1
        yield RecordedMessage(topic, schemas.get(schema_id, ''), log_time, publish_time, bytes(data))

    def _chunk_messages(self, body: bytes, schemas: dict[int, str],
                        channels: dict[int, tuple[str, int]]) -> Iterator[RecordedMessage]:
        """Messages of one chunk. Parsed with offsets into the (bounded) decompressed buffer, so a
        frame is copied once — into the message's own bytes — not once per parsing layer."""
        view = memoryview(body)
        try:
            uncompressed_size, = struct.unpack_from('<Q', view, 16)
            compression_length, = struct.unpack_from('<I', view, 28)
            compression = bytes(view[32:32 + compression_length]).decode()
            data_length, = struct.unpack_from('<Q', view, 32 + compression_length)
        except (struct.error, UnicodeDecodeError):
            raise self._fail('chunk record ends before its fields') from None
        start = 40 + compression_length
        if data_length > len(view) - start:
            raise self._fail(f'chunk claims {data_length} bytes of data, more than the record holds')
        if uncompressed_size > self.limits.max_chunk_bytes:
            raise self._fail(f'chunk declares {uncompressed_size} bytes uncompressed, over the limit '
                             f'of {self.limits.max_chunk_bytes} (max_chunk_bytes)')
        data = memoryview(self._decompress(compression, view[start:start + data_length], uncompressed_size))
        offset = 0
        while offset < len(data):
            if len(data) - offset < 9:
                raise self._fail('chunk ends inside a record header')
            opcode, length = struct.unpack_from('<BQ', data, offset)
            offset += 9
            if length > len(data) - offset:
                raise self._fail(f'record (opcode 0x{opcode:02x}) in a chunk claims {length} bytes, '
                                 f'more than the chunk holds')
            if opcode == Opcode.MESSAGE:
                if length < _MESSAGE_FIXED_BYTES:
                    raise self._fail(f'message record of {length} bytes is shorter than its fixed fields')
                channel_id, _sequence, log_time, publish_time = struct.unpack_from('<HIQQ', data, offset)
                payload = data[offset + _MESSAGE_FIXED_BYTES:offset + length]
                yield from self._message(channel_id, log_time, publish_time, payload, schemas, channels)
            elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL):
                yield from self._record(opcode, bytes(data[offset:offset + length]), schemas, channels)
            offset += length

    def _decompress(self, compression: str, data: memoryview, size: int) -> bytes | memoryview:
        """The chunk's records; never more than the declared (already bounded) size is produced."""
        try:
            if compression == '':
                out: bytes | memoryview = data
            elif compression == 'zstd':
                declared = zstandard.frame_content_size(data)
                if 0 <= declared <= size:  # one allocation of a size already checked
                    out = zstandard.ZstdDecompressor().decompress(data)
                else:  # no size in the frame (or a larger one): decompress at most size + 1 bytes
                    out = _bounded_zstd(bytes(data), size + 1)
            elif compression == 'lz4':
                decompressor = lz4.frame.LZ4FrameDecompressor()
                out = decompressor.decompress(bytes(data), max_length=size + 1)
                if len(out) <= size and not decompressor.eof:
                    raise self._fail('lz4 chunk ends before its frame does')
            else:
                raise self._fail(f'chunk compression {compression!r} is not none, lz4 or zstd')
        except (zstandard.ZstdError, RuntimeError) as exc:
            raise self._fail(f'chunk does not decompress: {exc}') from None
        if len(out) > size:
            raise self._fail(f'chunk inflates beyond its declared {size} bytes')
        if len(out) != size:
            raise self._fail(f'chunk holds {len(out)} bytes, but declares {size}')
        return out


def _bounded_zstd(data: bytes, cap: int) -> bytes:
    """Decompress at most `cap` bytes (a zstd frame may claim or produce far more)."""
    parts: list[bytes] = []
    got = 0
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
        while got < cap:
            part = reader.read(min(cap - got, 1 << 20))
            if not part:
                break
            parts.append(part)
            got += len(part)
    return b''.join(parts)


_READ_OPCODES = frozenset({Opcode.HEADER, Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE, Opcode.CHUNK})
