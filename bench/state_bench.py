"""Checkpointing cost on the tracking/policy part of the site lane: packets/s with `config.state`
off (baseline) and on, in the same run, plus checkpoint time and size.

The lane is the site's chain after the detector (IoU tracker -> protocol-v0.2 event builder ->
dedup -> sink, plus a per-track window of detections) fed with the same pre-built detection frames
(5 people drifting) through the deterministic engine, so the difference is the checkpoints alone
(periodic every CHECKPOINT_SEC, write-ahead for each event the dedup lets through and each id block
the tracker reserves). Prints one JSON object.

    python bench/state_bench.py [--frames 450] [--checkpoint-sec 0.2] [--rounds 3]

The frames travel inline in the graph (StaticSource), which bounds them to about 450 (the graph's
parameter size limit); rounds alternate off/on and the median of each is reported.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

GRAPH = """
version: 2
namespace: /bench
STATE
nodes:
  - {id: cam, plugin: StaticSource, config: {packets: PACKETS}}
  - {id: tracker, plugin: IouTrackerNode}
  - {id: events, plugin: ProtocolV02EventBuilderNode, config: {site_id: S1, camera_id: cam0}}
  - {id: dedup, plugin: DedupPolicyNode, config: {cooldown_sec: 5.0, clock: event_ts}}
  - {id: window, plugin: WindowAggregateNode,
     config: {size_sec: 10.0, key_field: track_id, aggregates: [count]}}
  - {id: out, kind: sink, plugin: JsonlSink, config: {path: OUT, body: payload}}
edges:
  - {from: cam, to: tracker}
  - {from: tracker, to: events}
  - {from: events, to: dedup}
  - {from: dedup, to: out}
  - {from: events, to: window}
"""


def frames(n: int) -> list[dict]:
    start = 1_767_225_600
    out = []
    for f in range(n):
        x = 0.05 * f
        dets = [{'bbox': {'x1': 100.0 * i + x, 'y1': 100.0, 'x2': 100.0 * i + 50 + x, 'y2': 200.0},
                 'confidence': 0.9, 'object_type': 'PERSON', 'class_id': 0} for i in range(5)]
        t = start + f * 0.1
        ts = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t)) + f'.{round((t % 1) * 1e6):06d}Z'
        out.append({'kind': 'detection', 'source_id': 'cam0', 'ts': ts, 'payload': dets})
    return out


def run(tmp: Path, packets: list[dict], state: str, name: str) -> dict:
    text = textwrap.dedent(GRAPH).replace('STATE', state).replace('PACKETS', json.dumps(packets))
    text = text.replace('OUT', str(tmp / f'{name}.jsonl'))
    path = tmp / f'{name}.yaml'
    path.write_text(text)
    graph = compile_graph(path)
    t0 = time.perf_counter()
    outcome = DeterministicEngine(graph).run()
    took = time.perf_counter() - t0
    assert not outcome.errors, outcome.errors
    counters = {k: v for s in outcome.snapshots for n, node in s['nodes'].items()
                for k, v in ((f'{n}.{c}', x) for c, x in node['counters'].items()) if 'state' in k}
    return {'packets_per_sec': round(len(packets) / took, 1), 'seconds': round(took, 3), 'state': counters}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--frames', type=int, default=450)
    parser.add_argument('--checkpoint-sec', type=float, default=0.2)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    packets = frames(args.frames)
    offs, ons = [], []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for r in range(args.rounds):
            offs.append(run(tmp, packets, '', f'off{r}'))
            db = tmp / f'state{r}.db'
            state = f'config:\n  state: {{path: {db}, checkpoint_sec: {args.checkpoint_sec}}}'
            ons.append(run(tmp, packets, state, f'on{r}'))
        baseline = {**offs[-1], 'packets_per_sec': statistics.median(o['packets_per_sec'] for o in offs)}
        on = {**ons[-1], 'packets_per_sec': statistics.median(o['packets_per_sec'] for o in ons)}
        conn = sqlite3.connect(db)
        rows = conn.execute('SELECT node, bytes, seq, took_ms FROM checkpoints ORDER BY node').fetchall()
        conn.close()
    print(json.dumps({
        'frames': args.frames, 'checkpoint_sec': args.checkpoint_sec, 'rounds': args.rounds,
        'engine': 'deterministic (one thread, no DDS): the lane\'s own cost, checkpoints included',
        'checkpointing_off': baseline, 'checkpointing_on': on,
        'throughput_ratio_on_off': round(on['packets_per_sec'] / baseline['packets_per_sec'], 3),
        'checkpoints': [{'node': n, 'bytes': b, 'written': s, 'last_took_ms': round(t, 3)}
                        for n, b, s, t in rows],
    }, indent=2))


if __name__ == '__main__':
    main()
