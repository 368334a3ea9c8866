"""JsonlSink: append one JSON object per line to a file (upstream file_sink node, same keys).

The file rotates (observability/rotating_file.py): at `max_bytes` (default 64 MiB) or `max_age_sec`
it becomes `<path>.1`, and `keep` old files remain, so a sink on a months-long site stays bounded
(by default 5 × 64 MiB). `max_bytes: 0` with `max_age_sec: 0` appends forever, as upstream did.
"""
from __future__ import annotations

from schnitzel_stream_ros.nodes.core.packet_record import BODY_CHOICES, packet_record, strict_json
from schnitzel_stream_ros.observability.rotating_file import RotatingLines
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
        Param('max_bytes', int, 64 << 20, 'rotate before the file grows past this (0: no limit)', min=0),
        Param('max_age_sec', float, 0.0, 'rotate when the file is older than this (0: no limit)', min=0.0),
        Param('keep', int, 4, 'rotated files kept (<path>.1 is the newest); older ones are deleted', min=0),
    )

    _file: RotatingLines | None = None

    def setup(self) -> None:
        p = self.params
        self._file = RotatingLines(p['path'], max_bytes=p['max_bytes'], max_age_sec=p['max_age_sec'],
                                   keep=p['keep'], flush=p['flush'])

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        assert self._file is not None, 'setup() was not called'
        record = packet_record(packet, self.params['body'])
        line = strict_json(self.node_id, packet, record, ensure_ascii=self.params['ensure_ascii'])
        rotations = self._file.rotations
        self._file.write(line)
        self.count('written_total')
        if self._file.rotations != rotations:
            self.count('rotations_total')
            self.gauge('rotated_files_deleted', self._file.deleted)
        return packet if self.params['forward'] else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
