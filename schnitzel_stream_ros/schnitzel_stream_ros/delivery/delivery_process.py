"""Delivery from a process of its own, supervised by the node that owns the queue.

The forwarder's work is Python per event (an HTTP request each); in the producer's process it
competes for the GIL with the producer and the committer, and on a small machine for the CPUs.
Here it runs in a child process (delivery/delivery_worker.py, reniced by `nice`): its claims read
the file itself under the consumer lock, its writes come back over the pipe and are committed by
this process's group committer (consumer_queue.py says why), so a settle still rides along with a
producer's commit.

What an operator sees: the node's gauges carry the delivery counters as before (summed over
restarts) plus `delivery_process_running` / `delivery_process_restarts_total`; a delivery process
that dies is logged and started again (1 s, doubling to 30 s while it keeps dying), its leased rows
are due again at once and nothing is lost; stopping the node stops it after its in-flight requests
are settled, and it dies with the container (PR_SET_PDEATHSIG, end of its stdin).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue as queue_mod
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from schnitzel_stream_ros.delivery.consumer_queue import settle_request_parts
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.process_channel import ChannelError, LineChannel
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.rate_meter import RateMeter
from schnitzel_stream_ros.delivery.target import DeliveryTarget

_LOG = logging.getLogger('schnitzel_stream.delivery.process')

#: Niceness added to the delivery process by default: when the producer and delivery both want a
#: CPU, the producer's commit goes first; delivery still gets what the producer leaves.
DEFAULT_NICE = 5
RESTART_FIRST_SEC = 1.0
RESTART_MAX_SEC = 30.0
#: A delivery process that ran this long before dying restarts after RESTART_FIRST_SEC again.
HEALTHY_RUN_SEC = 30.0
WORKER_MODULE = 'schnitzel_stream_ros.delivery.delivery_worker'


class _Child:
    """One delivery process and the two threads that serve its pipe."""

    def __init__(self, owner: DeliveryProcess, start: dict[str, Any]) -> None:
        self.owner = owner
        # the container's own import path (it may have been set up without PYTHONPATH)
        path = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, '-m', WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            env={**os.environ, 'PYTHONPATH': path},
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.channel = LineChannel(self.proc.stdout, self.proc.stdin, f'delivery process {self.proc.pid}')
        self.started = time.monotonic()
        self.last_metrics: dict[str, Any] = {}
        self.ready = threading.Event()  # its forwarder runs (its first report arrived)
        self._answers: queue_mod.SimpleQueue[tuple[Any, Callable[[], Any]] | None] = queue_mod.SimpleQueue()
        self.channel.send(start)
        name = owner.queue.node_id
        self._reader = threading.Thread(target=self._read, name=f'{name}-delivery-pipe', daemon=True)
        self._answerer = threading.Thread(target=self._answer, name=f'{name}-delivery-answers', daemon=True)
        self._reader.start()
        self._answerer.start()

    def _read(self) -> None:
        """Requests of the delivery process: writes go to the committer at once (they do not wait
        here), their answers are sent in order by the answerer thread once committed."""
        queue = self.owner.queue
        try:
            while (message := self.channel.receive()) is not None:
                try:
                    self._serve(message)
                except Exception as exc:  # one bad request is refused, the pipe stays served
                    _LOG.error('node %s: bad request from the delivery process: %s', queue.node_id, exc)
                    if 'id' in message:
                        self._answers.put((message['id'], _raiser(ValueError(f'bad request: {exc}'))))
        except ChannelError as exc:
            _LOG.error('node %s: %s', queue.node_id, exc)
        finally:
            self._answers.put(None)

    def _serve(self, message: dict[str, Any]) -> None:
        queue = self.owner.queue
        kind = message['type']
        if kind == 'settle':
            acks, nacks, deads, linger = settle_request_parts(message)
            op = queue.submit_settle(acks, nacks, deads, linger)
            self._answers.put((message.get('id'), lambda: dataclasses.astuple(op.wait())))
        elif kind == 'release_backoff':
            self._answers.put((message.get('id'), queue.release_backoff))
        elif kind == 'expired':
            queue.record_expired([int(s) for s in message.get('seqs', [])])
        elif kind == 'metrics' and isinstance(message.get('values'), dict):
            self.last_metrics = message['values']
            self.ready.set()

    def _answer(self) -> None:
        while (item := self._answers.get()) is not None:
            call_id, result = item
            try:
                reply = {'type': 'done', 'id': call_id, 'result': result()}
            except Exception as exc:
                reply = {'type': 'failed', 'id': call_id, 'error': f'{type(exc).__name__}: {exc}'[:500]}
            with contextlib.suppress(ChannelError):
                self.channel.send(reply)

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ChannelError):
            self.channel.send(message)

    def finish(self, timeout: float) -> None:
        """Ask it to stop (it settles what is in flight), wait, kill if it does not end."""
        self.send({'type': 'stop'})
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _LOG.warning('node %s: delivery process %d did not stop in %.1f s; killed',
                         self.owner.queue.node_id, self.proc.pid, timeout)  # fmt: skip
            self.proc.kill()
            self.proc.wait(5)
        self.join()

    def join(self) -> None:
        self._reader.join(5)
        self._answerer.join(5)
        self.channel.close()


def _raiser(exc: Exception) -> Callable[[], Any]:
    def fail() -> Any:
        raise exc

    return fail


class DeliveryProcess:
    """The Forwarder's interface (start, stop, wait_idle, metrics, knobs) for delivery in a
    supervised child process."""

    def __init__(
        self,
        queue: DurableQueue,
        target: DeliveryTarget,
        config: ForwarderConfig,
        params: Mapping[str, Any],
        nice: int = DEFAULT_NICE,
    ) -> None:
        self.queue = queue
        self.target = target
        # the key set of the delivery counters, all 0, until the delivery process reports (the
        # node's gauges keep the key set of their first report); constructing a Forwarder also
        # makes a client once: a bad URL or a missing token fails now, in the node
        self._zero = {k: v for k, v in Forwarder(queue, target, config).delivery_metrics().items()}
        self._zero.update(lease_expired_total=0, in_flight=0)
        self.config = config
        self._params = dict(params)
        self._nice = nice
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._carried: dict[str, float] = {}  # counters of delivery processes that ended
        self.restarts_total = 0
        self._enqueue_rate = RateMeter()
        self._deliver_rate = RateMeter()

    def _start_message(self) -> dict[str, Any]:
        return {
            'type': 'start',
            'node_id': self.queue.node_id,
            'path': str(self.queue.path),
            'max_retry_delay_sec': self.queue.max_retry_delay_sec,
            'nice': self._nice,
            'params': json.loads(json.dumps(self._params, default=str)),
        }

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> DeliveryProcess:
        if self._supervisor is None:
            self._spawn()
            self._supervisor = threading.Thread(
                target=self._supervise, name=f'{self.queue.node_id}-delivery-supervisor', daemon=True
            )
            self._supervisor.start()
            _LOG.info('node %s: delivering %s to %s from process %d (nice +%d)', self.queue.node_id,
                      self.queue.path, self.target.masked_url, self._child.proc.pid, self._nice)  # fmt: skip
        return self

    def _spawn(self) -> None:
        child = _Child(self, self._start_message())
        with self._lock:
            self._child = child

    def _supervise(self) -> None:
        delay = RESTART_FIRST_SEC
        while True:
            child = self._child
            assert child is not None
            code = child.proc.wait()
            if self._stopping.is_set():
                return
            child.join()
            ran = time.monotonic() - child.started
            delay = RESTART_FIRST_SEC if ran >= HEALTHY_RUN_SEC else delay
            with self._lock:
                self._carry(child.last_metrics)
                child.last_metrics = {}
                self.restarts_total += 1
            _LOG.error(
                'node %s: delivery process %d ended (exit %s) after %.1f s; its rows are due again; '
                'restarting in %.1f s',
                self.queue.node_id, child.proc.pid, code, ran, delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            try:
                self._spawn()
            except (OSError, ChannelError) as exc:
                _LOG.error('node %s: cannot start the delivery process: %s', self.queue.node_id, exc)
                continue
            delay = min(RESTART_MAX_SEC, delay * 2)

    def _carry(self, metrics: Mapping[str, Any]) -> None:
        for name, value in metrics.items():
            if name.endswith('_total') and isinstance(value, int | float):
                self._carried[name] = self._carried.get(name, 0) + value

    def stop(self, timeout: float = 10.0) -> None:
        """The delivery process finishes its POSTs, settles them and ends; the rest stays queued."""
        self._stopping.set()
        child = self._child
        if child is not None:
            child.finish(timeout)
        if self._supervisor is not None:
            self._supervisor.join(5)
            self._supervisor = None
        late = self._child  # started by the supervisor while this stop began
        if late is not None and late is not child:
            late.finish(timeout)

    def wait_idle(self, timeout: float, poll_sec: float = 0.05) -> bool:
        """True once the queue is empty (a row leaves it only by an ack or a dead letter)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.depth() == 0:
                return True
            time.sleep(poll_sec)
        return False

    def wait_ready(self, timeout: float) -> bool:
        """True once the delivery process runs its forwarder (benchmarks start their clock here)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child = self._child
            if child is not None and child.ready.wait(0.05):
                return True
        return False

    # -- knobs -----------------------------------------------------------------------------------
    def set_batch_size(self, batch_size: int) -> None:
        self._knob('batch_size', batch_size)

    def set_concurrency(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f'concurrency: must be >= 1, got {concurrency}')
        self._knob('concurrency', concurrency)

    def _knob(self, name: str, value: int) -> None:
        self._params[name] = value  # a restarted delivery process starts with it too
        self.config = dataclasses.replace(self.config, **{name: value})
        child = self._child
        if child is not None:
            child.send({'type': 'knobs', name: value})

    # -- metrics ---------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    def metrics(self) -> dict[str, Any]:
        """The queue's stats (this process commits every write, so they are complete) with the
        delivery process's counters (summed over its restarts) and its state."""
        stats = self.queue.stats()
        self._enqueue_rate.observe(stats['enqueued_total'])
        self._deliver_rate.observe(stats['acked_total'])
        child = self._child
        with self._lock:
            delivery = {**self._zero, **(child.last_metrics if child is not None else {})}
            for name, value in self._carried.items():
                delivery[name] = delivery.get(name, 0) + value
            restarts = self.restarts_total
        running = child is not None and child.proc.poll() is None
        return {
            **stats,
            **delivery,
            'in_flight': delivery.get('in_flight', 0),
            'enqueue_rate_per_sec': round(self._enqueue_rate.rate(), 1),
            'deliver_rate_per_sec': round(self._deliver_rate.rate(), 1),
            'delivery_process_running': 1 if running else 0,
            'delivery_process_restarts_total': restarts,
        }
