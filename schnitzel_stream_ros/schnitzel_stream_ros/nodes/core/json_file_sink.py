"""JsonFileSink: one JSON file per packet in a directory (upstream file_sink node, same keys).

File names come from a template; the values put into it (source_id, kind, ts...) are made safe
for a file name first, so a rendered name can never leave the directory (contract rule).

Bounded: at most `max_files` files (and `max_bytes`) stay in the directory, the oldest deleted first
(observability/file_retention.py), counted as `files_deleted_total`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.nodes.core.packet_record import BODY_CHOICES, packet_record, strict_json
from schnitzel_stream_ros.observability.file_retention import FileRetention
from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

_UNSAFE = re.compile(r'[^A-Za-z0-9._-]')
_SAMPLE = {'seq': 0, 'packet_id': 'id', 'source_id': 'cam', 'kind': 'event', 'ts': '2026-01-01T00-00-00Z'}


def _safe(value: str) -> str:
    text = _UNSAFE.sub('_', value)
    return '_' + text if text.startswith('.') else text


def render_filename(template: str, **fields: Any) -> str:
    """The file name for one packet; ValueError when the template itself names a path."""
    name = template.format(**{k: _safe(v) if isinstance(v, str) else v for k, v in fields.items()})
    if not name or name in ('.', '..') or '/' in name or '\\' in name or '\x00' in name:
        raise ValueError(f'filename_template renders {name!r}, which is not a plain file name')
    return name


class JsonFileSink(Plugin):
    """Write each packet (or its payload) to its own JSON file; refuses non-JSON payloads by name."""

    ROLE = Role.SINK
    PASSTHROUGH = True
    INPUTS = (Port('in', profile=PayloadProfile.JSON_PORTABLE),)
    OUTPUTS = (Port('out', profile=PayloadProfile.JSON_PORTABLE),)
    PARAMS = (
        Param('dir', str, 'outputs/packets', 'directory of the files (created)'),
        Param('filename_template', str, '{seq:06d}_{source_id}_{kind}.json',
              'file name; fields: seq, packet_id, source_id, kind, ts'),
        Param('body', str, 'payload', 'write the whole packet or only its payload', choices=BODY_CHOICES),
        Param('forward', bool, False,
              'emit the packet (with meta[meta_key] = {path, node_id}) after writing'),
        Param('ensure_ascii', bool, False, 'escape non-ASCII characters'),
        Param('indent', int, 2, 'JSON indentation', min=0, max=16),
        Param('meta_key', str, 'file', 'meta key that records the written file when forwarding'),
        Param('max_files', int, 10_000, 'files kept in dir, the oldest deleted first (0: no limit)', min=0),
        Param('max_bytes', int, 0, 'bytes kept in dir, the oldest files deleted first (0: no limit)', min=0),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        try:
            render_filename(params['filename_template'], **_SAMPLE)
        except (KeyError, IndexError, ValueError) as exc:
            detail = f'unknown field {exc}' if isinstance(exc, KeyError) else str(exc)
            return [f"parameter 'filename_template': {detail} (fields: {', '.join(_SAMPLE)})"]
        return []

    def setup(self) -> None:
        self._dir = Path(self.params['dir'])
        self._dir.mkdir(parents=True, exist_ok=True)
        self._seq = 0
        self._retention = FileRetention(self._dir, max_files=self.params['max_files'],
                                        max_bytes=self.params['max_bytes'])
        if self._retention.deleted:
            self.count('files_deleted_total', self._retention.deleted)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket | None:
        name = render_filename(
            self.params['filename_template'], seq=self._seq, packet_id=packet.packet_id,
            source_id=packet.source_id, kind=packet.kind, ts=packet.ts.replace(':', '-'),
        )
        record = packet_record(packet, self.params['body'])
        text = strict_json(self.node_id, packet, record, ensure_ascii=self.params['ensure_ascii'],
                           indent=self.params['indent'])
        path = self._dir / name
        data = (text + '\n').encode('utf-8')
        path.write_bytes(data)
        self._seq += 1
        self.count('written_total')
        deleted = self._retention.added(path, len(data))
        if deleted:
            self.count('files_deleted_total', deleted)
        if not self.params['forward']:
            return None
        return packet.with_meta(**{self.params['meta_key']: {'path': str(path), 'node_id': self.node_id}})
