"""Writing ROS 2 messages to MCAP the way ros2 bag does (profile `ros2`, `ros2msg` schemas, CDR).

Messages arrive already serialized (CDR, exactly the bytes DDS carried — what rosbag2 stores), so
writing is a copy into the current chunk. One schema per message type (named `pkg/msg/Type`,
complete definition text from msg_definitions), one channel per topic.

Durability: chunks are written to the file as they fill and at least every `flush_sec`, so a
recorder that is killed loses at most the last chunk; a clean close writes the summary (index,
statistics) that seeking readers use. Size: `max_bytes` bounds each file; the caller decides what
happens when a file is full (stop, or rotate to the next file).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mcap.writer import CompressionType, Writer

from schnitzel_stream_ros.recording.msg_definitions import full_definition

PROFILE = 'ros2'
SCHEMA_ENCODING = 'ros2msg'
MESSAGE_ENCODING = 'cdr'
LIBRARY = 'schnitzel_stream_ros record'
COMPRESSIONS = {'none': CompressionType.NONE, 'lz4': CompressionType.LZ4, 'zstd': CompressionType.ZSTD}
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_FLUSH_SEC = 1.0


@dataclass
class McapFileWriter:
    """One open MCAP file; `write()` messages of registered topics, `close()` finishes the summary."""

    path: Path
    compression: str = 'zstd'
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    flush_sec: float = DEFAULT_FLUSH_SEC
    bytes_written: int = 0
    messages_written: int = 0
    _stream: BinaryIO | None = None
    _writer: Writer | None = None
    _schemas: dict[str, int] = field(default_factory=dict)
    _channels: dict[str, int] = field(default_factory=dict)
    _sequence: dict[int, int] = field(default_factory=dict)
    _last_flush: float = 0.0

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f'compression: {self.compression!r} is not one of {sorted(COMPRESSIONS)}')
        self.path = Path(self.path)
        self._stream = open(self.path, 'wb')  # noqa: SIM115 - closed in close()
        self._writer = Writer(self._stream, chunk_size=self.chunk_bytes,
                              compression=COMPRESSIONS[self.compression])
        self._writer.start(profile=PROFILE, library=LIBRARY)
        self._last_flush = time.monotonic()

    def add_topic(self, topic: str, type_name: str) -> None:
        """Register a topic and its message type (idempotent for the same pair)."""
        assert self._writer is not None
        if topic in self._channels:
            return
        schema_id = self._schemas.get(type_name)
        if schema_id is None:
            schema_id = self._writer.register_schema(
                name=type_name, encoding=SCHEMA_ENCODING, data=full_definition(type_name).encode())
            self._schemas[type_name] = schema_id
        self._channels[topic] = self._writer.register_channel(
            topic=topic, message_encoding=MESSAGE_ENCODING, schema_id=schema_id)

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int) -> None:
        """Append one serialized message; flushes the chunk when `flush_sec` has passed."""
        assert self._writer is not None and self._stream is not None
        channel_id = self._channels[topic]
        sequence = self._sequence.get(channel_id, 0)
        self._sequence[channel_id] = sequence + 1
        self._writer.add_message(channel_id, log_time=log_time_ns, data=data,
                                 publish_time=publish_time_ns, sequence=sequence & 0xFFFFFFFF)
        self.messages_written += 1
        self.bytes_written += len(data) + 31  # record header + message fields (before compression)
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush when `flush_sec` passed since the last flush (the writer calls this also when idle)."""
        if time.monotonic() - self._last_flush >= self.flush_sec:
            self.flush()

    def flush(self) -> None:
        """Close the chunk in progress and hand everything to the OS (survives a kill of this process)."""
        if self._writer is not None:
            self._writer.flush()
            self._last_flush = time.monotonic()

    def size_on_disk(self) -> int:
        return self._stream.tell() if self._stream is not None else self.path.stat().st_size

    def close(self) -> None:
        """Write the summary and footer; the file is then complete for every MCAP reader."""
        if self._writer is not None:
            try:
                self._writer.finish()
            finally:
                self._writer = None
                if self._stream is not None:
                    self._stream.close()
                    self._stream = None

    def __enter__(self) -> McapFileWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
