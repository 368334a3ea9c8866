"""Forwarder: drain a DurableQueue to the HTTP backend, at least once, without losing anything.

Worker threads (`concurrency`, each with its own keep-alive connection) claim batches of rows
under a lease, POST them one by one and settle the outcomes in one transaction per batch:
  2xx          -> ack (row deleted, acked ledger bumped, same commit)
  retryable    -> nack: attempts + 1, next attempt after backoff (full jitter, cap; at least
                  the backend's Retry-After) -- or dead letter once the attempt/age budget is spent
  other answer -> dead letter at once (retrying a 400 cannot help; it stays inspectable and
                  re-drivable instead of being dropped as upstream did)
A circuit breaker shared by the workers stops sending while the backend is down; a single probe
tests it; the first success closes the breaker and makes every row that waits for a retry due at
once, so the backlog flows again within a probe interval of the backend's return.

A row is only ever removed by an ack or a dead-letter commit. A crash anywhere leaves it in the
file; on restart it is due again (leases live in memory). That is the whole loss argument.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.breaker import STATE_CODE, BreakerState, CircuitBreaker, Permit
from schnitzel_stream_ros.delivery.errors import DeliveryError
from schnitzel_stream_ros.delivery.http_client import PostResult, Verdict
from schnitzel_stream_ros.delivery.queue import DeadLetter, DurableQueue, Nack, QueuedRow
from schnitzel_stream_ros.delivery.rate_meter import RateMeter
from schnitzel_stream_ros.delivery.target import DeliveryClient, DeliveryTarget

_LOG = logging.getLogger('schnitzel_stream.delivery.forwarder')

BODY_MODES = ('payload', 'packet')


@dataclass
class ForwarderConfig:
    """Delivery policy. Defaults: upstream's 1 s doubling to 10 s, retry until delivered."""

    concurrency: int = 4
    batch_size: int = 128
    lease_sec: float = 60.0
    body: str = 'payload'
    max_attempts: int | None = None  # failed attempts before dead-lettering (None/0: never)
    max_age_sec: float | None = None  # dead-letter a failing row older than this (None/0: never)
    idle_poll_sec: float = 0.25
    settle_interval_sec: float = 0.2
    # While a producer writes, a settle waits up to this long to share an enqueue's commit instead
    # of making the producer wait behind a commit of its own (group_commit.py). Longer than the gap
    # between a busy producer's commits (a few ms at 10,000/s, more when the CPU is short); the
    # price is a worker pausing that long per settle, i.e. per batch_size POSTs.
    settle_linger_sec: float = 0.02
    backoff: Backoff = field(default_factory=Backoff)
    breaker_failure_threshold: int = 5
    breaker_open_sec: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f'concurrency: must be >= 1, got {self.concurrency}')
        if self.batch_size < 1:
            raise ValueError(f'batch_size: must be >= 1, got {self.batch_size}')
        if self.body not in BODY_MODES:
            raise ValueError(f"body: must be 'payload' or 'packet', got {self.body!r}")
        if self.settle_linger_sec < 0:
            raise ValueError(f'settle_linger_sec: must be >= 0, got {self.settle_linger_sec}')
        if self.lease_sec <= 0:
            raise ValueError(f'lease_sec: must be > 0, got {self.lease_sec}')


def body_for(row: QueuedRow, mode: str) -> bytes:
    """The POST body from the stored JSON texts (no decode/re-encode of the payload)."""
    if mode == 'payload':
        return row.payload_json.encode()
    head = json.dumps(
        {'packet_id': row.packet_id, 'ts': row.ts, 'kind': row.kind, 'source_id': row.source_id},
        separators=(',', ':'),
        ensure_ascii=False,
    )
    return f'{head[:-1]},"payload":{row.payload_json},"meta":{row.meta_json}}}'.encode()


class _Outcomes:
    """What one worker learned since its last settle."""

    __slots__ = ('acks', 'deads', 'nacks')

    def __init__(self) -> None:
        self.acks: list[int] = []
        self.nacks: list[Nack] = []
        self.deads: list[DeadLetter] = []

    def __bool__(self) -> bool:
        return bool(self.acks or self.nacks or self.deads)


