"""Pure delivery policy: backoff schedule, circuit breaker states, URL masking, body building."""

from __future__ import annotations

import json
import random

import pytest

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.breaker import BreakerState, CircuitBreaker, Permit
from schnitzel_stream_ros.delivery.forwarder import body_for
from schnitzel_stream_ros.delivery.queue import QueuedRow
from schnitzel_stream_ros.delivery.redact import mask_url


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_without_jitter_is_upstreams_schedule():
    backoff = Backoff(jitter='none')
    assert [backoff.delay(a) for a in range(1, 8)] == [1, 2, 4, 8, 10, 10, 10]
    assert backoff.delay(10_000) == 10  # no overflow for absurd attempt counts


def test_full_jitter_stays_within_the_exponential_bound_and_spreads():
    backoff = Backoff(rng=random.Random(3))
    for attempt in range(1, 10):
        draws = [backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= backoff.bound(attempt) for d in draws)
    late = [backoff.delay(6) for _ in range(500)]
    assert max(late) > 8 and min(late) < 2  # spread over [0, cap], not lock-step


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError, match='factor'):
        Backoff(factor=0.5)
    with pytest.raises(ValueError, match='base_sec'):
        Backoff(base_sec=-1)


def test_breaker_opens_after_consecutive_failures_and_probes_once():
    clock = FakeClock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        failure_threshold=3, open_sec=2.0, clock=clock, on_change=lambda old, new: changes.append((old, new))
    )
    assert breaker.acquire() is Permit.NORMAL
    breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state is BreakerState.OPEN
    assert breaker.acquire() is Permit.WAIT
    assert breaker.seconds_until_probe() == pytest.approx(2.0)
    clock.now += 2.0
    assert breaker.acquire() is Permit.PROBE
    assert breaker.acquire() is Permit.WAIT  # only one probe at a time
    breaker.record_failure()  # probe failed: open again, a new open period
    assert breaker.state is BreakerState.OPEN
    clock.now += 2.0
    assert breaker.acquire() is Permit.PROBE
    assert breaker.record_success() is True  # probe succeeded: closed
    assert breaker.acquire() is Permit.NORMAL
    assert changes[0] == (BreakerState.CLOSED, BreakerState.OPEN)
    assert changes[-1] == (BreakerState.HALF_OPEN, BreakerState.CLOSED)
    assert breaker.opened_total == 2


def test_unused_probe_is_given_back():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_sec=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.acquire() is Permit.PROBE
    breaker.release_probe()  # nothing to send after all
    assert breaker.acquire() is Permit.PROBE


@pytest.mark.parametrize(
    ('url', 'masked'),
    [
        (
            'https://user:s3cret@backend.example:8443/api/events',
            'https://user:***@backend.example:8443/api/events',
        ),
        ('https://ghp_TOKEN123@host/x', 'https://***@host/x'),
        (
            'http://host/ingest?token=abc&site=7&api_key=zzz',
            'http://host/ingest?token=***&site=7&api_key=***',
        ),
        ('http://127.0.0.1:18080/events', 'http://127.0.0.1:18080/events'),
        ('not a url', 'not a url'),
    ],
)
def test_mask_url_hides_credentials(url, masked):
    assert mask_url(url) == masked
    for secret in ('s3cret', 'TOKEN123', 'abc', 'zzz'):
        assert secret not in mask_url(url)


def test_body_for_payload_and_packet_modes():
    row = QueuedRow(
        7,
        'key-7',
        'pid',
        '2025-01-01T00:00:00Z',
        'event',
        'cam0',
        '{"a":[1,2]}',
        '{"idempotency_key":"key-7"}',
        0,
        0.0,
    )
    assert body_for(row, 'payload') == b'{"a":[1,2]}'
    assert json.loads(body_for(row, 'packet')) == {
        'packet_id': 'pid',
        'ts': '2025-01-01T00:00:00Z',
        'kind': 'event',
        'source_id': 'cam0',
        'payload': {'a': [1, 2]},
        'meta': {'idempotency_key': 'key-7'},
    }
