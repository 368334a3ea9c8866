"""Credits of config.pace_sources across containers (runtime/pace_link.py) are hostile input: bounded, parsed.

The pacing itself runs through two real container processes in test/integration/test_pace_sources.py."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from schnitzel_stream_ros.runtime.pace_link import MAX_CREDIT_VALUES, parse_credit


def credit(name: str, *pairs: tuple[str, str]) -> DiagnosticStatus:
    return DiagnosticStatus(name=name, values=[KeyValue(key=k, value=v) for k, v in pairs])


def test_a_credit_gives_its_container_and_counts_per_topic():
    assert parse_credit(credit('/ns/second', ('/ns/burst/out', '42'), ('/ns/other', '0'))) == (
        '/ns/second', {'/ns/burst/out': 42, '/ns/other': 0})


def test_foreign_or_malformed_entries_are_ignored_never_trusted():
    got = parse_credit(credit('/c', ('/t', '-1'), ('/u', '1e9'), ('relative', '5'), ('/v', ' 7'),
                              ('/w', '9' * 20), ('/ok', '3')))
    assert got == ('/c', {'/ok': 3})
    assert parse_credit(credit('')) is None
    assert parse_credit(credit('x' * 600)) is None
    assert parse_credit(object()) is None


def test_a_credit_holds_at_most_max_values_topics():
    many = credit('/c', *((f'/t{i}', '1') for i in range(MAX_CREDIT_VALUES + 50)))
    assert len(parse_credit(many)[1]) == MAX_CREDIT_VALUES
