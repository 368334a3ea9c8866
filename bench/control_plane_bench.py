"""CPU cost of the control plane (HTTP API + operator page) on the site's runner process.

The site demo (config/site.yaml: two cameras, the detector, 16 nodes in two container processes)
runs with the control plane on; the runner process (where the API, the push stream and the ROS
bridge live; the containers are other processes) is measured in alternating windows:
- `no_browser`: the control plane serves nobody;
- `one_browser`: one headless Chromium (Debian's) has the operator page open (server push at 2 Hz,
  camera frames, the graph);
and, in a second run of the demo in the same bench, the baseline:
- `no_control`: the runner without --control.

    python bench/control_plane_bench.py [--window 30] [--rounds 2]      # prints one JSON object

CPU is utime+stime of the runner process from /proc/<pid>/stat over each window, as % of one core;
the browser's own processes are reported separately (they are the operator's machine in real life).
Figures on a loaded 2-core machine are noisy: compare the windows of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.testing import processes  # noqa: E402

CLK_TCK = os.sysconf('SC_CLK_TCK')
WARMUP_SEC = 15.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children(current))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def runner_pid(demo_pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children(demo_pid):
            try:
                cmdline = Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
            except OSError:
                continue
            if b'run' in cmdline and any(part.endswith(b'site.yaml') for part in cmdline):
                return pid
        time.sleep(0.2)
    raise RuntimeError('the demo did not start its runner')


def window(pids_of, seconds: float) -> float:
    """% of one core used by the processes `pids_of()` names, over `seconds`."""
    pids = pids_of()
    before, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    return round(100.0 * (cpu_seconds(pids) - before) / (time.monotonic() - t0), 2)


def start_demo(out: Path, duration: float, control: bool) -> tuple[subprocess.Popen, Path]:
    out.mkdir(parents=True, exist_ok=True)
    log = out / 'demo.txt'
    args = ['--duration', str(duration), '--out', str(out), '--no-lanes']
    args += ['--control-port', '0'] if control else ['--no-control']
    with log.open('w') as err:
        demo = processes.start(processes.python_cmd('-m', 'schnitzel_stream_ros.demo.site_demo', *args),
                               os.environ.copy(), stdout=subprocess.DEVNULL, stderr=err)
    return demo, log


def page_address(log: Path, demo: subprocess.Popen) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise RuntimeError('the demo ended: ' + log.read_text()[-2000:])
        found = re.search(r'operator page (http://127\.0\.0\.1:\d+/)', log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise RuntimeError('the demo did not print the page address')


def browser(url: str, profile: Path) -> subprocess.Popen:
    chromium = shutil.which('chromium')
    if chromium is None:
        raise SystemExit('bench: Debian chromium is needed (scripts/install-system-deps)')
    return subprocess.Popen(
        [chromium, '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
         f'--user-data-dir={profile}', '--remote-debugging-port=0', '--window-size=1500,1300', url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def page_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + 'api/metrics', timeout=5) as answer:
                if json.load(answer)['nodes'].get('cam0', {}).get('produced', 0) > 0:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError('the site did not start producing')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--window', type=float, default=30.0, help='seconds per measuring window')
    parser.add_argument('--rounds', type=int, default=2, help='alternations of no_browser / one_browser')
    args = parser.parse_args()
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    result: dict = {'bench': 'control_plane', 'window_sec': args.window, 'rounds': args.rounds}
    with tempfile.TemporaryDirectory(prefix='control-bench-') as tmp:
        tmp_path = Path(tmp)
        # 1. control plane on: no browser / one browser, alternating
        duration = WARMUP_SEC + 2 * args.rounds * (args.window + 5) + 40
        demo, log = start_demo(tmp_path / 'with', duration, control=True)
        try:
            url = page_address(log, demo)
            runner = runner_pid(demo.pid)
            page_ready(url)
            time.sleep(WARMUP_SEC)
            idle, watched, chromium_cpu = [], [], []
            for round_no in range(args.rounds):
                idle.append(window(lambda: [runner], args.window))
                viewer = browser(url, tmp_path / f'profile{round_no}')
                try:
                    time.sleep(5.0)  # page loaded, graph drawn, push stream open
                    t0 = cpu_seconds(descendants(viewer.pid))
                    watched.append(window(lambda: [runner], args.window))
                    used = cpu_seconds(descendants(viewer.pid)) - t0
                    chromium_cpu.append(round(100 * used / args.window, 2))
                finally:
                    os.killpg(viewer.pid, signal.SIGTERM)
                    viewer.wait(20)
        finally:
            processes.stop(demo, signal.SIGINT, timeout=60)
            processes.stop(demo)
        # 2. baseline: the same site without --control
        duration = WARMUP_SEC + args.window * args.rounds + 45
        demo, log = start_demo(tmp_path / 'without', duration, control=False)
        try:
            runner = runner_pid(demo.pid)
            time.sleep(WARMUP_SEC + 20)  # start-up (models, cameras, start gate) and warm-up
            baseline = [window(lambda: [runner], args.window) for _ in range(args.rounds)]
        finally:
            processes.stop(demo, signal.SIGINT, timeout=60)
            processes.stop(demo)
    mean = lambda xs: round(sum(xs) / len(xs), 2)  # noqa: E731
    result.update({
        'runner_cpu_pct': {'no_control': baseline, 'no_browser': idle, 'one_browser': watched},
        'runner_cpu_pct_mean': {'no_control': mean(baseline), 'no_browser': mean(idle),
                                'one_browser': mean(watched)},
        'cost_of_one_browser_pct_of_a_core': round(mean(watched) - mean(idle), 2),
        'cost_of_control_plane_idle_pct_of_a_core': round(mean(idle) - mean(baseline), 2),
        'chromium_cpu_pct': chromium_cpu,
    })
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
