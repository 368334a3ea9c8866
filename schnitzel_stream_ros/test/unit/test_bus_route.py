"""Subjects and topics from hostile event fields (delivery/bus_route.py) and the target parameters."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from schnitzel_stream_ros.delivery.bus_route import (
    MAX_TOKEN_CHARS,
    mqtt_topic,
    nats_subject,
    route_of,
    token,
)
from schnitzel_stream_ros.nodes.delivery.target_params import check_target_params

SAFE_TOKEN = re.compile(r'[A-Za-z0-9_%~-]+')


@given(st.text())
def test_any_text_becomes_one_safe_token(text):
    out = token(text)
    assert SAFE_TOKEN.fullmatch(out), out
    assert len(out) <= MAX_TOKEN_CHARS
    assert not out.startswith('$')


@given(st.text(min_size=1), st.text(min_size=1))
def test_distinct_texts_give_distinct_tokens(a, b):
    if a != b:
        assert token(a) != token(b)


def test_plain_names_stay_readable_and_long_ones_are_shortened_with_a_hash():
    assert token('site-1') == 'site-1' and token('PERSON') == 'PERSON' and token('cam_0') == 'cam_0'
    assert token('a.b') == 'a%2Eb' and token('x/+#') == 'x%2F%2B%23' and token('') == '_'
    assert token('\x00') == '%00' and token('Łódź') == '%C5%81%C3%B3d%C5%BA'
    long_a, long_b = 'x' * 500 + 'a', 'x' * 500 + 'b'
    assert token(long_a) != token(long_b) and '~' in token(long_a)


def test_route_from_payload_or_envelope_or_nothing():
    payload = {'site_id': 'hq', 'camera_id': 'cam1', 'event_type': 'ZONE_ENTER'}
    assert route_of(json.dumps(payload).encode()) == ('hq', 'cam1', 'ZONE_ENTER')
    envelope = {'kind': 'event', 'source_id': 'cam9', 'payload': {'site_id': 'hq', 'x': 1}, 'meta': {}}
    assert route_of(json.dumps(envelope).encode()) == ('hq', 'cam9', 'event')
    assert route_of(b'not json') == ('_', '_', '_') and route_of(b'[1,2]') == ('_', '_', '_')
    body = json.dumps({'site_id': 'a.b', 'camera_id': '*', 'event_type': '>'}).encode()
    assert nats_subject('events', body) == 'events.a%2Eb.%2A.%3E'
    body = json.dumps({'site_id': '$SYS', 'camera_id': '#', 'event_type': 'a/b'}).encode()
    assert mqtt_topic('plant/line1', body) == 'plant/line1/%24SYS/%23/a%2Fb'


def test_target_parameters_are_checked_per_target_naming_the_parameter():
    assert (
        check_target_params({'target': 'nats', 'nats_servers': ['nats://h:4222'], 'nats_stream': 'S'}) == []
    )
    problems = check_target_params(
        {'target': 'nats', 'nats_servers': ['http://h', 'nats://u:pw@h'], 'nats_subject_prefix': 'a.>'}
    )
    assert any("'nats_servers'[0]" in p for p in problems)
    assert any("'nats_subject_prefix'" in p for p in problems) and len(problems) == 2
    problems = check_target_params(
        {'target': 'mqtt', 'mqtt_url': 'tcp://u:secret@h', 'mqtt_topic_prefix': '$x'}
    )
    assert any("'mqtt_url'" in p and 'secret' not in p for p in problems)
    assert any("'mqtt_topic_prefix'" in p for p in problems)
    assert any("'url'" in p for p in check_target_params({'target': 'http', 'url': ''}))
