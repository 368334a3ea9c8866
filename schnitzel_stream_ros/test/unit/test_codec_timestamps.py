"""Packet time text <-> builtin_interfaces/Time: exact at microseconds over the whole int32 range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from builtin_interfaces.msg import Time
from hypothesis import given, settings
from hypothesis import strategies as st

from schnitzel_stream_ros.codec.timestamps import (
    datetime_to_stamp,
    stamp_to_datetime,
    stamp_to_ts,
    ts_to_stamp,
)
from schnitzel_stream_ros.packet import format_ts, parse_ts

FIRST = datetime(1901, 12, 13, 20, 45, 52, tzinfo=UTC)
LAST = datetime(2038, 1, 19, 3, 14, 7, 999_999, tzinfo=UTC)


def test_known_instant():
    stamp = ts_to_stamp('2026-02-14T00:00:00.123456Z')
    assert (stamp.sec, stamp.nanosec) == (1_771_027_200, 123_456_000)
    assert stamp_to_ts(stamp) == '2026-02-14T00:00:00.123456Z'


def test_offsets_are_converted_to_utc():
    assert stamp_to_ts(ts_to_stamp('2026-02-14T01:00:00+01:00')) == '2026-02-14T00:00:00Z'


def test_before_1970_uses_negative_seconds_and_positive_nanoseconds():
    stamp = ts_to_stamp('1969-12-31T23:59:59.5Z')
    assert (stamp.sec, stamp.nanosec) == (-1, 500_000_000)
    assert stamp_to_ts(stamp) == '1969-12-31T23:59:59.500000Z'


@settings(max_examples=150, deadline=None)
@given(
    st.datetimes(min_value=FIRST.replace(tzinfo=None), max_value=LAST.replace(tzinfo=None)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_every_microsecond_instant_round_trips(naive_utc, offset_minutes):
    instant = naive_utc.replace(tzinfo=UTC)
    local_text = instant.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()
    stamp = ts_to_stamp(local_text)
    assert stamp_to_datetime(stamp) == instant
    assert stamp_to_ts(stamp) == format_ts(instant)
    assert parse_ts(stamp_to_ts(stamp)) == instant


def test_range_limits_are_exact():
    assert stamp_to_datetime(datetime_to_stamp(FIRST)) == FIRST
    assert stamp_to_datetime(datetime_to_stamp(LAST)) == LAST
    with pytest.raises(ValueError, match=r'ts: 2038-01-19T03:14:08Z is outside the range of header.stamp'):
        ts_to_stamp('2038-01-19T03:14:08Z')
    with pytest.raises(ValueError, match=r'ts: .* is outside the range'):
        datetime_to_stamp(FIRST - timedelta(microseconds=1))


def test_nanoseconds_from_other_ros_nodes_are_cut_to_microseconds():
    assert stamp_to_ts(Time(sec=10, nanosec=999_999_999)) == '1970-01-01T00:00:10.999999Z'
    assert stamp_to_ts(Time(sec=10, nanosec=999)) == '1970-01-01T00:00:10Z'


def test_invalid_nanoseconds_are_refused_by_name():
    with pytest.raises(ValueError, match=r'header.stamp.nanosec: 1000000000 is not in \[0, 1e9\)'):
        stamp_to_ts(Time(sec=0, nanosec=1_000_000_000))


@pytest.mark.parametrize('bad', ['', 'now', '14.02.2026', None])
def test_bad_ts_text_is_refused_by_name(bad):
    with pytest.raises(ValueError, match='ts: not an ISO-8601 time'):
        ts_to_stamp(bad)  # type: ignore[arg-type]
