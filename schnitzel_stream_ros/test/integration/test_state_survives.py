"""State that survives a kill -9: dedup cooldowns and tracker ids across a supervised restart.

`schnitzel-stream run` of a three-container graph: `front` films three people standing still
(runtime_test_plugins:StandingPeople; the first leaves after 2 s, so the two who stay carry track
ids 2 and 3), `back` holds the IoU tracker, the event builder and the dedup (cooldown 12 s of event
time, which runs as fast as the wall clock), `tail` writes every event that passes to a JSONL
file. The graph configures checkpoints (`config.state`). One second after the second round of
events `back` is killed with SIGKILL; the supervisor restarts it and reloads its nodes, which
restore their last checkpoints. Expected: the two people keep ids 2 and 3 (a fresh tracker would
number them 1 and 2), and no event of a key (camera:event_type:track_id) reaches the sink inside
its cooldown (a fresh dedup would let both through as soon as the container is back, a few
seconds into the cooldown). The checkpoint file lists both nodes (`schnitzel-stream state
list`), the run report shows their state counters.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_diagnostics import DiagnosticsListener
from test_supervision import _children, _wait

from schnitzel_stream_ros.testing import processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

COOLDOWN_SEC = 12.0  # event time, which advances as fast as the wall clock (50 frames/s of 0.02 s)

GRAPH = """
    version: 2
    namespace: /st
    config:
      state: {path: TMP/state.db, checkpoint_sec: 0.5}
    nodes:
      - {id: cam, plugin: 'runtime_test_plugins:StandingPeople', container: front,
         config: {rate_hz: 50.0, people: 3, step_sec: 0.02, leave_after_frames: 100}}
      - {id: tracker, plugin: IouTrackerNode, container: back, config: {max_age_frames: 10}}
      - {id: events, plugin: ProtocolV02EventBuilderNode, container: back, config: {site_id: S1}}
      - {id: dedup, plugin: DedupPolicyNode, container: back,
         config: {cooldown_sec: COOLDOWN, clock: event_ts}}
      - {id: out, kind: sink, plugin: JsonlSink, container: tail,
         config: {path: TMP/events.jsonl, body: payload}}
    edges:
      - {from: cam, to: tracker, inbox: {max: 1000}}
      - {from: tracker, to: events}
      - {from: events, to: dedup}
      - {from: dedup, to: out, inbox: {max: 1000}}
"""


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # the line being written
    return out


def _t(event: dict) -> float:
    return datetime.fromisoformat(event['ts'].replace('Z', '+00:00')).timestamp()


def test_kill9_keeps_dedup_cooldowns_and_track_ids(tmp_path, ros_env, ros_domain):
    plugins = Path(__file__).resolve().parents[1] / 'runtime_plugins'
    env = {**ros_env, 'PYTHONPATH': f'{plugins}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
           'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'runtime_test_plugins'}
    graph = tmp_path / 'graph.yaml'
    text = textwrap.dedent(GRAPH).replace('TMP', str(tmp_path)).replace('COOLDOWN', str(COOLDOWN_SEC))
    graph.write_text(text)
    out = tmp_path / 'events.jsonl'
    err = tmp_path / 'stderr.txt'
    report_path = tmp_path / 'report.json'
    with err.open('w') as stream:
        run = processes.start([sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph),
                               '--duration', '100', '--report-json', str(report_path)],
                              env, stdout=subprocess.DEVNULL, stderr=stream)
    listener = DiagnosticsListener(ros_domain, ('/diagnostics',))
    try:
        # the first round of events (three people), then a second one after the cooldown (two)
        _wait(lambda: len(_events(out)) >= 5, 60, 'two rounds of events', run, err)
        before = _events(out)
        assert sorted(e['track_id'] for e in before) == [1, 2, 2, 3, 3], before
        time.sleep(1.0)  # early in the cooldown: the last events passed about 1 s ago
        containers = _children(run.pid)
        os.kill(containers['back'], signal.SIGKILL)
        _wait(lambda: "container 'back' is back" in err.read_text(), 30, 'the restart', run, err)
        # the restored state on /diagnostics: its checkpoint seq, size and age, per node
        restored = listener.wait_for(
            lambda: [s for _, s in listener.statuses('/st/back: dedup')
                     if float(s['values'].get('state_restored', 0)) > 0
                     and 'state_checkpoint_age_sec' in s['values'] and 'state_bytes' in s['values']],
            15, 'the restored dedup state on /diagnostics',
        )
        assert float(restored[0]['values']['state_checkpoint_age_sec']) < 60
        # run on past two more cooldowns after the restart
        t_restart = max(_t(e) for e in _events(out))
        _wait(lambda: any(_t(e) >= t_restart + 2 * COOLDOWN_SEC for e in _events(out)), 60,
              'events two cooldowns after the last one before the kill', run, err)
        run.send_signal(signal.SIGTERM)
        # not ok: a container was killed and restarted — degraded (3), or failed (1) when packets sent
        # to it while it was down were dropped (counted); what this test checks is the state
        assert run.wait(timeout=60) in (1, 3), err.read_text()[-3000:]
    finally:
        listener.close()
        processes.stop(run)
    events = _events(out)
    after = events[len(before):]
    assert after, 'no event after the restart'
    # track ids continue: the two who stayed keep ids 2 and 3, no new id
    assert {e['track_id'] for e in after} == {2, 3}, [e['track_id'] for e in after]
    # no event re-emitted inside its cooldown (event time), across the kill
    by_key: dict[str, list[float]] = {}
    for e in events:
        by_key.setdefault(f"{e['camera_id']}:{e['event_type']}:{e['track_id']}", []).append(_t(e))
    for key, times in by_key.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g >= COOLDOWN_SEC for g in gaps), (key, gaps)
    log = err.read_text()
    assert "node 'tracker': state restored from checkpoint" in log
    assert "node 'dedup': state restored from checkpoint" in log
    report = json.loads(report_path.read_text())
    metrics = report['metrics']
    assert metrics['node.dedup.state_restored'] > 0 and metrics['node.tracker.state_restored'] > 0
    assert metrics['node.dedup.state_bytes'] > 0 and 'node.tracker.state_checkpoint_age_sec' in metrics
    listed = subprocess.run(
        [sys.executable, '-m', 'schnitzel_stream_ros', 'state', 'list', str(tmp_path / 'state.db'), '--json'],
        env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = {row['node']: row for row in map(json.loads, listed.stdout.splitlines())}
    assert {'/st/tracker', '/st/dedup'} <= set(rows)
    print(json.dumps({'events_before': len(before), 'events_after': len(after),
                      'checkpoints': {n: r['seq'] for n, r in rows.items()}}))
