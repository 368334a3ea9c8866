#!/usr/bin/env python3
"""Events/s into a 3-node NATS JetStream cluster (replicas 3, every publish acked) from one edge
process: through our durable forwarder vs nats-py publishing the same events directly. One JSON object.

    python bench/jetstream_bench.py [--events 5000] [--rounds 2] [--concurrency 4,16]

Same run, same cluster (Debian's nats-server, three servers on 127.0.0.1, started here), same
events (protocol-v0.2-shaped payloads, ~300 bytes, subject events.<site>.<camera>.<type>,
`Nats-Msg-Id` = a fresh key per event so the duplicate window stores every one):
  forwarder (c=N)      a DurableQueue pre-filled with the events, drained by Forwarder with
                       JetStreamTarget and N worker threads (each waits for its ack; a row is
                       settled in the SQLite queue only after its ack) -- timed from start to empty
  direct_pipelined     baseline: nats-py publish_async with at most 256 acks outstanding, then
                       every ack awaited (what a bare publisher without a durable queue does)
  direct_sequential    baseline: nats-py publish + await ack, one at a time
Rounds alternate the modes, so load drift hits all of them alike; medians are reported with the
machine's load average. Nothing is printed but the JSON (server logs stay in the temp directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.delivery.bus_route import nats_subject
from schnitzel_stream_ros.delivery.forwarder import Forwarder, ForwarderConfig
from schnitzel_stream_ros.delivery.jetstream_target import JetStreamTarget
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.testing.nats_cluster import NatsCluster, add_stream, nats_server_path, stream_state

STREAM = 'BENCH'


def loadavg() -> str:
    try:
        return Path('/proc/loadavg').read_text().strip()
    except OSError:
        return ''


def payload(i: int, tag: str) -> dict:
    return {
        'event_id': f'{tag}-{i}',
        'ts': 1_700_000_000.0 + i * 0.04,
        'site_id': 'site-1',
        'camera_id': f'cam{i % 4}',
        'event_type': 'ZONE_ENTER',
        'object_type': 'PERSON',
        'severity': 'LOW',
        'track_id': i % 97,
        'bbox': {'x1': 10, 'y1': 20, 'x2': 110, 'y2': 220},
        'confidence': 0.87,
        'zone': {'zone_id': 'entrance', 'inside': True},
    }


def run_forwarder(urls: list[str], events: int, concurrency: int, tag: str, workdir: Path) -> float:
    queue = DurableQueue(workdir / f'{tag}.db', node_id='bench')
    try:
        for start in range(0, events, 500):
            queue.enqueue_many(
                [
                    StreamPacket.new('event', 'cam0', payload(i, tag), meta={'idempotency_key': f'{tag}:{i}'})
                    for i in range(start, min(events, start + 500))
                ]
            )
        target = JetStreamTarget(servers=tuple(urls), stream=STREAM, subject_prefix='events', timeout_sec=5.0)
        target.link()  # connected before the clock starts, as the direct baselines are
        config = ForwarderConfig(
            concurrency=concurrency,
            batch_size=128,
            backoff=Backoff(base_sec=0.05, cap_sec=0.5),
            idle_poll_sec=0.01,
        )
        forwarder = Forwarder(queue, target, config)
        started = time.perf_counter()
        forwarder.start()
        if not forwarder.wait_idle(600, poll_sec=0.005):
            raise RuntimeError(f'forwarder did not drain: {queue.depth()} left')
        elapsed = time.perf_counter() - started
        forwarder.stop()
        target.close()
        if queue.stats()['acked_total'] != events:
            raise RuntimeError('forwarder acked a different count than enqueued')
        return events / elapsed
    finally:
        queue.close()


async def _direct(urls: list[str], events: int, tag: str, pipelined: bool) -> float:
    import nats

    nc = await nats.connect(servers=urls)
    js = nc.jetstream(timeout=5.0, publish_async_max_pending=256)
    bodies = [json.dumps(payload(i, tag), separators=(',', ':')).encode() for i in range(events)]
    subjects = [nats_subject('events', b) for b in bodies]
    started = time.perf_counter()
    if pipelined:
        futures = [
            await js.publish_async(
                subjects[i], bodies[i], stream=STREAM, headers={'Nats-Msg-Id': f'{tag}:{i}'}
            )
            for i in range(events)
        ]
        await asyncio.gather(*futures)
    else:
        for i in range(events):
            await js.publish(subjects[i], bodies[i], stream=STREAM, headers={'Nats-Msg-Id': f'{tag}:{i}'})
    elapsed = time.perf_counter() - started
    await nc.close()
    return events / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=5000)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--concurrency', default='4,16', help='forwarder worker counts, comma-separated')
    args = parser.parse_args()
    if nats_server_path() is None:
        print(json.dumps({'error': 'nats-server not installed (scripts/install-system-deps)'}))
        return 2
    concurrencies = [int(c) for c in args.concurrency.split(',') if c]
    load_before = loadavg()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix='jetstream-bench-') as tmp:
        root = Path(tmp)
        with NatsCluster(root / 'cluster', size=3) as cluster:
            add_stream(cluster.urls, STREAM, ['events.>'], replicas=3)
            for rnd in range(args.rounds):
                for c in concurrencies:
                    name = f'forwarder_c{c}'
                    rate = run_forwarder(cluster.urls, args.events, c, f'r{rnd}{name}', root)
                    results.setdefault(name, []).append(rate)
                for pipelined, name in ((True, 'direct_pipelined'), (False, 'direct_sequential')):
                    rate = asyncio.run(_direct(cluster.urls, args.events, f'r{rnd}{name}', pipelined))
                    results.setdefault(name, []).append(rate)
            stored = stream_state(cluster.urls, STREAM).state.messages
    expected = args.events * args.rounds * (len(concurrencies) + 2)
    version = subprocess.run([nats_server_path(), '--version'], capture_output=True, text=True).stdout.strip()
    out = {
        'bench': 'jetstream',
        'what': 'events/s into a 3-node JetStream cluster, stream R3 (file), every publish acked',
        'events_per_round': args.events,
        'rounds': args.rounds,
        'events_per_sec_median': {k: round(statistics.median(v), 1) for k, v in results.items()},
        'events_per_sec_rounds': {k: [round(x, 1) for x in v] for k, v in results.items()},
        'stream_messages': stored,
        'stream_messages_expected': expected,
        'nats_server': version,
        'python': platform.python_version(),
        'cpus': os.cpu_count(),
        'loadavg_before': load_before,
        'loadavg_after': loadavg(),
    }
    print(json.dumps(out, indent=2))
    return 0 if stored == expected else 1


if __name__ == '__main__':
    sys.exit(main())
