"""The wire form of idempotency keys: header-safe, stable, distinct for distinct keys."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schnitzel_stream_ros.delivery.idempotency_key import (
    HASH_PREFIX,
    MAX_WIRE_KEY_CHARS,
    header_key,
    is_header_safe,
    wire_key,
)
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket


def test_plain_keys_are_unchanged_and_hostile_ones_encoded():
    assert wire_key('event:cam0:7') == 'event:cam0:7'
    assert wire_key('5f0c2a9e-6d7b-4b9e-8f51-0c3d2b1a9e77') == '5f0c2a9e-6d7b-4b9e-8f51-0c3d2b1a9e77'
    assert wire_key('event:Łódź:cam0:7') == 'event:%C5%81%C3%B3d%C5%BA:cam0:7'
    assert wire_key('k\r\nX-Injected: yes') == 'k%0D%0AX-Injected:%20yes'
    assert wire_key('100%') == '100%25'  # '%' itself is encoded: no raw key can look encoded
    long_key = 'x' * 8192
    assert wire_key(long_key).startswith(HASH_PREFIX) and len(wire_key(long_key)) == len(HASH_PREFIX) + 64


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_every_key_has_a_header_safe_stable_wire_form(key):
    form = wire_key(key)
    assert form == wire_key(key)
    if key:
        assert is_header_safe(form)
        assert header_key(form) == form  # what the queue stores goes out unchanged
    assert not any(c in form for c in '\r\n\0 ')


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_distinct_keys_have_distinct_wire_forms(a, b):
    if a != b:
        assert wire_key(a) != wire_key(b)


def test_encoded_forms_never_collide_with_raw_ascii_keys():
    # a raw key that spells an encoding is itself encoded differently
    assert wire_key('a%C5%81') != wire_key('aŁ')
    assert wire_key(HASH_PREFIX + '0' * 64) != wire_key('y' * 500)
    assert len(wire_key('y' * 500)) <= MAX_WIRE_KEY_CHARS


def test_queue_stores_the_wire_form_and_dedups_on_it(tmp_path):
    with DurableQueue(tmp_path / 'q.db') as queue:
        packet = StreamPacket.new('event', 'cam0', {'i': 1}, meta={'idempotency_key': 'event:Łódź:cam0:7'})
        seq = queue.enqueue(packet)
        assert queue.enqueue(packet) == seq  # same key, same row
        [row] = queue.claim(10)
        assert row.idempotency_key == wire_key('event:Łódź:cam0:7')
        hostile = StreamPacket.new('event', 'cam0', {'i': 2}, meta={'idempotency_key': 'a\r\nb: c'})
        queue.enqueue(hostile)
        [row2] = queue.claim(10)
        assert row2.idempotency_key == 'a%0D%0Ab:%20c'
