"""Strict JSON: exact round trips of JSON values, named refusals of everything else, the meta limit."""

from __future__ import annotations

import json
import math
from enum import StrEnum

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schnitzel_stream_ros.codec.json_values import (
    DEFAULT_META_LIMIT_BYTES,
    check_json_value,
    decode_meta,
    dumps_json,
    encode_meta,
    loads_json,
)
from schnitzel_stream_ros.packet import StreamPacket

FAST = settings(max_examples=80, deadline=None)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)


@FAST
@given(json_values)
def test_json_values_round_trip_exactly(value):
    text = dumps_json(value, 'payload')
    back = loads_json(text, 'payload_json')
    assert back == value
    assert json.dumps(back, sort_keys=True) == json.dumps(value, sort_keys=True)  # types too (1 vs 1.0)
    text.encode('utf-8')  # always valid UTF-8 for ROS string fields


def test_floats_keep_every_bit_and_sign():
    values = [0.1 + 0.2, -0.0, 5e-324, 1.7976931348623157e308, 1e16, 2.0**53 + 1]
    back = loads_json(dumps_json(values, 'payload'), 'payload_json')
    assert [v.hex() if isinstance(v, float) else v for v in back] == [
        v.hex() if isinstance(v, float) else v for v in values
    ]
    assert math.copysign(1, back[1]) == -1


def test_unicode_is_kept_as_characters_and_lone_surrogates_survive_escaped():
    text = dumps_json({'name': 'Zoë – 東京 🚒'}, 'meta')
    assert 'Zoë – 東京 🚒' in text
    odd = {'s': 'a\ud800b'}
    encoded = dumps_json(odd, 'meta')
    encoded.encode('utf-8')
    assert loads_json(encoded, 'meta_json') == odd


def test_tuples_go_as_arrays_and_come_back_as_lists():
    assert loads_json(dumps_json({'bbox': (1, 2, 3, 4)}, 'payload'), 'p') == {'bbox': [1, 2, 3, 4]}


def test_enum_and_numpy_float64_are_written_as_their_base_values():
    class Color(StrEnum):
        RED = 'red'

    assert loads_json(dumps_json([Color.RED, np.float64(0.5)], 'payload'), 'p') == ['red', 0.5]


@pytest.mark.parametrize(
    ('value', 'field', 'error'),
    [
        ({'a': float('nan')}, 'meta.a', ValueError),
        ({'a': [1, float('inf')]}, r'meta.a\[1\]', ValueError),
        ({'a': {'b': -math.inf}}, 'meta.a.b', ValueError),
        ({1: 'x'}, r'meta\[1\]', TypeError),
        ({'a': {None: 1}}, r'meta.a\[None\]', TypeError),
        ({'a': {1, 2}}, 'meta.a', TypeError),
        ({'a': b'bytes'}, 'meta.a', TypeError),
        ({'conf': np.float32(0.5)}, r'meta.conf: float32 is not a JSON type \(convert numpy', TypeError),
        ({'n': np.int64(3)}, 'meta.n', TypeError),
        ({'my key': object()}, r"meta\['my key'\]", TypeError),
        ({'a': np.float64('nan')}, 'meta.a', ValueError),
    ],
)
def test_non_json_is_refused_naming_the_field(value, field, error):
    with pytest.raises(error, match=field):
        check_json_value(value, 'meta')
    with pytest.raises(error, match=field):
        encode_meta(value)


def test_integers_beyond_the_text_conversion_limit_are_refused_by_name():
    with pytest.raises(ValueError, match=r'payload.big: integer with more than'):
        dumps_json({'big': 10**5000}, 'payload')
    assert loads_json(dumps_json(10**300, 'payload'), 'p') == 10**300


def test_deep_nesting_is_refused_not_crashing():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match='payload: nested too deeply'):
        dumps_json(deep, 'payload')
    with pytest.raises(ValueError, match='payload_json'):
        loads_json('[' * 100_000 + ']' * 100_000, 'payload_json')


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('{"a": NaN}', 'payload_json: NaN is not JSON'),
        ('[Infinity]', 'payload_json: Infinity is not JSON'),
        ('[-Infinity]', 'payload_json: -Infinity is not JSON'),
        ('[1e400]', 'payload_json: number 1e400 does not fit'),
        ('{"a": 1, "a": 2}', "payload_json: duplicate key 'a'"),
        ('{"a": 1', 'payload_json: not JSON'),
        ('', 'payload_json: not JSON'),
    ],
)
def test_lenient_json_text_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        loads_json(text, 'payload_json')


def test_loads_needs_text():
    with pytest.raises(TypeError, match='payload_json'):
        loads_json(b'{}', 'payload_json')  # type: ignore[arg-type]


def test_meta_limit_default_is_64_kib_and_counts_utf8_bytes():
    assert DEFAULT_META_LIMIT_BYTES == 65536
    overhead = len('{"k":""}')
    fits = {'k': 'x' * (DEFAULT_META_LIMIT_BYTES - overhead)}
    assert len(encode_meta(fits).encode()) == DEFAULT_META_LIMIT_BYTES
    with pytest.raises(ValueError, match=r'meta: 65537 bytes as JSON, over the limit of 65536'):
        encode_meta({'k': 'x' * (DEFAULT_META_LIMIT_BYTES - overhead + 1)})
    two_byte_chars = {'k': 'é' * 40_000}  # 40,000 characters, 80,000 bytes
    with pytest.raises(ValueError, match='over the limit'):
        encode_meta(two_byte_chars)


def test_meta_limit_is_configurable_both_ways():
    meta = {'note': 'x' * 100}
    with pytest.raises(ValueError, match='over the limit of 50 bytes'):
        encode_meta(meta, limit_bytes=50)
    text = encode_meta(meta)
    with pytest.raises(ValueError, match='meta_json: larger than the meta limit of 50 bytes'):
        decode_meta(text, limit_bytes=50)
    assert decode_meta(text, limit_bytes=200) == meta


def test_meta_accepts_frozen_meta_and_any_mapping():
    packet = StreamPacket.new('raw', 's', None, {'a': 1})
    assert decode_meta(encode_meta(packet.meta)) == {'a': 1}
    assert encode_meta({}) == '{}'
    with pytest.raises(TypeError, match='meta: expected a mapping'):
        encode_meta([('a', 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize('text', ['[]', '1', '"x"', 'null'])
def test_meta_json_must_be_an_object(text):
    with pytest.raises(ValueError, match='meta_json: expected a JSON object'):
        decode_meta(text)


def test_empty_meta_text_is_empty_meta():
    assert decode_meta('') == {}
