"""A producer + durable queue + forwarder process to be killed with SIGKILL by fault tests.

    python -m schnitzel_stream_ros.testing.delivery_child --queue Q.db --url URL --run-id R
        --start 0 --events 1000 --accepted-log accepted.txt [--rate 0] [--exit-when-idle]

Enqueues events `start..events-1` (key `R:i`) and forwards the queue to URL at the same time, like
a site's container does. After each enqueue call returns (= the row is committed = accepted) it
appends the key to the accepted log with one O_APPEND write: the kernel keeps that line even when
the process is killed the next instant, so the log is a lower bound of what was accepted (a kill
between commit and log write makes an accepted-but-unlisted event, which the oracle allows:
it must reach the backend too, but it is not counted as accepted). Output: one JSON line at exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.http_client import HttpTarget
from schnitzel_stream_ros.delivery.idempotency_key import wire_key
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket


def event_key(run_id: str, index: int, hostile: bool = False) -> str:
    """The event's key; with `hostile`, some keys are what a stranger on the DDS domain may write:
    non-Latin-1 text, CR/LF with a header behind it, 8 KB (the rest stay `run:index`)."""
    if hostile:
        if index % 50 == 7:
            return f'{run_id}:Łódź:cam0:{index}'
        if index % 50 == 17:
            return f'{run_id}:\r\nX-Injected: yes:{index}'
        if index % 50 == 27:
            return f'{run_id}:' + 'k' * 8192 + f':{index}'
    return f'{run_id}:{index}'


def logged_key(run_id: str, index: int, hostile: bool = False) -> str:
    """What the accepted log holds and the backend stores: the key's wire form (one line)."""
    return wire_key(event_key(run_id, index, hostile))


def read_accepted(path: str) -> list[str]:
    """Keys in the accepted log (a torn last line from a kill is ignored)."""
    try:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    lines = text.split('\n')
    return [line for line in lines[:-1] if line]  # the part after the last newline may be torn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='delivery_child')
    parser.add_argument('--queue', required=True)
    parser.add_argument('--url', required=True)
    parser.add_argument('--hostile-keys', action='store_true', help='some keys non-Latin-1, CR/LF, 8 KB')
    parser.add_argument('--run-id', required=True)
    parser.add_argument('--start', type=int, default=0)
    parser.add_argument('--events', type=int, required=True, help='produce indexes start..events-1')
    parser.add_argument('--accepted-log', required=True)
    parser.add_argument('--rate', type=float, default=0.0, help='events per second (0 = as fast as possible)')
    parser.add_argument('--concurrency', type=int, default=2)
    parser.add_argument('--timeout-sec', type=float, default=1.0)
    parser.add_argument('--breaker-open-sec', type=float, default=0.5)
    parser.add_argument(
        '--exit-when-idle',
        action='store_true',
        help='exit once produced and delivered (default: forward until SIGTERM)',
    )
    parser.add_argument('--idle-timeout-sec', type=float, default=600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f'child[{os.getpid()}] %(levelname)s %(message)s')

    queue = DurableQueue(args.queue, node_id='child-queue')
    forwarder = Forwarder(
        queue,
        HttpTarget(args.url, timeout_sec=args.timeout_sec),
        ForwarderConfig(
            concurrency=args.concurrency,
            batch_size=64,
            lease_sec=30.0,
            backoff=Backoff(base_sec=0.2, cap_sec=2.0),
            breaker_open_sec=args.breaker_open_sec,
        ),
    ).start()
    log_fd = os.open(args.accepted_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    next_at = time.monotonic()
    produced = 0
    for index in range(args.start, args.events):
        key = event_key(args.run_id, index, args.hostile_keys)
        packet = StreamPacket.new(
            'event', 'child', {'i': index, 'run': args.run_id}, meta={'idempotency_key': key}
        )
        queue.enqueue(packet)
        os.write(log_fd, f'{wire_key(key)}\n'.encode())
        produced += 1
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    os.close(log_fd)
    idle = True
    if args.exit_when_idle:
        idle = forwarder.wait_idle(args.idle_timeout_sec)
    else:  # keep forwarding until told to stop (or killed)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    forwarder.stop()
    metrics = forwarder.metrics()
    queue.close()
    print(json.dumps({'produced': produced, 'idle': idle, 'metrics': metrics}), flush=True)
    return 0 if idle else 1


if __name__ == '__main__':
    sys.exit(main())