class Forwarder:
    """Background delivery of one queue to one target (HTTP, or a bus: delivery/target.py)."""

    def __init__(
        self,
        queue: DurableQueue,
        target: DeliveryTarget,
        config: ForwarderConfig | None = None,
        client_factory: Callable[[], DeliveryClient] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.target = target
        self.config = config or ForwarderConfig()
        self._client_factory = client_factory or target.new_client
        self._client_factory().close()  # fail now (bad URL, missing token env) rather than in a thread
        self._wall = wall_clock
        self.breaker = CircuitBreaker(
            self.config.breaker_failure_threshold,
            self.config.breaker_open_sec,
            on_change=self._breaker_changed,
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._counters: dict[str, int] = dict.fromkeys(
            (
                'posted_total',
                'failed_total',
                'retry_total',
                'attempts_total',
                'rejected_total',
                'budget_exhausted_total',
                'settle_errors_total',
                'worker_errors_total',
                'recovered_total',
                'parked_total',
            ),
            0,
        )
        self.last_error = ''
        self.parked_reason = ''  # set while delivery is parked by an auth/routing answer
        self._outage_started: float | None = None
        self.last_outage_sec = 0.0
        self._enqueue_rate = RateMeter()
        self._deliver_rate = RateMeter()

    def set_batch_size(self, batch_size: int) -> None:
        """A new claim size from the next claim on (a live knob): the workers read the config per
        claim, and replacing it is one reference assignment."""
        self.config = dataclasses.replace(self.config, batch_size=batch_size)

    # -- lifecycle ---------------------------------------------------------------------------

    def set_concurrency(self, concurrency: int) -> None:
        """A new number of workers (a live knob): more start now; the surplus ones end after
        their current round (its rows settled), so nothing claimed is left leased."""
        if concurrency < 1:
            raise ValueError(f'concurrency: must be >= 1, got {concurrency}')
        self.config = dataclasses.replace(self.config, concurrency=concurrency)
        if self._threads and not self._stop.is_set():
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            while len(self._threads) < self.config.concurrency:
                name = f'{self.queue.node_id}-forwarder-{len(self._threads)}'
                thread = threading.Thread(target=self._worker, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _surplus(self) -> bool:
        """This worker's place is beyond `concurrency` (lowered live): it ends; its place is freed."""
        with self._lock:
            me = threading.current_thread()
            if me in self._threads and self._threads.index(me) >= self.config.concurrency:
                self._threads.remove(me)
                return True
            return False

    def start(self) -> Forwarder:
        if self._threads:
            return self
        self._spawn()
        _LOG.info(
            'node %s: forwarding %s to %s (concurrency %d, batch %d)',
            self.queue.node_id,
            self.queue.path,
            self.target.masked_url,
            self.config.concurrency,
            self.config.batch_size,
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the POSTs in progress, settle them, give unsent rows back. Rows stay in the file."""
        self._stop.set()
        self.queue.release([])  # wakes workers that wait for rows
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):  # a surplus worker may leave meanwhile
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def wait_idle(self, timeout: float, poll_sec: float = 0.05) -> bool:
        """True once the queue is empty and nothing is in flight (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.depth() == 0 and self.queue.in_flight() == 0:
                return True
            time.sleep(poll_sec)
        return False

    # -- metrics -----------------------------------------------------------------------------
    def _add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def metrics(self) -> dict[str, Any]:
        """Queue gauges + delivery counters (upstream names where upstream had them)."""
        stats = self.queue.stats()
        self._enqueue_rate.observe(stats['enqueued_total'])
        self._deliver_rate.observe(stats['acked_total'])
        return {
            **stats,
            **self.delivery_metrics(),
            'enqueue_rate_per_sec': round(self._enqueue_rate.rate(), 1),
            'deliver_rate_per_sec': round(self._deliver_rate.rate(), 1),
        }

    def delivery_metrics(self) -> dict[str, Any]:
        """The delivery side alone (counters, breaker, errors), without the queue's stats: what a
        forwarder in its own process reports to the node (delivery/delivery_process.py)."""
        with self._lock:
            counters = dict(self._counters)
        state = self.breaker.state
        return {
            **counters,
            'breaker_state': state.value,
            'breaker_state_code': STATE_CODE[state],
            'breaker_opened_total': self.breaker.opened_total,
            'breaker_probes_total': self.breaker.probes_total,
            'last_outage_sec': round(self.last_outage_sec, 3),
            'delivery_parked': 1 if self.parked_reason else 0,
            'parked_reason': self.parked_reason,
            'last_error': self.last_error,
        }

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.CLOSED and self.parked_reason:
            _LOG.warning(
                'node %s: backend %s accepts again; delivery resumes',
                self.queue.node_id,
                self.target.masked_url,
            )
            self.parked_reason = ''
        if new is BreakerState.OPEN and old is BreakerState.CLOSED:
            self._outage_started = time.monotonic()
            _LOG.warning(
                'node %s: backend %s failing (%s); circuit open, probing every %.1f s',
                self.queue.node_id,
                self.target.masked_url,
                self.last_error,
                self.breaker.open_sec,
            )
        elif new is BreakerState.CLOSED and self._outage_started is not None:
            self.last_outage_sec = time.monotonic() - self._outage_started
            self._outage_started = None
            _LOG.warning(
                'node %s: backend %s answers again after %.1f s; circuit closed',
                self.queue.node_id,
                self.target.masked_url,
                self.last_outage_sec,
            )

    # -- the worker ----------------------------------------------------------------------------
    def _worker(self) -> None:
        client = self._client_factory()
        try:
            while not self._stop.is_set() and not self._surplus():
                try:
                    self._one_round(client)
                except DeliveryError as exc:
                    self._add('worker_errors_total')
                    _LOG.error('node %s: forwarder round failed: %s', self.queue.node_id, exc)
                    self._stop.wait(1.0)
                except Exception:
                    self._add('worker_errors_total')
                    _LOG.exception('node %s: forwarder round crashed; continuing', self.queue.node_id)
                    self._stop.wait(1.0)
        finally:
            client.close()

    def _one_round(self, client: DeliveryClient) -> None:
        permit = self.breaker.acquire()
        if permit is Permit.WAIT:
            self._stop.wait(min(max(self.breaker.seconds_until_probe(), 0.01), self.config.idle_poll_sec))
            return
        limit = self.config.batch_size if permit is Permit.NORMAL else 1
        rows = self.queue.claim(limit, self.config.lease_sec)
        if not rows:
            if permit is Permit.PROBE:
                self.breaker.release_probe()
            self.queue.wait_for_rows(self.config.idle_poll_sec)
            return
        settled: set[int] = set()
        try:
            recovered = self._send_rows(client, rows, permit, settled)
        finally:
            if permit is Permit.PROBE:
                self.breaker.release_probe()  # the probe row may have been unsendable (no verdict)
            # Whatever ended the round (a stop, a crash in a client, a failed settle), every row it
            # claimed is settled or given back now, never left leased until its lease runs out.
            unsettled = [r.seq for r in rows if r.seq not in settled]
            if unsettled:
                self.queue.release(unsettled)
        if recovered:
            waiting = self.queue.release_backoff()
            self._add('recovered_total')
            if waiting:
                _LOG.info('node %s: %d rows waiting for a retry are due now', self.queue.node_id, waiting)

    def _send_rows(
        self, client: DeliveryClient, rows: list[QueuedRow], permit: Permit, settled: set[int]
    ) -> bool:
        """POST the claimed rows, settling every settle_interval_sec; True when the backend came back."""
        outcomes = _Outcomes()
        last_settle = time.monotonic()
        recovered = False
        if hasattr(client, 'begin'):  # a pipelining target sends ahead (target.py); every round, so
            # nothing an earlier round left unsent goes out with this one
            client.begin([(body_for(row, self.config.body), row.idempotency_key) for row in rows])
        try:
            for index, row in enumerate(rows):
                if self._stop.is_set() or (
                    permit is Permit.NORMAL and index and self.breaker.state is not BreakerState.CLOSED
                ):
                    break  # not attempted: given back untouched by the caller, no attempt counted
                recovered |= self._judge(row, self._post(client, row), outcomes)
                if time.monotonic() - last_settle >= self.config.settle_interval_sec:
                    self._settle(outcomes, settled)
                    outcomes = _Outcomes()
                    last_settle = time.monotonic()
        finally:
            self._settle(outcomes, settled)
        return recovered

    def _post(self, client: DeliveryClient, row: QueuedRow) -> PostResult:
        """One POST; a client that raises (a defect, a hostile row) is an unsendable attempt of
        this row, never the end of the round."""
        try:
            return client.post(body_for(row, self.config.body), row.idempotency_key)
        except Exception as exc:
            _LOG.exception('node %s: could not send event %r', self.queue.node_id, row.idempotency_key[:80])
            return PostResult(Verdict.UNSENDABLE, None, f'not sent: {type(exc).__name__}: {exc}'[:300])

    def _judge(self, row: QueuedRow, result: PostResult, outcomes: _Outcomes) -> bool:
        """File the outcome of one POST; True when it closed an open breaker (backend is back)."""
        self._add('attempts_total')
        if result.verdict is Verdict.DELIVERED:
            outcomes.acks.append(row.seq)
            self._add('posted_total')
            return self.breaker.record_success()
        self._add('failed_total')
        self.last_error = result.error
        if result.verdict is Verdict.PARKED:
            return self._park(row, result)
        if result.verdict is Verdict.REJECTED:
            self.breaker.record_success()  # the backend is up and answering; only this event is bad
            self._add('rejected_total')
            _LOG.error(
                'node %s: event %s rejected (%s); moved to dead letters',
                self.queue.node_id,
                row.idempotency_key,
                result.error,
            )
            outcomes.deads.append(DeadLetter(row.seq, f'rejected: {result.error}', result.status))
            return False
        if result.verdict is not Verdict.UNSENDABLE:  # a local fault says nothing about the backend
            self.breaker.record_failure()
        attempts = row.attempts + 1
        cfg = self.config
        if cfg.max_attempts and attempts >= cfg.max_attempts:
            reason = f'gave up after {attempts} attempts (max_attempts={cfg.max_attempts}): {result.error}'
        elif cfg.max_age_sec and self._wall() - row.enqueued_epoch > cfg.max_age_sec:
            reason = f'older than max_age_sec={cfg.max_age_sec:g} after {attempts} attempts: {result.error}'
        else:
            delay = cfg.backoff.delay(attempts)
            if result.retry_after_sec is not None:
                delay = max(delay, result.retry_after_sec)
            outcomes.nacks.append(Nack(row.seq, delay, result.error))
            self._add('retry_total')
            return False
        self._add('budget_exhausted_total')
        _LOG.error(
            'node %s: event %s %s; moved to dead letters', self.queue.node_id, row.idempotency_key, reason
        )
        outcomes.deads.append(DeadLetter(row.seq, reason, result.status))
        return False

    def _park(self, row: QueuedRow, result: PostResult) -> bool:
        """An auth or routing answer (401/403/404...): the operator's mistake, not this event's.
        Open the circuit at once (probes continue every breaker_open_sec), leave the row untouched
        (the round gives it back, no attempt counted) and say so loudly once."""
        self._add('parked_total')
        first = not self.parked_reason
        self.parked_reason = result.error
        self.breaker.trip()
        if first:
            _LOG.error(
                'node %s: delivery PARKED: %s -- check the token / URL; %d events stay queued and are '
                'delivered once the backend accepts again (probing every %.1f s)',
                self.queue.node_id,
                result.error,
                self.queue.depth(),
                self.breaker.open_sec,
            )
        return False

    def _settle(self, outcomes: _Outcomes, settled: set[int]) -> None:
        if not outcomes:
            return
        try:
            self.queue.settle(
                outcomes.acks, outcomes.nacks, outcomes.deads, linger_sec=self.config.settle_linger_sec
            )
            settled.update(outcomes.acks)
            settled.update(n.seq for n in outcomes.nacks)
            settled.update(d.seq for d in outcomes.deads)
        except DeliveryError as exc:
            # Not settled: the round gives the rows back and they are sent again (duplicates at
            # the backend, never a loss).
            self._add('settle_errors_total')
            _LOG.error(
                'node %s: could not record %d outcomes: %s',
                self.queue.node_id,
                len(outcomes.acks) + len(outcomes.nacks) + len(outcomes.deads),
                exc,
            )
