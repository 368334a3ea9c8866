"""BytesToFileRefNode / FileRefToBytesNode: raw bytes <-> portable file references.

Raw bytes cannot leave their process (profile inproc_any); a `bytes_ref` packet can go anywhere
(ref_portable). The file handling — atomic writes, containment under the directory, size and
sha256 checks on read — is the codec's FileBlobStore (codec/blob_ref.py); these nodes adapt it
to the upstream node configs. The writer keeps its directory bounded (`max_files`, `max_bytes`:
the oldest blobs deleted first, counted as `files_deleted_total`; observability/file_retention.py):
a reference older than that retention points at nothing, as a rotated-away log line would.
"""
from __future__ import annotations

from pathlib import Path

from schnitzel_stream_ros.codec.blob_ref import BlobRef, FileBlobStore
from schnitzel_stream_ros.observability.file_retention import FileRetention
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port

_DEFAULT_CONTENT_TYPE = 'application/octet-stream'


def _as_bytes(node_id: str, packet: StreamPacket) -> bytes:
    data = packet.payload
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f'node {node_id!r}: expected a bytes payload, got {type(data).__name__} '
                        f'(kind {packet.kind!r}, source_id {packet.source_id!r})')
    return data


class BytesToFileRefNode(Plugin):
    """Write a `bytes` payload under `dir` and emit a `bytes_ref` packet pointing at it."""

    INPUTS = (Port('in', frozenset({Kind.BYTES}), PayloadProfile.INPROC_ANY),)
    OUTPUTS = (Port('out', frozenset({Kind.BYTES_REF}), PayloadProfile.REF_PORTABLE),)
    PARAMS = (
        Param('dir', str, description='directory of the blobs (created); ref paths are relative to it'),
        Param('filename', str, '{source_id}/{packet_id}.bin',
              'blob path under dir; fields: source_id, packet_id'),
        Param('compute_sha256', bool, True,
              'upstream key; the v1 ref always carries sha256 (readers verify it), so false is ignored'),
        Param('content_type', str, None,
              'content type recorded in the ref (default application/octet-stream)'),
        Param('max_files', int, 10_000, 'blobs kept under dir, the oldest deleted first (0: no limit)',
              min=0),
        Param('max_bytes', int, 1 << 30, 'bytes kept under dir, the oldest blobs deleted first (0: no limit)',
              min=0),
    )

    def setup(self) -> None:
        Path(self.params['dir']).mkdir(parents=True, exist_ok=True)
        self._store = FileBlobStore(self.params['dir'])
        self._retention = FileRetention(self._store.root, max_files=self.params['max_files'],
                                        max_bytes=self.params['max_bytes'])
        if self._retention.deleted:
            self.count('files_deleted_total', self._retention.deleted)

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        data = _as_bytes(self.node_id, packet)
        name = self.params['filename'].format(source_id=packet.source_id, packet_id=packet.packet_id)
        name = name.lstrip('/\\')
        try:
            ref = self._store.put(data, self.params['content_type'] or _DEFAULT_CONTENT_TYPE, name=name)
        except ValueError as exc:
            raise ValueError(f'node {self.node_id!r}: blob path {name!r} refused: {exc}') from exc
        self.count('written_total')
        deleted = self._retention.added(self._store.root / ref.path, ref.size_bytes)
        if deleted:
            self.count('files_deleted_total', deleted)
        return packet.derive(kind=Kind.BYTES_REF, payload=ref.to_payload())


class FileRefToBytesNode(Plugin):
    """Read the file a `bytes_ref` packet points at (size and sha256 verified) and emit its bytes."""

    INPUTS = (Port('in', frozenset({Kind.BYTES_REF}), PayloadProfile.REF_PORTABLE),)
    OUTPUTS = (Port('out', frozenset({Kind.BYTES}), PayloadProfile.INPROC_ANY),)
    PARAMS = (
        Param('output_kind', str, Kind.BYTES, 'kind of the emitted packets'),
        Param('dir', str, None, 'blob directory; refs must lie inside it. Unset: only absolute refs '
              '(upstream behaviour)'),
    )

    def setup(self) -> None:
        self._store = FileBlobStore(self.params['dir'] or '/')

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        where = f'node {self.node_id!r} (source_id {packet.source_id!r})'
        try:
            ref = BlobRef.from_payload(packet.payload)
            if not self.params['dir'] and not Path(ref.path).is_absolute():
                raise ValueError(
                    f'payload.ref.path: {ref.path!r} is relative: set config.dir to the blob directory'
                )
            data = self._store.get(ref)
        except (TypeError, ValueError, OSError) as exc:
            raise type(exc)(f'{where}: {exc}') from exc
        self.count('read_total')
        return packet.derive(kind=self.params['output_kind'], payload=data)
