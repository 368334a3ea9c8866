"""CPU and memory of the idle site graph, per container process, next to an idle plain-rclpy node.

"Idle" is the site as it stands when nothing arrives: every container up with all 16 nodes loaded,
models in memory, both cameras unreachable (reconnecting with backoff), no sensor on the serial
line, the backend lane waiting. The graph is config/site.yaml with only the two camera nodes
pointed at a closed loopback port. Goal: <= 5 % of one core and <= 150 MB RSS per container.

    python bench/site_idle_bench.py [--seconds 20] [--diagnostics-period S]   # prints one JSON object
    python bench/site_idle_bench.py --frames      # not idle: cam0 plays the pedestrian clip at 10 fps

`--frames` shows what the containers hold once frames flow (cam0 as in config/site.yaml, cam1 still
unreachable): what an idle container does not load (OpenCV in the vision container) is loaded then.

CPU is read from /proc/<pid>/stat (utime+stime) over the measuring window after a warm-up; RSS
from /proc/<pid>/status, and its parts from /proc/<pid>/smaps_rollup: anonymous (the process's own
heap, stacks, model weights) and file-backed (mapped library code and data; these pages are shared
with every process mapping the same files and how many of them are resident moves with the machine's
page cache, so two runs can differ by a few MB there while the anonymous part stays put), and Pss.
The warm-up starts once every node is loaded (the run's first --timeline line), so a slow start on a
busy machine is not measured half-loaded. The baseline is a plain rclpy node spinning on the same
executor kind with one subscription, measured the same way in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.testing import processes  # noqa: E402
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset  # noqa: E402
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env  # noqa: E402

CLK_TCK = os.sysconf('SC_CLK_TCK')
BASELINE = '''
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('idle_baseline')
node.create_subscription(String, 'nothing', lambda m: None, 10)
executor = SingleThreadedExecutor()
executor.add_node(node)
try:
    executor.spin()
except BaseException:
    pass  # stopped by the bench
'''


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]  # closed again when this returns: connections are refused


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_parts_mb(pid: int) -> dict[str, float]:
    """Anonymous and file-backed parts of the RSS, and the Pss, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f'/proc/{pid}/smaps_rollup').read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == 'kB':
                fields[parts[0].rstrip(':')] = int(parts[1])
    except OSError:
        return {}
    rss, anonymous = fields.get('Rss', 0), fields.get('Anonymous', 0)
    return {'anonymous_mb': round(anonymous / 1024, 1), 'file_backed_mb': round((rss - anonymous) / 1024, 1),
            'pss_mb': round(fields.get('Pss', 0) / 1024, 1)}


def wait_for_first_line(path: Path, run: subprocess.Popen, timeout: float) -> bool:
    """True once the run wrote its first timeline line (all nodes loaded, the graph started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        if path.exists() and path.stat().st_size > 0:
            return True
        time.sleep(0.2)
    return False


def cmdline(pid: int) -> str:
    return Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace').strip()


def measure(pids: list[int], seconds: float) -> dict[int, dict[str, float]]:
    before = {pid: cpu_seconds(pid) for pid in pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return {
        pid: {'cpu_percent_of_core': round(100 * (cpu_seconds(pid) - before[pid]) / elapsed, 2),
              'rss_mb': round(rss_mb(pid), 1), **memory_parts_mb(pid)}
        for pid in pids
    }


def idle_site_graph(folder: Path, video: Path | None = None) -> Path:
    """The site graph with its cameras unreachable; with `video`, cam0 plays it (as in the site)."""
    graph = yaml.safe_load((REPO / 'schnitzel_stream_ros' / 'config' / 'site.yaml').read_text())
    for node in graph['nodes']:
        if node['id'] == 'cam0' and video is not None:
            node['config']['path'] = str(video)
        elif node['id'] in ('cam0', 'cam1'):
            node['plugin'] = 'OpenCvRtspSource'
            node['config'] = {'url': f'rtsp://127.0.0.1:{closed_port()}/{node["id"]}',
                              'source_id': node['id'], 'transport': 'tcp'}
    path = folder / 'site_idle.yaml'
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=20.0, help='measuring window')
    parser.add_argument('--warmup', type=float, default=8.0,
                        help='seconds between the graph having started (all nodes loaded) and measuring')
    parser.add_argument('--start-timeout', type=float, default=180.0,
                        help='seconds the graph may take to load and start')
    parser.add_argument('--diagnostics-period', type=float, default=None,
                        help='passed to the run (default: the runner default, 1 s; 0 = no /diagnostics)')
    parser.add_argument('--frames', action='store_true',
                        help='cam0 plays the pedestrian clip at 10 fps: the containers with frames flowing')
    args = parser.parse_args()
    video = asset(PEDESTRIAN_CLIP) if args.frames else None
    if args.frames and video is None:
        print(json.dumps({'skipped': f'{PEDESTRIAN_CLIP} missing (scripts/fetch-test-assets)'}))
        return 0
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp, lease_domain() as lease:
        folder = Path(tmp)
        env = localhost_env(lease.domain_id)
        env.update({'SITE_SERIAL_PORT': str(folder / 'no-sensor'), 'SITE_OUT': str(folder),
                    'SITE_BACKEND_URL': f'http://127.0.0.1:{closed_port()}/events'})
        graph = idle_site_graph(folder, video)
        timeline = folder / 'timeline.jsonl'
        duration = str(args.start_timeout + args.warmup + args.seconds + 30)
        diagnostics = [] if args.diagnostics_period is None else ['--diagnostics-period',
                                                                  str(args.diagnostics_period)]
        run = processes.start(
            processes.python_cmd('-m', 'schnitzel_stream_ros', 'run', str(graph), '--quiet',
                                 '--duration', duration, '--timeline', str(timeline), *diagnostics), env)
        baseline = processes.start(processes.python_cmd('-c', BASELINE), env)
        try:
            started = wait_for_first_line(timeline, run, args.start_timeout)
            time.sleep(args.warmup)
            if not started or run.poll() is not None:
                print(json.dumps({'error': f'the site run did not start or ended early (exit {run.poll()})'}))
                return 1
            names = {p: cmdline(p) for p in descendants(run.pid)}
            site_pids = [p for p, name in names.items() if 'python' in name]
            sample = measure([*site_pids, baseline.pid], args.seconds)
        finally:
            processes.stop(run)
            processes.stop(baseline)
    # several container groups: the runner coordinates, each group runs in a component_container
    containers = [
        {'pid': pid, 'process': 'runner' if pid == run.pid else names[pid][-60:], **sample[pid]}
        for pid in site_pids
    ]
    result = {
        'bench': 'site_idle',
        'window_sec': args.seconds,
        'graph': 'config/site.yaml, ' + ('cam0 playing the pedestrian clip, cam1 unreachable' if args.frames
                                          else 'cameras unreachable') + ', no sensor, backend down',
        'executor': 'runner default',
        'machine': {'cpus': os.cpu_count(), 'load_average_at_start': load_at_start,
                    'load_average_at_end': [round(x, 2) for x in os.getloadavg()]},
        'diagnostics_period_sec': 1.0 if args.diagnostics_period is None else args.diagnostics_period,
        'containers': containers,
        'baseline_plain_rclpy_idle_node': sample[baseline.pid],
        'goal': {'cpu_percent_of_core_max': 5.0, 'rss_mb_max': 150.0},
        'goal_met': all(c['cpu_percent_of_core'] <= 5.0 and c['rss_mb'] <= 150.0 for c in containers),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
