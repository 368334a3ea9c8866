"""The delivery process: a Forwarder on a ConsumerQueue, driven over stdin/stdout by the node
that owns the queue (delivery/delivery_process.py starts it as `python -m` this module).

It ends with its owner: the kernel sends it SIGKILL when the owner dies (PR_SET_PDEATHSIG), and
the end of its stdin stops it too. Rows it claimed and had not settled are then simply due again
(leases are in memory): sent again by the next delivery process, never lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import signal
import sys
import threading
from typing import Any

from schnitzel_stream_ros.delivery.consumer_queue import ConsumerQueue
from schnitzel_stream_ros.delivery.errors import DeliveryError
from schnitzel_stream_ros.delivery.forwarder import Forwarder
from schnitzel_stream_ros.delivery.process_channel import ChannelError, LineChannel

_LOG = logging.getLogger('schnitzel_stream.delivery.worker')

METRICS_INTERVAL_SEC = 0.5
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # not Linux: the end of stdin still stops this process
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class OwnerLink:
    """Calls to the owner (answered by id) and the messages the owner sends."""

    def __init__(self, channel: LineChannel, timeout_sec: float = 60.0) -> None:
        self.channel = channel
        # an unanswered write is an error of the round (its rows are given back, sent again),
        # never a worker blocked for good
        self.timeout_sec = timeout_sec
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, list[Any]] = {}  # id -> [event, ok, value]
        self.gone = False

    def call(self, message: dict[str, Any]) -> Any:
        call_id = next(self._ids)
        slot: list[Any] = [threading.Event(), False, None]
        with self._lock:
            if self.gone:
                raise DeliveryError('the queue owner is gone; nothing recorded')
            self._waiting[call_id] = slot
        try:
            self.channel.send({**message, 'id': call_id})
        except ChannelError as exc:
            with self._lock:
                self._waiting.pop(call_id, None)
            raise DeliveryError(str(exc)) from exc
        if not slot[0].wait(self.timeout_sec):
            with self._lock:
                self._waiting.pop(call_id, None)
            raise DeliveryError(f'the queue owner did not answer in {self.timeout_sec:g} s')
        if not slot[1]:
            raise DeliveryError(f'the queue owner could not record it: {slot[2]}')
        return slot[2]

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.channel.send(message)
        except ChannelError as exc:
            _LOG.debug('%s', exc)

    def answer(self, call_id: Any, ok: bool, value: Any) -> None:
        with self._lock:
            slot = self._waiting.pop(call_id, None) if isinstance(call_id, int) else None
        if slot is not None:
            slot[1], slot[2] = ok, value
            slot[0].set()

    def owner_gone(self) -> None:
        with self._lock:
            self.gone = True
            waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot[1], slot[2] = False, 'the owner closed the pipe'
            slot[0].set()


def _metrics(forwarder: Forwarder, queue: ConsumerQueue) -> dict[str, Any]:
    return {**forwarder.delivery_metrics(), **queue.counts(), 'in_flight': queue.in_flight()}


def run(channel: LineChannel) -> int:
    from schnitzel_stream_ros.nodes.delivery.durable_forwarder_sink import forwarder_config
    from schnitzel_stream_ros.nodes.delivery.target_params import delivery_target_from_params

    start = channel.receive()
    if start is None or start['type'] != 'start':
        got = None if start is None else start['type']
        _LOG.error('delivery process: expected a start message, got %r', got)
        return 2
    node_id, params = str(start['node_id']), dict(start['params'])
    if start.get('nice'):
        os.nice(int(start['nice']))
    link = OwnerLink(channel, timeout_sec=max(60.0, float(params.get('lease_sec', 60.0))))
    queue = ConsumerQueue(
        start['path'], node_id, link.call, link.send, max_retry_delay_sec=float(start['max_retry_delay_sec'])
    )
    forwarder = Forwarder(queue, delivery_target_from_params(params, node_id), forwarder_config(params))
    stop = threading.Event()

    def read_owner() -> None:
        try:
            while (message := channel.receive()) is not None:
                kind = message['type']
                if kind in ('done', 'failed'):
                    value = message.get('result', message.get('error'))
                    link.answer(message.get('id'), kind == 'done', value)
                elif kind == 'knobs':
                    if 'batch_size' in message:
                        forwarder.set_batch_size(int(message['batch_size']))
                    if 'concurrency' in message:
                        forwarder.set_concurrency(int(message['concurrency']))
                elif kind == 'stop':
                    stop.set()
        except ChannelError as exc:
            _LOG.error('node %s: delivery process: %s', node_id, exc)
        link.owner_gone()
        stop.set()

    threading.Thread(target=read_owner, name=f'{node_id}-owner', daemon=True).start()
    forwarder.start()
    link.send({'type': 'metrics', 'values': _metrics(forwarder, queue)})  # running: the first report
    try:
        while not stop.wait(METRICS_INTERVAL_SEC):
            link.send({'type': 'metrics', 'values': _metrics(forwarder, queue)})
    finally:
        forwarder.stop()  # in-flight POSTs finish and are settled (while the owner still listens)
        link.send({'type': 'metrics', 'values': _metrics(forwarder, queue), 'final': True})
        forwarder.target.close()
        queue.close()
    return 0


def main() -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the owner decides
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format='[%(levelname)s] [delivery] %(message)s'
    )
    channel = LineChannel(sys.stdin.buffer, sys.stdout.buffer, 'pipe from the queue owner')
    sys.stdout = sys.stderr  # a stray print must not corrupt the pipe
    return run(channel)


if __name__ == '__main__':
    code = main()
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the pipe reader thread may sit in a read of stdin
