"""JsonlSink: append one JSON object per line to a file (upstream file_sink node, same keys)."""
from __future__ import annotations

from pathlib import Path
from typing import IO

from schnitzel_stream_ros.nodes.core.packet_record import BODY_CHOICES, packet_record, strict_json
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class JsonlSink(Plugin):
    """Append each packet (or its payload) as a JSON line; refuses non-JSON payloads by name."""

    ROLE = Role.SINK
    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.JSON_PORTABLE),)
    OUTPUTS = (Port('out', profile=PayloadProfile.JSON_PORTABLE),)
    PARAMS = (
        Param('path', str, description='file to append to (parent directories are created)'),
        Param('body', str, 'packet', 'write the whole packet or only its payload', choices=BODY_CHOICES),
        Param('forward', bool, False, 'emit the packet on `out` after writing'),
        Param('ensure_ascii', bool, False, 'escape non-ASCII characters'),
        Param('flush', bool, True, 'flush after every line'),
    )

    _file: IO[str] | None = None

    def setup(self) -> None:
        path = Path(self.params['path'])
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open('a', encoding='utf-8')

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        assert self._file is not None, 'setup() was not called'
        record = packet_record(packet, self.params['body'])
        line = strict_json(self.node_id, packet, record, ensure_ascii=self.params['ensure_ascii'])
        self._file.write(line + '\n')
        if self.params['flush']:
            self._file.flush()
        self.count('written_total')
        return packet if self.params['forward'] else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
