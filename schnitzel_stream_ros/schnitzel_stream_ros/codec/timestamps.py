"""Packet time text <-> builtin_interfaces/Time, exact at microsecond precision.

A packet's `ts` is ISO-8601 text (contract v1); on ROS topics it travels as `header.stamp` so that
ROS tools (time synchronisers, `ros2 topic echo`, bag players) see the real time. The conversion
uses integer arithmetic only (no float seconds), so every instant with microsecond resolution
survives the round trip. What comes back is the canonical spelling (`format_ts`: UTC, 'Z').

Limits: Time.sec is int32, so instants before 1901-12-13T20:45:52Z or after
2038-01-19T03:14:07.999999Z cannot be sent and are refused. Stamps made by other ROS nodes may
carry nanoseconds; those are cut to the microsecond (towards the past) when read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from builtin_interfaces.msg import Time

from schnitzel_stream_ros.codec.message_builders import new_time
from schnitzel_stream_ros.packet import format_ts, parse_ts

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_NANOS_PER_SECOND = 1_000_000_000


def datetime_to_stamp(dt: datetime, field: str = 'ts') -> Time:
    """Aware (or naive = UTC) datetime -> Time; refused outside the int32 seconds range."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    if not _INT32_MIN <= seconds <= _INT32_MAX:
        raise ValueError(
            f'{field}: {format_ts(dt)} is outside the range of header.stamp (int32 seconds: '
            '1901-12-13T20:45:52Z .. 2038-01-19T03:14:07Z)'
        )
    return new_time(seconds, delta.microseconds * 1000)


# The last conversion each way, as one tuple (replaced whole, so threads never see half of one):
# consecutive packets of a stream often share their time (a frame and everything derived from it),
# and the conversions are a good part of the codec's per-packet cost.
_last_ts: tuple[str, int, int] = ('', 0, 0)
_last_stamp: tuple[int, int, str] = (0, -1, '')


def ts_to_stamp(ts: str, field: str = 'ts') -> Time:
    """ISO-8601 packet time -> Time (digits below the microsecond are dropped)."""
    global _last_ts
    last = _last_ts
    if last[0] == ts:
        return new_time(last[1], last[2])
    try:
        dt = parse_ts(ts)
    except ValueError as exc:
        raise ValueError(f'{field}: not an ISO-8601 time: {ts!r}') from exc
    stamp = datetime_to_stamp(dt, field)
    _last_ts = (ts, stamp.sec, stamp.nanosec)
    return stamp


def stamp_to_datetime(stamp: Time, field: str = 'header.stamp') -> datetime:
    """Time -> aware UTC datetime (nanoseconds cut to microseconds)."""
    nanosec = stamp.nanosec
    if not 0 <= nanosec < _NANOS_PER_SECOND:
        raise ValueError(f'{field}.nanosec: {nanosec} is not in [0, 1e9)')
    return _EPOCH + timedelta(seconds=stamp.sec, microseconds=nanosec // 1000)


def stamp_to_ts(stamp: Time, field: str = 'header.stamp') -> str:
    """Time -> canonical packet time text."""
    global _last_stamp
    sec, nanosec = stamp.sec, stamp.nanosec
    last = _last_stamp
    if last[0] == sec and last[1] == nanosec:
        return last[2]
    ts = format_ts(stamp_to_datetime(stamp, field))
    _last_stamp = (sec, nanosec, ts)
    return ts


def header_ts(msg: object) -> str | None:
    """The packet time of a ROS message: its header stamp as ts text; None when the message has no
    header or the stamp is zero (publishers that leave it unset). ValueError for an impossible stamp."""
    stamp = getattr(getattr(msg, 'header', None), 'stamp', None)
    if stamp is None or not (stamp.sec or stamp.nanosec):
        return None
    return stamp_to_ts(stamp)
