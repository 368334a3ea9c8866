"""Blob references: a packet that points at stored bytes instead of carrying them (ref_portable).

Contract v1 payload of kind `bytes_ref`: `{"ref": {"scheme": "file", "path", "content_type",
"size_bytes", "sha256"}}`. The reference is only as good as the checks around it:
- a path never leaves its store's root: `..` components are refused everywhere, and a store
  resolves symlinks before it checks containment, so a ref cannot be used to read /etc/…;
- size and sha256 are verified when the bytes are read, so a truncated or replaced file is an
  error, not silently different data.
Paths written by `FileBlobStore.put` are relative to the root (portable between hosts that mount
the same store elsewhere). Absolute paths, which upstream nodes may write, are accepted but can
only be read through a store whose root contains them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from schnitzel_stream_msgs.msg import BlobRef as BlobRefMsg
from schnitzel_stream_ros.codec.json_values import check_ros_string

FILE_SCHEME = 'file'
_SHA256_HEX = re.compile(r'[0-9a-f]{64}')
_REF_KEYS = frozenset({'scheme', 'path', 'content_type', 'size_bytes', 'sha256'})
_UINT64_MAX = 2**64 - 1


def check_ref_path(path: object, field: str) -> str:
    """A blob path: non-empty text without NUL and without `..` components."""
    if not isinstance(path, str):
        raise TypeError(f'{field}: expected str, got {type(path).__name__}')
    if not path or '\x00' in path:
        raise ValueError(f'{field}: must be a non-empty path without NUL characters')
    check_ros_string(path, field)
    if '..' in PurePosixPath(path.replace('\\', '/')).parts:
        raise ValueError(f'{field}: {path!r} escapes its root (".." is not allowed in blob paths)')
    return path


@dataclass(frozen=True, slots=True)
class BlobRef:
    """One reference to stored bytes (validated on construction)."""

    path: str
    content_type: str
    size_bytes: int
    sha256: str
    scheme: str = FILE_SCHEME

    def __post_init__(self) -> None:
        self.validate('payload.ref')

    def validate(self, field: str) -> None:
        if self.scheme != FILE_SCHEME:
            raise ValueError(f'{field}.scheme: {self.scheme!r} is not supported (contract v1 knows "file")')
        check_ref_path(self.path, f'{field}.path')
        if not isinstance(self.content_type, str):
            raise TypeError(f'{field}.content_type: expected str, got {type(self.content_type).__name__}')
        check_ros_string(self.content_type, f'{field}.content_type')
        if type(self.size_bytes) is not int or not 0 <= self.size_bytes <= _UINT64_MAX:
            raise ValueError(f'{field}.size_bytes: expected an int in 0..2**64-1, got {self.size_bytes!r}')
        if not isinstance(self.sha256, str) or not _SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f'{field}.sha256: expected 64 lowercase hex digits, got {self.sha256!r}')

    @classmethod
    def from_payload(cls, payload: object, field: str = 'payload') -> BlobRef:
        """Read the contract's `{"ref": {...}}` payload; exactly those keys, each checked."""
        if not isinstance(payload, Mapping) or set(payload) != {'ref'}:
            raise ValueError(f'{field}: a bytes_ref payload is {{"ref": {{...}}}} and nothing else')
        ref = payload['ref']
        if not isinstance(ref, Mapping):
            raise TypeError(f'{field}.ref: expected an object, got {type(ref).__name__}')
        missing, extra = _REF_KEYS - set(ref), set(ref) - _REF_KEYS
        if missing or extra:
            raise ValueError(
                f'{field}.ref: keys must be {", ".join(sorted(_REF_KEYS))}'
                + (f'; missing {", ".join(sorted(missing))}' if missing else '')
                + (f'; unexpected {", ".join(sorted(map(str, extra)))}' if extra else '')
            )
        try:
            return cls(ref['path'], ref['content_type'], ref['size_bytes'], ref['sha256'], ref['scheme'])
        except (TypeError, ValueError) as exc:
            raise type(exc)(str(exc).replace('payload.ref', f'{field}.ref', 1)) from None

    def to_payload(self) -> dict[str, Any]:
        return {
            'ref': {
                'scheme': self.scheme,
                'path': self.path,
                'content_type': self.content_type,
                'size_bytes': self.size_bytes,
                'sha256': self.sha256,
            }
        }

    def to_msg(self) -> BlobRefMsg:
        return BlobRefMsg(
            scheme=self.scheme,
            path=self.path,
            content_type=self.content_type,
            size_bytes=self.size_bytes,
            sha256=self.sha256,
        )

    @classmethod
    def from_msg(cls, msg: BlobRefMsg, field: str = 'blob_ref') -> BlobRef:
        try:
            return cls(msg.path, msg.content_type, msg.size_bytes, msg.sha256, msg.scheme)
        except (TypeError, ValueError) as exc:
            raise type(exc)(str(exc).replace('payload.ref', field, 1)) from None


class FileBlobStore:
    """Bytes in files under one root directory, addressed by BlobRef.

    `put` writes atomically (temporary file, fsync, rename) so a reader never sees half a blob,
    and names blobs by content (`ab/abcdef…`) unless told otherwise, which makes repeated puts of
    the same bytes free.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self._fsync = fsync

    def resolve(self, ref_or_path: BlobRef | str, field: str = 'payload.ref.path') -> Path:
        """The file a ref names, refused (ValueError) when it lies outside the root."""
        path = ref_or_path.path if isinstance(ref_or_path, BlobRef) else ref_or_path
        check_ref_path(path, field)
        candidate = Path(path)
        full = (candidate if candidate.is_absolute() else self.root / candidate).resolve()
        if not full.is_relative_to(self.root):
            raise ValueError(f'{field}: {path!r} escapes the blob root {self.root}')
        return full

    def put(
        self, data: bytes, content_type: str = 'application/octet-stream', name: str | None = None
    ) -> BlobRef:
        """Store bytes; return their reference (path relative to the root)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data: expected bytes, got {type(data).__name__}')
        digest = _sha256_hex(data)
        relative = name if name is not None else f'{digest[:2]}/{digest}'
        if Path(relative).is_absolute():
            raise ValueError(f'name: {relative!r} must be relative to the blob root')
        target = self.resolve(relative, 'name')
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix='.blob-')
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
                if self._fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self._fsync:
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return BlobRef(target.relative_to(self.root).as_posix(), content_type, len(data), digest)

    def get(self, ref: BlobRef, *, verify: bool = True, field: str = 'payload.ref') -> bytes:
        """The referenced bytes; with `verify`, size and sha256 must match the ref."""
        data = self.resolve(ref, f'{field}.path').read_bytes()
        if verify:
            if len(data) != ref.size_bytes:
                raise ValueError(
                    f'{field}.size_bytes: ref says {ref.size_bytes}, the file has {len(data)} bytes'
                )
            digest = _sha256_hex(data)
            if digest != ref.sha256:
                raise ValueError(f'{field}.sha256: ref says {ref.sha256}, the file hashes to {digest}')
        return data


def _sha256_hex(data: bytes) -> str:
    """hashlib on first use: it loads OpenSSL's libcrypto (~3.5 MB resident), which a container
    that never writes or checks a blob does not need."""
    import hashlib

    return hashlib.sha256(data).hexdigest()
