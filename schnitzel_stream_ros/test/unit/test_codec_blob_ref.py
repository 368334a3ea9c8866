"""Blob references: a real file store under tmp_path; escaping paths, tampering and bad refs refused."""

from __future__ import annotations

import hashlib
import os

import pytest

from schnitzel_stream_msgs.msg import BlobRef as BlobRefMsg
from schnitzel_stream_ros.codec.blob_ref import BlobRef, FileBlobStore

SHA_X = hashlib.sha256(b'x').hexdigest()


def test_put_and_get_round_trip_with_content_address(tmp_path):
    store = FileBlobStore(tmp_path / 'blobs')
    data = b'\x00\xffjpeg bytes' * 100
    ref = store.put(data, 'image/jpeg')
    digest = hashlib.sha256(data).hexdigest()
    assert ref == BlobRef(f'{digest[:2]}/{digest}', 'image/jpeg', len(data), digest)
    assert (tmp_path / 'blobs' / ref.path).read_bytes() == data
    assert store.get(ref) == data
    assert store.put(data, 'image/jpeg') == ref  # same bytes, same ref
    assert not [p for p in (tmp_path / 'blobs').rglob('.blob-*')]  # no temporary files left


def test_named_blobs_and_payload_form(tmp_path):
    store = FileBlobStore(tmp_path, fsync=False)
    ref = store.put(b'{"a":1}', 'application/json', name='snapshots/cam01/0001.json')
    assert ref.path == 'snapshots/cam01/0001.json'
    payload = ref.to_payload()
    assert payload == {
        'ref': {
            'scheme': 'file',
            'path': 'snapshots/cam01/0001.json',
            'content_type': 'application/json',
            'size_bytes': 7,
            'sha256': hashlib.sha256(b'{"a":1}').hexdigest(),
        }
    }
    assert BlobRef.from_payload(payload) == ref
    assert BlobRef.from_msg(ref.to_msg()) == ref


@pytest.mark.parametrize('path', ['../outside', 'a/../../outside', 'a/b/../../../x', '..\\windows', '..'])
def test_dot_dot_paths_are_refused_everywhere(tmp_path, path):
    with pytest.raises(ValueError, match=r'payload.ref.path: .* escapes its root'):
        BlobRef(path, 'text/plain', 1, SHA_X)
    store = FileBlobStore(tmp_path)
    with pytest.raises(ValueError, match='escapes'):
        store.resolve(path)
    with pytest.raises(ValueError, match=r'name: .* escapes'):
        store.put(b'x', name=path)


def test_absolute_paths_must_lie_inside_the_store_root(tmp_path):
    root = tmp_path / 'root'
    store = FileBlobStore(root)
    inside = store.put(b'x', name='a.bin')
    absolute_inside = BlobRef(str(root / 'a.bin'), '', 1, SHA_X)
    assert store.get(absolute_inside) == b'x' == store.get(inside)
    with pytest.raises(ValueError, match=r"payload.ref.path: '/etc/passwd' escapes the blob root"):
        store.get(BlobRef('/etc/passwd', 'text/plain', 1, SHA_X))
    with pytest.raises(ValueError, match=r'name: .* must be relative'):
        store.put(b'x', name=str(root / 'b.bin'))


def test_symlinks_out_of_the_root_are_refused(tmp_path):
    root = tmp_path / 'root'
    root.mkdir()
    secret = tmp_path / 'secret.txt'
    secret.write_bytes(b'x')
    os.symlink(secret, root / 'link.txt')
    store = FileBlobStore(root)
    with pytest.raises(ValueError, match=r"'link.txt' escapes the blob root"):
        store.get(BlobRef('link.txt', 'text/plain', 1, SHA_X))


def test_tampered_or_truncated_blobs_are_refused(tmp_path):
    store = FileBlobStore(tmp_path)
    ref = store.put(b'original', 'text/plain')
    (tmp_path / ref.path).write_bytes(b'originaX')
    with pytest.raises(ValueError, match=r'payload.ref.sha256: ref says [0-9a-f]{64}, the file hashes to'):
        store.get(ref)
    assert store.get(ref, verify=False) == b'originaX'
    (tmp_path / ref.path).write_bytes(b'orig')
    with pytest.raises(ValueError, match=r'payload.ref.size_bytes: ref says 8, the file has 4 bytes'):
        store.get(ref)


@pytest.mark.parametrize(
    ('ref', 'message', 'error'),
    [
        (
            {'scheme': 's3', 'path': 'a', 'content_type': '', 'size_bytes': 1, 'sha256': SHA_X},
            "payload.ref.scheme: 's3' is not supported",
            ValueError,
        ),
        (
            {'scheme': 'file', 'path': '', 'content_type': '', 'size_bytes': 1, 'sha256': SHA_X},
            'payload.ref.path: must be a non-empty path',
            ValueError,
        ),
        (
            {'scheme': 'file', 'path': 'a\x00b', 'content_type': '', 'size_bytes': 1, 'sha256': SHA_X},
            'payload.ref.path',
            ValueError,
        ),
        (
            {'scheme': 'file', 'path': 3, 'content_type': '', 'size_bytes': 1, 'sha256': SHA_X},
            'payload.ref.path: expected str',
            TypeError,
        ),
        (
            {'scheme': 'file', 'path': 'a', 'content_type': None, 'size_bytes': 1, 'sha256': SHA_X},
            'payload.ref.content_type: expected str',
            TypeError,
        ),
        (
            {'scheme': 'file', 'path': 'a', 'content_type': '', 'size_bytes': -1, 'sha256': SHA_X},
            'payload.ref.size_bytes',
            ValueError,
        ),
        (
            {'scheme': 'file', 'path': 'a', 'content_type': '', 'size_bytes': 1.0, 'sha256': SHA_X},
            'payload.ref.size_bytes',
            ValueError,
        ),
        (
            {'scheme': 'file', 'path': 'a', 'content_type': '', 'size_bytes': 1, 'sha256': SHA_X.upper()},
            'payload.ref.sha256: expected 64 lowercase hex digits',
            ValueError,
        ),
        (
            {'scheme': 'file', 'path': 'a', 'content_type': '', 'size_bytes': 1},
            'payload.ref: keys must be .*; missing sha256',
            ValueError,
        ),
        (
            {'scheme': 'file', 'path': 'a', 'content_type': '', 'size_bytes': 1, 'sha256': SHA_X, 'x': 1},
            'payload.ref: keys must be .*; unexpected x',
            ValueError,
        ),
    ],
)
def test_bad_refs_are_refused_by_name(ref, message, error):
    with pytest.raises(error, match=message):
        BlobRef.from_payload({'ref': ref})


@pytest.mark.parametrize('payload', [None, {}, {'ref': {}, 'extra': 1}, {'path': 'a'}, 'a'])
def test_payload_must_be_exactly_a_ref_object(payload):
    with pytest.raises(ValueError, match=r'payload: a bytes_ref payload is \{"ref"'):
        BlobRef.from_payload(payload)


def test_ref_messages_are_checked_with_the_message_field_name():
    msg = BlobRefMsg(scheme='file', path='../x', content_type='', size_bytes=1, sha256=SHA_X)
    with pytest.raises(ValueError, match=r'blob_ref\[0\].path: .* escapes its root'):
        BlobRef.from_msg(msg, 'blob_ref[0]')
