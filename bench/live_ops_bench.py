"""Live operation figures: hot-replace swap time and stream pause; recovery time of a killed container.

    python bench/live_ops_bench.py [--swaps 20] [--kills 20] [--rate 1000]

1. hot-replace — a component_container process runs source (numbered, `--rate`/s) -> policy -> sink;
   the sink records when each packet arrived. Baseline (same run): the longest gap between two
   arrivals in a quiet period as long as the swap period. Then `--swaps` replaces of the policy
   node (alternating parameters and classes, state handed over): the time of each replace call
   (request to answer, over DDS) and the longest arrival gap while swapping. A second baseline:
   as many replace requests that change nothing (the node answers "unchanged"): what the call alone
   costs the stream. Every number must arrive exactly once (checked, reported).
2. recovery — `schnitzel-stream run` of a two-container graph (source -> durable queue); the
   container with the queue is killed with SIGKILL `--kills` times; recovery = from the kill until
   the runner reports it back with its node loaded and wired. Baseline (same run): the first start
   of the same container (spawn to node loaded and wired, as the runner's gate saw it).

Prints one JSON object. Figures are for this machine at the time of the run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port, Role

BENCH_MODULE = 'live_ops_bench'


# -- bench plugins (imported by the container as live_ops_bench:<Class>) -----------------------------
class BenchStamp(Plugin):
    """Counts what passes (the count is handed over on replace) and stamps the payload."""

    PASSTHROUGH = True
    PARAMS = (Param('tag', str, ''),)

    def setup(self) -> None:
        self.seen = 0

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        self.seen += 1
        return packet

    def snapshot_state(self) -> Any:
        return {'seen': self.seen}

    def restore_state(self, state: Any) -> None:
        self.seen = state['seen']


class OtherBenchStamp(BenchStamp):
    """The same under another class name (a replace may change the class)."""


class ArrivalSink(Plugin):
    """Remembers (seq, arrival ns) of every packet; writes them as JSON at close()."""

    ROLE = Role.SINK
    OUTPUTS = ()
    INPUTS = (Port('in'),)
    PARAMS = (Param('path', str),)

    def setup(self) -> None:
        self.rows: list[tuple[int, int]] = []

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        self.rows.append((packet.payload['seq'], time.monotonic_ns()))

    def close(self) -> None:
        Path(self.params['path']).write_text(json.dumps(self.rows))


# -- helpers -------------------------------------------------------------------------------------------
def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _longest_gap(rows: list[tuple[int, int]], t0: int, t1: int) -> float:
    times = [t for _seq, t in rows if t0 <= t <= t1]
    return max((b - a for a, b in itertools.pairwise(times)), default=0) / 1e9


def _env(domain: int) -> dict[str, str]:
    from schnitzel_stream_ros.testing.dds import localhost_env

    env = localhost_env(domain)
    env['PYTHONPATH'] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get('PYTHONPATH', '')])
    env['SCHNITZEL_STREAM_PLUGIN_ALLOWLIST'] = BENCH_MODULE
    return env


def _client(domain: int) -> Iterator[Any]:
    import rclpy
    from rclpy.node import Node

    from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = Node('live_ops_bench', context=context)
    executor = make_executor('single', context)
    executor.add_node(node)
    spinner = Spinner(executor, context, 'bench-client').start()
    try:
        yield node
    finally:
        spinner.stop()
        node.destroy_node()
        rclpy.shutdown(context=context)


# -- 1. hot-replace --------------------------------------------------------------------------------------
def bench_replace(domain: int, swaps: int, rate: float, workdir: Path) -> dict[str, Any]:
    from schnitzel_stream_ros.graph.wiring import LoadRequest
    from schnitzel_stream_ros.runtime.container_handles import ContainerClient, container_command
    from schnitzel_stream_ros.testing import processes

    arrivals = workdir / 'arrivals.json'

    def request(name: str, plugin: str, params: dict[str, Any]) -> LoadRequest:
        return LoadRequest('schnitzel_stream_ros', plugin, name, '/lob', (), params, 'box')

    policy = {'inputs.in': ['/lob/src/out']}
    cmd = container_command('box', '/lob', executor='events', max_events=None)
    cmd.remove('--paused')
    proc = processes.start(cmd, _env(domain), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for node in _client(domain):
            box = ContainerClient('/lob/box', node, lambda: None if proc.poll() is None else 'container died')
            box.wait_ready()
            for req in (
                request('sink', f'{BENCH_MODULE}:ArrivalSink',
                        {'path': str(arrivals), 'inputs.in': ['/lob/policy/out']}),
                request('policy', f'{BENCH_MODULE}:BenchStamp', {'tag': 'v0', **policy}),
                request('src', 'SyntheticSource', {'rate_hz': rate, 'count': 0, 'payload_bytes': 4}),
            ):
                result = box.load(req)
                if not result.success:
                    raise RuntimeError(result.error_message)
            time.sleep(2.0)  # warm up
            period = max(2.0, swaps * 0.25)
            quiet0 = time.monotonic_ns()
            time.sleep(period)
            quiet1 = noop0 = time.monotonic_ns()
            noop_calls = []  # replace requests that change nothing: the cost of the call alone
            for _ in range(swaps):
                t = time.perf_counter()
                result = box.replace(request('policy', f'{BENCH_MODULE}:BenchStamp', {'tag': 'v0', **policy}))
                noop_calls.append(time.perf_counter() - t)
                if not result.success:
                    raise RuntimeError(result.error_message)
                time.sleep(period / swaps)
            noop1 = swap0 = time.monotonic_ns()
            calls = []
            for i in range(1, swaps + 1):
                cls = 'OtherBenchStamp' if i % 2 else 'BenchStamp'
                t = time.perf_counter()
                result = box.replace(request('policy', f'{BENCH_MODULE}:{cls}', {'tag': f'v{i}', **policy}))
                calls.append(time.perf_counter() - t)
                if not result.success:
                    raise RuntimeError(result.error_message)
                time.sleep(period / swaps)
            swap1 = time.monotonic_ns()
            box.destroy()
    finally:
        processes.stop(proc)  # SIGTERM: the sink's close() writes the arrivals
    rows = json.loads(arrivals.read_text())
    seqs = [seq for seq, _t in rows]
    return {
        'rate_per_sec': rate,
        'swaps': swaps,
        'replace_call_ms': {'p50': _ms(statistics.median(calls)), 'max': _ms(max(calls))},
        'longest_gap_ms_while_swapping': _ms(_longest_gap(rows, swap0, swap1)),
        'baseline_longest_gap_ms_quiet': _ms(_longest_gap(rows, quiet0, quiet1)),
        'baseline_longest_gap_ms_noop_replace_calls': _ms(_longest_gap(rows, noop0, noop1)),
        'baseline_noop_replace_call_ms_p50': _ms(statistics.median(noop_calls)),
        'packets': len(seqs),
        'exactly_once_in_order': seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] == 0,
    }


# -- 2. recovery of a killed container -----------------------------------------------------------------
GRAPH = """
    version: 2
    namespace: /lor
    nodes:
      - {id: src, plugin: SyntheticSource, container: front,
         config: {rate_hz: 100.0, count: 0, payload_bytes: 8}}
      - {id: queue, kind: sink, plugin: SqliteQueueSink, container: back, config: {path: TMP/queue.db}}
    edges:
      - {from: src, to: queue}
