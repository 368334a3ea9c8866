"""document_limits: every bound refused with its name and line, real documents read unchanged, and
the same bounds on the other documents users and peers hand us (zone files and HTTP answers, event
JSON at the backend, JSON lines from sensors). JSON on DDS: test_codec_packet."""
from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from schnitzel_stream_ros.delivery.backend import serve_in_thread
from schnitzel_stream_ros.document_limits import (
    GRAPH_DOCUMENT_LIMITS,
    ZONE_LIMITS,
    DocumentError,
    DocumentLimits,
    LimitExceeded,
    check_json_data,
    decode_text,
    load_json,
    load_yaml,
    read_file,
)
from schnitzel_stream_ros.nodes.policy.zone_sources import ApiSettings, HttpZones, load_zone_file
from schnitzel_stream_ros.nodes.policy.zones import ZoneError
from schnitzel_stream_ros.nodes.sensors.line_parser import LineParseError, LineParser

PACKAGE = Path(__file__).resolve().parents[2]
SMALL = DocumentLimits(max_bytes=4096, max_depth=4, max_values=50, max_aliases=3, max_scalar_chars=20,
                       max_text_chars=200)


def bomb(levels: int = 9) -> str:
    lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
    names = 'abcdefghijklmnop'
    for index in range(1, levels):
        lines.append(f'{names[index]}: &{names[index]} [' + ', '.join([f'*{names[index - 1]}'] * 10) + ']')
    return '\n'.join([*lines, f'packets: *{names[levels - 1]}']) + '\n'


# -- what real documents see: nothing changes -------------------------------------------------------
REAL_YAML = sorted([*PACKAGE.glob('test/graphs/valid/*.yaml'), *PACKAGE.glob('test/graphs/upstream/*.yaml'),
                    PACKAGE / 'config' / 'site.yaml'])

SAFE_LOAD_FEATURES = """\
base: &base {inbox_max: 8, name: cam, ratio: 0.5, on: yes, none: ~, when: 2024-01-02T03:04:05Z}
merged:
  <<: *base
  name: other
list: &l [1, 2.5, '3', !!str 4, null, true]
again: *l
octal: 0o17
binary: !!binary aGVsbG8=
set: !!set {a, b}
multi: |
  line one
  line two
"""


@pytest.mark.parametrize('path', REAL_YAML, ids=lambda p: p.name)
def test_real_graphs_load_exactly_as_yaml_safe_load(path):
    text = path.read_text(encoding='utf-8')
    assert load_yaml(text, GRAPH_DOCUMENT_LIMITS) == yaml.safe_load(text)


def test_yaml_features_are_those_of_safe_load():
    assert load_yaml(SAFE_LOAD_FEATURES, GRAPH_DOCUMENT_LIMITS) == yaml.safe_load(SAFE_LOAD_FEATURES)
    for text in ('', '# only a comment\n', 'plain', '[]', '{}'):
        assert load_yaml(text, GRAPH_DOCUMENT_LIMITS) == yaml.safe_load(text)
    with pytest.raises(DocumentError, match=r"not valid YAML: could not determine a constructor for the tag "
                                             r"'tag:yaml.org,2002:python/object/apply:os.system'") as info:
        load_yaml("a: 1\nb: !!python/object/apply:os.system ['true']\n", GRAPH_DOCUMENT_LIMITS)
    assert info.value.line == 2
    with pytest.raises(DocumentError, match='expected a single document') as info:
        load_yaml('a: 1\n---\nb: 2\n', GRAPH_DOCUMENT_LIMITS)
    with pytest.raises(DocumentError, match="found undefined alias 'nope'") as info:
        load_yaml('a: 1\nb: *nope\n', GRAPH_DOCUMENT_LIMITS)
    assert info.value.line == 2


# -- each limit, by name and line -----------------------------------------------------------------
@pytest.mark.parametrize(
    ('text', 'limit', 'line', 'message'),
    [
        ('a:\n  b:\n    c:\n      d:\n        e: 1\n', 'max_depth', 5, 'nested more than 4 levels deep'),
        ('a: &a [[x]]\nb: [[[*a]]]\n', 'max_depth', 2, r'alias \*a nests 6 levels deep'),
        ('v: [' + ', '.join(['1'] * 30) + ']\nw: [' + ', '.join(['1'] * 30) + ']\n', 'max_values', 2,
         'more than 50 values'),
        ('a: &a [' + ', '.join(['1'] * 20) + ']\nb: [*a, *a]\n', 'max_values', 2,
         r'alias \*a expands the document past 50 values'),
        ('a: &a 1\nb: [*a, *a, *a]\nc: *a\n', 'max_aliases', 3, r'more than 3 alias uses \(\*a\)'),
        ('a: 1\nb: ' + 'x' * 21 + '\n', 'max_scalar_chars', 2, 'a scalar of 21 characters'),
        ('a: 1\n' + 'x' * 21 + ': 2\n', 'max_scalar_chars', 2, 'a scalar of 21 characters'),
        ('a: &a ' + 'x' * 20 + '\nb: [' + ', '.join(['y' * 20] * 9) + ']\n', 'max_text_chars', 2,
         'more than 200 characters of text'),
        ('a: &a [' + ', '.join(['y' * 20] * 4) + ']\nb: [*a, *a]\n', 'max_text_chars', 2,
         r'alias \*a expands the document past 200 characters of text'),
        ('x' * 4097, 'max_bytes', 1, 'text too large'),
    ],
)
def test_each_limit_names_itself_and_the_line(text, limit, line, message):
    with pytest.raises(LimitExceeded, match=message) as info:
        load_yaml(text, SMALL)
    assert (info.value.limit, info.value.line) == (limit, line)
    assert str(info.value).endswith(f'over the limit {limit} = {getattr(SMALL, limit):,}')
    assert '\n' not in str(info.value)


