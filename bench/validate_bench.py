"""Benchmark: validate a generated 500-node graph (goal: < 1 s), JSON on stdout.

    . ./env.sh && python bench/validate_bench.py [--nodes 500] [--repeat 5]

The graph mixes what real sites have: sources, chains of pass-through nodes, bursts, fan-in,
file sinks, four container groups, per-edge delivery settings and parameters, so every rule runs.
Baseline in the same run: parsing the same file with PyYAML alone (the floor any YAML-based
validator pays); the validator's cost is reported next to it. Also measured: the end-to-end CLI
(`python -m schnitzel_stream_ros validate`, one process, including interpreter start).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate


def generate_graph(node_count: int) -> str:
    """A valid graph of about `node_count` nodes: chains of 10 (source, 8 nodes, sink) with fan-in."""
    lines = ['version: 2', 'namespace: /bench', 'nodes:']
    edges = ['edges:']
    chain = 0
    made = 0
    while made + 10 <= node_count:
        container = f'group{chain % 4}'
        source = f'src{chain}'
        lines += [f'  - id: {source}', '    kind: source', '    plugin: SyntheticSource',
                  f'    container: {container}',
                  f'    config: {{rate_hz: 10.0, count: 100, payload_bytes: 32, kind: event, '
                  f'source_id: cam{chain}}}']
        previous = source
        for step in range(8):
            node = f'n{chain}_{step}'
            plugin = ('BurstNode', 'Identity', 'PrintSink')[step % 3]
            config = {'BurstNode': '{count: 2, meta_key: copy}', 'Identity': '{}',
                      'PrintSink': '{prefix: "b ", forward: true}'}[plugin]
            lines += [f'  - id: {node}', f'    plugin: {plugin}', f'    container: {container}',
                      '    kind: node', f'    config: {config}']
            edges.append(f'  - {{from: {previous}, to: {node}, inbox: {{max: 32, overflow: drop_oldest}}}}')
            previous = node
        sink = f'sink{chain}'
        lines += [f'  - id: {sink}', '    kind: sink', '    plugin: JsonlSink', f'    container: {container}',
                  f'    config: {{path: /tmp/bench_{chain}.jsonl, body: payload}}']
        edges.append(f'  - {{from: {previous}, to: {sink}}}')
        if chain:  # fan-in: every chain's 4th node also feeds the previous chain's sink
            edges.append(f'  - {{from: n{chain}_3, to: sink{chain - 1}}}')
        chain += 1
        made += 10
    return '\n'.join(lines + edges + ['config: {}']) + '\n'


def timed(function, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return {'best_s': round(min(samples), 4), 'median_s': round(statistics.median(samples), 4),
            'max_s': round(max(samples), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', type=int, default=500)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'bench_graph.yaml'
        path.write_text(generate_graph(args.nodes), encoding='utf-8')

        def validate() -> None:  # a fresh registry each time: plugin resolution is part of the cost
            result = load_and_validate(path, PluginRegistry(Allowlist()))
            assert result.ok, [str(e) for e in result.errors[:3]]

        validate()
        result = load_and_validate(path, PluginRegistry(Allowlist()))
        fastest_loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
        baseline = timed(lambda: yaml.load(path.read_text(), Loader=fastest_loader), args.repeat)
        validation = timed(validate, args.repeat)
        cli_started = time.perf_counter()
        done = subprocess.run([sys.executable, '-m', 'schnitzel_stream_ros', 'validate', '--json', str(path)],
                              capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ))
        cli_seconds = time.perf_counter() - cli_started
    report = {
        'benchmark': 'graph validation',
        'graph': {'nodes': len(result.graph.nodes), 'edges': len(result.graph.edges),
                  'containers': len(result.graph.containers), 'yaml_bytes': len(generate_graph(args.nodes))},
        'repeat': args.repeat,
        'baseline_yaml_parse_only': baseline,
        'load_and_validate': validation,
        'validate_over_parse': round(validation['median_s'] / baseline['median_s'], 2),
        'cli_end_to_end_s': round(cli_seconds, 4),
        'cli_exit_code': done.returncode,
        'cli_reported_seconds': json.loads(done.stdout)['seconds'] if done.returncode == 0 else None,
        'goal_s': 1.0,
        'goal_met': validation['max_s'] < 1.0 and cli_seconds < 1.0,
        'python': sys.version.split()[0],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