"""


def _pid_of(parent: int, group: str) -> int | None:
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            cmdline = (entry / 'cmdline').read_bytes()
        except OSError:
            continue
        if ppid == parent and f'__node:={group}'.encode() in cmdline:
            return int(entry.name)
    return None


#: kills are spaced so that each finds the container healthy (reconciler.CONTAINER_HEALTHY_SEC)
HEALTHY_GAP_SEC = 5.5


def bench_recovery(domain: int, kills: int, workdir: Path) -> dict[str, Any]:
    from schnitzel_stream_ros.testing import processes

    graph = workdir / 'graph.yaml'
    graph.write_text(textwrap.dedent(GRAPH).replace('TMP', str(workdir)))
    log = workdir / 'run.txt'
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph),
           '--container-restarts', str(kills + 5), '--duration', str(60 + kills * 15)]
    t_start = time.monotonic()
    with log.open('w') as out:
        run = processes.start(cmd, _env(domain), stdout=subprocess.DEVNULL, stderr=out)
    back_re = re.compile(r"container 'back' is back: \d+ nodes reloaded and wired in ([0-9.]+) s")
    recoveries, reload_only = [], []
    try:
        while 'loaded /lor/queue' not in log.read_text():
            if run.poll() is not None or time.monotonic() - t_start > 60:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.02)
        first_start = time.monotonic() - t_start  # includes the runner's own start-up
        time.sleep(1.0)
        for _ in range(kills):
            pid = _pid_of(run.pid, 'back')
            seen = len(back_re.findall(log.read_text()))
            os.kill(pid, signal.SIGKILL)
            t_kill = time.monotonic()
            while len(found := back_re.findall(log.read_text())) <= seen:
                if run.poll() is not None or time.monotonic() - t_kill > 60:
                    raise RuntimeError(log.read_text()[-2000:])
                time.sleep(0.01)
            recoveries.append(time.monotonic() - t_kill)
            reload_only.append(float(found[-1]))
            time.sleep(HEALTHY_GAP_SEC)  # a container dying sooner after a restart gets a backoff
    finally:
        processes.stop(run)
    return {
        'kills': kills,
        'recovery_sec': {
            'p50': round(_percentile(recoveries, 0.5), 3),
            'p99': round(_percentile(recoveries, 0.99), 3),
            'max': round(max(recoveries), 3),
        },
        'restart_to_wired_sec_p50': round(_percentile(reload_only, 0.5), 3),
        'baseline_first_start_sec': round(first_start, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--swaps', type=int, default=20)
    parser.add_argument('--kills', type=int, default=20)
    parser.add_argument('--rate', type=float, default=1000.0)
    args = parser.parse_args()
    from schnitzel_stream_ros.testing.dds import lease_domain

    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ['SCHNITZEL_STREAM_PLUGIN_ALLOWLIST'] = BENCH_MODULE
    with lease_domain() as lease, tempfile.TemporaryDirectory() as tmp:
        out = {
            'hot_replace': bench_replace(lease.domain_id, args.swaps, args.rate, Path(tmp)),
            'container_recovery': bench_recovery(lease.domain_id, args.kills, Path(tmp)),
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