def test_a_recursive_alias_is_refused():
    with pytest.raises(DocumentError, match=r'alias \*loop refers to the collection that contains') as info:
        load_yaml('a: 1\nb: &loop {c: [*loop]}\n', GRAPH_DOCUMENT_LIMITS)
    assert info.value.line == 2


def test_alias_bomb_is_refused_while_composing_in_bounded_memory():
    """The issue's bomb means 10^9 strings; refused at the line that crosses max_values, and the
    whole refusal allocates less than a few MB (the file itself is 600 bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded) as info:
            load_yaml(bomb(9), GRAPH_DOCUMENT_LIMITS)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (info.value.limit, info.value.line) == ('max_values', 5)
    assert peak < 5 * 1024 * 1024, peak
    assert load_yaml(bomb(4), GRAPH_DOCUMENT_LIMITS)['packets'][9][9][9] == ['x'] * 10  # 10^4: fine


def test_deep_nesting_never_reaches_the_recursive_parsers():
    for text in ('[' * 10_000 + ']' * 10_000, 'a:\n' + ''.join(f'{"  " * i}- \n' for i in range(1, 80))):
        with pytest.raises(LimitExceeded) as info:
            load_yaml(text, GRAPH_DOCUMENT_LIMITS)
        assert info.value.limit == 'max_depth'


# -- bytes: size before reading, UTF-8, NUL --------------------------------------------------------
def test_size_is_checked_before_reading(tmp_path):
    sparse = tmp_path / 'huge.yaml'
    with sparse.open('wb') as handle:
        handle.truncate(8 * 1024 ** 3)  # 8 GB that are never read (a sparse file takes no space)
    with pytest.raises(LimitExceeded, match=r'file is 8,589,934,592 bytes: over the limit max_bytes') as info:
        read_file(sparse, GRAPH_DOCUMENT_LIMITS)
    assert info.value.line == 1


def test_a_file_without_a_size_is_read_only_up_to_the_limit():
    """/dev/zero reports size 0 and never ends: the capped read refuses it all the same."""
    with pytest.raises(LimitExceeded, match='file is larger than 4,096 bytes'):
        read_file('/dev/zero', SMALL)


def test_invalid_utf8_and_nul_name_their_line():
    bad_byte = r'not UTF-8 text: invalid start byte \(byte 0xff at offset 9\)'
    with pytest.raises(DocumentError, match=bad_byte) as info:
        decode_text(b'a: 1\nb: 2\xff\n')
    assert info.value.line == 2
    with pytest.raises(DocumentError, match=r'contains a NUL character \(offset 11\)') as info:
        decode_text(b'a: 1\nb: 2\nc\x00: 3\n')
    assert info.value.line == 3
    assert decode_text('a: "caf\u00e9"\n'.encode()) == 'a: "caf\u00e9"\n'


# -- JSON -----------------------------------------------------------------------------------------------
def test_json_depth_is_a_limit_not_a_recursion_error():
    for depth in (65, 10_000, 1_000_000):
        with pytest.raises(LimitExceeded, match='nested more than 64 levels deep') as info:
            load_json('[' * depth + ']' * depth, GRAPH_DOCUMENT_LIMITS)
        assert info.value.limit == 'max_depth'
    assert load_json('[' * 64 + ']' * 64, GRAPH_DOCUMENT_LIMITS) is not None


def test_json_values_strings_and_size():
    with pytest.raises(LimitExceeded, match='more than 50 values'):
        load_json(json.dumps(list(range(60))), SMALL)
    with pytest.raises(LimitExceeded, match='a string of 21 characters'):
        load_json(json.dumps({'k': 'x' * 21}), SMALL)
    with pytest.raises(LimitExceeded, match='a string of 21 characters'):
        load_json(json.dumps({'x' * 21: 1}), SMALL)
    with pytest.raises(LimitExceeded, match='max_bytes'):
        load_json(json.dumps(['x'] * 2000), SMALL)
    with pytest.raises(DocumentError, match='NUL'):
        load_json('{"a": 1}\x00', SMALL)
    check_json_data({'a': [1, {'b': 'c'}]}, SMALL)


# -- zone files and zone HTTP answers ---------------------------------------------------------------
def test_zone_file_bounds(tmp_path: Path):
    bombed = tmp_path / 'bomb.yaml'
    bombed.write_text(bomb(9), encoding='utf-8')
    with pytest.raises(ZoneError, match=rf'^{bombed}:5: not valid YAML/JSON: alias \*d expands the document '
                                        r'past 100,000 values: over the limit max_values = 100,000$'):
        load_zone_file(bombed)
    big = tmp_path / 'big.json'
    with big.open('wb') as handle:
        handle.truncate(ZONE_LIMITS.max_bytes + 1)
    with pytest.raises(ZoneError, match=rf'^{big}:1: not valid YAML/JSON: file is 1,048,577 bytes: over the'):
        load_zone_file(big)
    deep = tmp_path / 'deep.json'
    deep.write_text('{"zones":\n' + '[' * 10_000 + ']' * 10_000 + '}', encoding='utf-8')
    with pytest.raises(ZoneError, match=rf'^{deep}:2: not valid YAML/JSON: nested more than 64 levels deep'):
        load_zone_file(deep)
    nul = tmp_path / 'nul.yaml'
    nul.write_bytes(b'zones:\n  - zone_id: a\x00\n')
    with pytest.raises(ZoneError, match=rf'^{nul}:2: not valid YAML/JSON: contains a NUL character'):
        load_zone_file(nul)


class _RawAnswer:
    """A real HTTP server on 127.0.0.1 sending a fixed body, with or without Content-Length."""

    def __init__(self, body: bytes, declare_length: bool) -> None:
        class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: without a length the body ends at close
            def do_GET(self):
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                if declare_length:
                    self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped reading
                    self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/zones'

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ('body', 'declare_length', 'message'),
    [
        (b'{"zones": ' + b'[' * 10_000 + b']' * 10_000 + b'}', True,
         'line 1 of the response: nested more than 64 levels deep: over the limit max_depth = 64'),
        (b'[' + b' ' * (2 * 1024 * 1024) + b']', True,
         'response of 2,097,154 bytes: over the limit max_bytes = 1,048,576'),
        (b'[' + b' ' * (2 * 1024 * 1024) + b']', False,
         'response is larger than 1,048,576 bytes: over the limit max_bytes = 1,048,576'),
        (b'{"zones": []}\x00', True, r'line 1 of the response: contains a NUL character \(offset 13\)'),
        (b'{"zones": "caf\xe9"}', True,
         r'line 1 of the response: not UTF-8 text: invalid continuation byte \(byte 0xe9 at offset 14\)'),
    ],
    ids=['deep', 'declared-too-big', 'undeclared-too-big', 'nul', 'not-utf8'],
)
def test_zone_http_answers_are_bounded(body, declare_length, message):
    server = _RawAnswer(body, declare_length)
    zones = HttpZones(ApiSettings(url=server.url, timeout_sec=5.0, ttl_sec=3600.0, retry_sec=3600.0,
                                  initial_wait_sec=0.0))
    try:
        with pytest.raises(ZoneError) as info:
            zones.fetch_once()
        assert re.fullmatch(rf'GET {re.escape(server.url)}: {message}', str(info.value)), str(info.value)
    finally:
        zones.close()
        server.stop()


# -- the reference backend --------------------------------------------------------------------------
def _post(url: str, body: bytes) -> tuple[int, dict]:
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        connection.request('POST', '/events', body=body, headers={'Content-Type': 'application/json'})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_backend_refuses_hostile_event_json_with_the_limit_and_keeps_serving():
    backend = serve_in_thread()
    try:
        status, answer = _post(backend.url, b'{"event": ' + b'[' * 100_000 + b']' * 100_000 + b'}')
        assert status == 400
        assert answer == {'error': 'event refused: nested more than 128 levels deep: over the limit '
                                   'max_depth = 128'}
        status, answer = _post(backend.url, b'{"event_id": "e1", "n": 1}\x00')
        assert (status, answer) == (400, {'error': 'event refused: contains a NUL character (offset 26)'})
        status, answer = _post(backend.url, b'{"event_id": "e2", "n": 2}')
        assert status == 201, answer
    finally:
        backend.stop()


# -- JSON lines from a sensor -----------------------------------------------------------------------
def test_sensor_json_line_too_deep_is_a_parse_error_not_a_crash():
    parser = LineParser('json')
    with pytest.raises(LineParseError, match='refused: nested more than 64 levels deep'):
        parser.parse('{"d": ' + '[' * 4000 + ']' * 4000 + '}')
    assert parser.parse('{"d": [[1]]}') == {'d': [[1]]}


def test_limits_must_be_positive_integers():
    with pytest.raises(ValueError, match=r'DocumentLimits\.max_depth: expected an int >= 1'):
        DocumentLimits(max_depth=0)
