#!/usr/bin/env python3
"""What managed nodes cost: loading N nodes into one container with and without the lifecycle interface.

Every plugin node is a lifecycle node; its interface (five services and `~/transition_event`) is
DDS entities per node. This loads N Identity nodes one after another through the composition
service into a fresh `component_container` (events executor), once as shipped and once with
`-p lifecycle_services:=false` (the baseline: the same nodes without the interface), in the same
run, and reports the load time and the container's RSS afterwards. Prints one JSON object.

    python bench/lifecycle_bench.py [--nodes 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402

from schnitzel_stream_ros.graph.wiring import PACKAGE_NAME, LoadRequest  # noqa: E402
from schnitzel_stream_ros.runtime.container_handles import ContainerClient, container_command  # noqa: E402
from schnitzel_stream_ros.runtime.executors import Spinner, make_executor  # noqa: E402
from schnitzel_stream_ros.testing import processes  # noqa: E402
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env  # noqa: E402

IDENTITY = 'schnitzel_stream_ros.nodes.core.identity:Identity'


def _rss_mb(pid: int) -> float:
    status = Path(f'/proc/{pid}/status').read_text()
    return int(status.split('VmRSS:')[1].split()[0]) / 1024


def load_nodes(nodes: int, ros_params: list[str]) -> dict[str, float]:
    with lease_domain() as lease:
        cmd = container_command('box', '/lb', executor='events', max_events=None)
        for param in ros_params:
            cmd += ['-p', param]
        proc = processes.start(cmd, localhost_env(lease.domain_id), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=lease.domain_id)
        node = Node('lifecycle_bench', context=context)
        executor = make_executor('single', context)
        executor.add_node(node)
        spinner = Spinner(executor, context, 'lifecycle-bench').start()
        client = ContainerClient('/lb/box', node)
        try:
            client.wait_ready(30)
            t0 = time.monotonic()
            for i in range(nodes):
                request = LoadRequest(PACKAGE_NAME, IDENTITY, f'n{i}', '/lb', (), {}, 'box')
                result = client.load(request)
                if not result.success:
                    raise RuntimeError(result.error_message)
            seconds = time.monotonic() - t0
            return {'load_seconds': seconds, 'rss_mb': _rss_mb(proc.pid)}
        finally:
            client.destroy()
            spinner.stop()
            node.destroy_node()
            rclpy.shutdown(context=context)
            processes.stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', type=int, default=100)
    parser.add_argument('--rounds', type=int, default=2, help='interleaved rounds of each case (median)')
    args = parser.parse_args()
    cases = {'managed': [], 'baseline_without_lifecycle_services': ['lifecycle_services:=false']}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, params in cases.items():
            runs[name].append(load_nodes(args.nodes, params))
    out = {
        name: {
            key: round(statistics.median(r[key] for r in results), 2) for key in ('load_seconds', 'rss_mb')
        }
        for name, results in runs.items()
    }
    managed, base = out['managed'], out['baseline_without_lifecycle_services']
    out['nodes'] = args.nodes
    out['per_node_extra'] = {
        'load_ms': round((managed['load_seconds'] - base['load_seconds']) / args.nodes * 1e3, 2),
        'rss_mb': round((managed['rss_mb'] - base['rss_mb']) / args.nodes, 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
