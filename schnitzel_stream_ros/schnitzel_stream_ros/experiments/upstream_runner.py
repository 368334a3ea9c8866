"""Upstream's own in-process runner, one cell at a time, beside ours in the same benchmark run.

bench/backpressure_fairness.py --upstream DIR runs upstream's script
(scripts/experiments/run_backpressure_bench.py of a schnitzel-stream-platform checkout of branch
exp/backpressure-paper-submission) for the very cell and seed it has just run through our placements,
so machine load hits both alike. It runs under `--upstream-python` (an interpreter with upstream's
requirements, omegaconf among them), in a process of its own, through the small driver below:
- it calls the script's own `run()` with one policy file, one workload file, `--repeats 1` and the
  cell's seed as `--seed-base` (so the script computes exactly that seed);
- with clock `virtual` it first replaces the `time` module of upstream's experiment plugins by our
  VirtualClock (nodes/experiments/clock.py, loaded by file: the same class our plugins use), so both
  runners measure latency on the same virtual clock. Upstream's runner itself (its run duration,
  hence throughput) keeps the machine's clock.
The driver prints upstream's run record (its run schema, unchanged) as the last line.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.nodes.experiments import clock as clock_module

#: a cell of upstream's runner takes 1-5 s on a quiet machine
UPSTREAM_TIMEOUT_SEC = 600

DRIVER = r'''
import contextlib, importlib.util, io, json, sys
upstream, clock_file, base, policy, workload, seed, out, clock = sys.argv[1:9]
sys.path[:0] = [upstream + '/src', upstream + '/scripts/experiments']
import run_backpressure_bench as runner
if clock == 'virtual':
    spec = importlib.util.spec_from_file_location('virtual_clock', clock_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import schnitzel_stream.packs.experiments.nodes.backpressure as plugins
    plugins.time = module.VirtualClock()
text = io.StringIO()
with contextlib.redirect_stdout(text):
    code = runner.run(['--base', base, '--policy', policy, '--workload', workload, '--repeats', '1',
                       '--seed-base', seed, '--out-dir', out, '--json', '--compact'])
report = json.loads(text.getvalue().strip().splitlines()[-1])
print(json.dumps({'code': code, 'run': report['runs'][0]}), flush=True)
'''


def run_upstream_cell(*, upstream_dir: Path, python: str, base: Path, policy: Path, workload: Path, seed: int,
                      out_dir: Path, clock: str) -> dict[str, Any]:
    """Upstream's run record for one cell (its schema), or a record with status `error` saying why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [python, '-c', DRIVER, str(upstream_dir), str(Path(clock_module.__file__)), str(base), str(policy),
            str(workload), str(seed), str(out_dir), clock]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=UPSTREAM_TIMEOUT_SEC)
    except subprocess.TimeoutExpired:
        return {'status': 'error', 'error': f'upstream runner: no answer in {UPSTREAM_TIMEOUT_SEC} s'}
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get('run'), dict):
        tail = (done.stderr.strip().splitlines() or ['no output'])[-1][:300]
        return {'status': 'error', 'error': f'upstream runner (exit {done.returncode}): {tail}'}
    return answer['run']
