"""StreamPacket: immutability, derivation rules, idempotency key, profiles, canonical time text."""

from __future__ import annotations

import dataclasses
import os
import pickle
import threading
import types
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schnitzel_stream_ros.packet import (
    NON_PORTABLE_KINDS,
    Kind,
    MetaKey,
    PayloadProfile,
    StreamPacket,
    format_ts,
    new_packet_id,
    now_ts,
    parse_ts,
    profile_compatible,
)

FAST = settings(max_examples=60, deadline=None)


def test_new_makes_uuid4_id_and_utc_now_ts():
    packet = StreamPacket.new(Kind.SENSOR, 'range01', {'range_m': 1.5})
    assert uuid.UUID(packet.packet_id).version == 4
    assert packet.ts.endswith('Z')
    assert abs(parse_ts(packet.ts) - datetime.now(UTC)) < timedelta(seconds=5)
    assert packet.meta == {}


def test_fields_and_meta_are_immutable():
    packet = StreamPacket.new(Kind.EVENT, 'cam01', {'a': 1}, {'frame_idx': 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        packet.kind = 'other'  # type: ignore[misc]
    with pytest.raises(TypeError, match='immutable'):
        packet.meta['frame_idx'] = 4  # type: ignore[index]
    with pytest.raises(TypeError, match='immutable'):
        packet.meta.update(x=1)  # type: ignore[attr-defined]
    assert packet.meta == {'frame_idx': 3}


def test_meta_given_as_dict_is_copied_not_shared():
    meta = {'frame_idx': 1}
    packet = StreamPacket.new(Kind.FRAME, 'cam01', None, meta)
    meta['frame_idx'] = 2
    assert packet.meta[MetaKey.FRAME_IDX] == 1


def test_derive_keeps_id_and_child_makes_new_id_with_parent_link():
    parent = StreamPacket.new(Kind.FRAME, 'cam01', None, {'frame_idx': 7}, ts='2026-02-14T00:00:00Z')
    enriched = parent.derive(kind=Kind.DETECTION, payload=[1, 2])
    assert enriched.packet_id == parent.packet_id
    assert (enriched.kind, enriched.payload, enriched.meta) == (Kind.DETECTION, [1, 2], parent.meta)
    with pytest.raises(ValueError, match='keeps packet_id'):
        parent.derive(packet_id='x')
    child = parent.child(kind=Kind.EVENT, payload={'e': 1})
    assert child.packet_id != parent.packet_id
    assert child.meta[MetaKey.SOURCE_PACKET_ID] == parent.packet_id
    assert (child.ts, child.source_id) == (parent.ts, parent.source_id)


def test_with_meta_adds_entries_on_a_new_packet():
    packet = StreamPacket.new(Kind.EVENT, 'cam01', None, {'a': 1})
    more = packet.with_meta(b=2, a=3)
    assert more.meta == {'a': 3, 'b': 2}
    assert packet.meta == {'a': 1}
    assert more.packet_id == packet.packet_id


def test_idempotency_key_prefers_meta_then_packet_id():
    packet = StreamPacket.new(Kind.EVENT, 'cam01')
    assert packet.idempotency_key == packet.packet_id
    assert packet.with_meta(idempotency_key='event:x').idempotency_key == 'event:x'
    assert packet.with_meta(idempotency_key='').idempotency_key == packet.packet_id
    assert packet.with_meta(idempotency_key=5).idempotency_key == packet.packet_id


@pytest.mark.parametrize(
    ('field', 'value', 'error'),
    [
        ('packet_id', 1, TypeError),
        ('ts', None, TypeError),
        ('kind', '', ValueError),
        ('source_id', b'x', TypeError),
    ],
)
def test_bad_fields_are_refused_naming_the_field(field, value, error):
    fields = {'packet_id': 'p', 'ts': '2026-02-14T00:00:00Z', 'kind': 'raw', 'source_id': 's'}
    fields[field] = value
    with pytest.raises(error, match=field):
        StreamPacket(**fields)


def test_meta_must_be_a_mapping():
    with pytest.raises(TypeError, match='meta'):
        StreamPacket('p', '2026-02-14T00:00:00Z', 'raw', 's', None, [('a', 1)])  # type: ignore[arg-type]


def test_packets_pickle_with_frozen_meta():
    packet = StreamPacket.new(Kind.EVENT, 'cam01', {'a': [1]}, {'durable': {'seq': 3}})
    clone = pickle.loads(pickle.dumps(packet))
    assert clone == packet
    with pytest.raises(TypeError):
        clone.meta['x'] = 1  # type: ignore[index]


def test_profile_matrix_is_the_upstream_one():
    allowed = {(src, dst) for src in PayloadProfile for dst in PayloadProfile if profile_compatible(src, dst)}
    assert allowed == {
        (PayloadProfile.INPROC_ANY, PayloadProfile.INPROC_ANY),
        (PayloadProfile.JSON_PORTABLE, PayloadProfile.INPROC_ANY),
        (PayloadProfile.JSON_PORTABLE, PayloadProfile.JSON_PORTABLE),
        (PayloadProfile.REF_PORTABLE, PayloadProfile.INPROC_ANY),
        (PayloadProfile.REF_PORTABLE, PayloadProfile.JSON_PORTABLE),
        (PayloadProfile.REF_PORTABLE, PayloadProfile.REF_PORTABLE),
    }
    assert profile_compatible('json_portable', 'inproc_any')
    with pytest.raises(ValueError):
        profile_compatible('portable', 'inproc_any')
    assert {Kind.FRAME, Kind.BYTES, Kind.AUDIO} == NON_PORTABLE_KINDS  # upstream's two + raw PCM audio (ours)


def test_format_ts_is_canonical_utc_z():
    assert format_ts(datetime(2026, 2, 14, tzinfo=UTC)) == '2026-02-14T00:00:00Z'
    assert format_ts(datetime(2026, 2, 14, 1, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))) == (
        '2026-02-14T00:00:00.000005Z'
    )
    assert format_ts(datetime(2026, 2, 14, 12)) == '2026-02-14T12:00:00Z'  # naive = UTC
    assert format_ts(datetime(999, 1, 2, tzinfo=UTC)) == '0999-01-02T00:00:00Z'


@pytest.mark.parametrize(
    ('text', 'canonical'),
    [
        ('2026-02-14T00:00:00Z', '2026-02-14T00:00:00Z'),
        ('2026-02-14T01:00:00+01:00', '2026-02-14T00:00:00Z'),
        ('2026-02-14T00:00:00', '2026-02-14T00:00:00Z'),
        ('2026-02-14T00:00:00.123456789Z', '2026-02-14T00:00:00.123456Z'),
        ('2026-02-14T00:00:00.5z', '2026-02-14T00:00:00.500000Z'),
    ],
)
def test_parse_ts_accepts_iso_forms(text, canonical):
    assert format_ts(parse_ts(text)) == canonical


@pytest.mark.parametrize('bad', ['', 'yesterday', '2026-13-01T00:00:00Z', None, 1700000000])
def test_parse_ts_refuses_non_iso(bad):
    with pytest.raises(ValueError, match='ts'):
        parse_ts(bad)  # type: ignore[arg-type]


@FAST
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
def test_time_text_round_trips_at_microseconds(naive, offset_minutes):
    aware = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = format_ts(aware)
    assert parse_ts(text) == aware
    assert format_ts(parse_ts(aware.isoformat())) == text


def test_now_ts_is_canonical():
    text = now_ts()
    assert format_ts(parse_ts(text)) == text


def test_packet_ids_are_rfc4122_uuid4_text_and_unique_across_pool_refills():
    ids = [new_packet_id() for _ in range(3 * 256 + 7)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # the canonical lower-case 8-4-4-4-12 spelling


def test_packet_ids_from_many_threads_are_unique():
    out: list[list[str]] = [[] for _ in range(4)]

    def take(bucket: list[str]) -> None:
        bucket.extend(new_packet_id() for _ in range(2000))

    threads = [threading.Thread(target=take, args=(bucket,)) for bucket in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for bucket in out for i in bucket]
    assert len(set(ids)) == len(ids) == 8000


def test_a_forked_child_never_hands_out_ids_its_parent_still_holds():
    import schnitzel_stream_ros.packet as packet_module

    packet_module._ids.clear()
    new_packet_id()  # the parent's pool now holds the other 255 of a fresh batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        try:
            os.write(write, ','.join(new_packet_id() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_ids = set(pipe.read().split(','))
    os.waitpid(pid, 0)
    parent_ids = {new_packet_id() for _ in range(255)}
    assert len(child_ids) == 50
    assert not child_ids & parent_ids


def test_now_ts_matches_format_ts_of_the_same_instant(monkeypatch):
    import schnitzel_stream_ros.packet as packet_module

    for micros in (0, 1, 999_999, 123_456):
        ns = (1_780_000_000 * 1_000_000 + micros) * 1000
        monkeypatch.setattr(packet_module, 'time', types.SimpleNamespace(time_ns=lambda ns=ns: ns))
        expected = format_ts(datetime.fromtimestamp(ns / 1e9, UTC).replace(microsecond=micros))
        assert now_ts() == expected
    monkeypatch.undo()
    assert abs(parse_ts(now_ts()) - datetime.now(UTC)) < timedelta(seconds=5)
