"""Supervision under `ros2 launch`: a container that launch respawns gets its nodes back.

launch's `respawn=True` (the generated file sets it on every container) starts a dead container
process again, but launch_ros does not load its composable nodes again (launch_ros issue #361): the
container would come back empty. The generated file's `start_gate --supervise` process does it.

Real `launch`/`launch_ros` are not installable here, so — as in test_start_gate.py — the generated
launch file is executed against API-shaped stand-ins to read its actions, and each action is
carried out for real: containers and the gate run as the installed executables with the arguments
launch_ros gives them, nodes are loaded through the composition services one at a time. The
respawn is played the way launch does it: after the kill -9, the same command is started again.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time

import pytest
from test_diagnostics import DiagnosticsListener
from test_start_gate import (  # the same launch-playing harness
    as_load_request,
    client,  # noqa: F401 (fixture)
    launch_actions,
    node_command,
    procs,  # noqa: F401 (fixture)
    wait_for,
)

from schnitzel_stream_ros.runtime.container_handles import container_full_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECOVERY_LIMIT_SEC = 5.0

GRAPH = """
    version: 2
    namespace: /ls
    nodes:
      - {id: src, plugin: SyntheticSource, container: a, config: {rate_hz: 200.0, count: 0, payload_bytes: 4}}
      - {id: ident, plugin: Identity, container: b}
      - {id: out, kind: sink, plugin: JsonlSink, container: b, config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: ident, qos: {depth: 1000}, inbox: {max: 1000}}
      - {from: ident, to: out, inbox: {max: 1000}}   # the backlog after the respawn comes as a burst
"""


def _listed(target) -> list[str] | None:
    """The nodes a container lists; None when a request got lost (a respawned container's services
    look available before DDS matched them to us, runtime/reconciler.py) — ask again."""
    try:
        return sorted(target.list_nodes(timeout=2.0))
    except RuntimeError:
        return None


def _seqs(path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(line)['seq'] for line in path.read_text().splitlines() if line.endswith('}')]


def test_a_container_launch_respawns_gets_its_nodes_back_and_the_stream_goes_on(
        client, procs, tmp_path, monkeypatch, ros_domain):  # noqa: F811
    graph_path = tmp_path / 'graph.yaml'
    graph_path.write_text(textwrap.dedent(GRAPH).replace('TMP', str(tmp_path)))
    *containers, gate = launch_actions(graph_path, monkeypatch)
    assert all(c.kwargs['respawn'] is True for c in containers) and gate.kwargs['respawn'] is True
    commands, running = {}, {}
    for container in containers:
        commands[container.name] = node_command(
            container.kwargs['executable'], container.kwargs['arguments'], container.name, container.namespace
        )
        running[container.name], _log = procs.start(container.name, commands[container.name])
    gate_proc, gate_log = procs.start('gate', node_command(
        gate.executable, gate.kwargs['arguments'], gate.name, gate.namespace))
    for container in containers:  # launch_ros: one load request after the previous answer
        target = client.container(container_full_name(container.name, container.namespace))
        for description in container.nodes:
            assert target.load(as_load_request(container.name, description)).success
    out = tmp_path / 'out.jsonl'
    wait_for(lambda: len(_seqs(out)) > 200, 30, 'packets through both containers')

    listener = DiagnosticsListener(ros_domain, ('/diagnostics',))
    os.kill(running['b'].pid, signal.SIGKILL)  # the container with ident and out dies
    t_kill = time.monotonic()
    running['b'].wait(10)
    last = max(_seqs(out))
    running['b'], _log = procs.start('b-respawned', commands['b'])  # launch: respawn=True
    wait_for(lambda: max(_seqs(out)) > last + 20, 30, 'packets after the respawn')
    recovered = time.monotonic() - t_kill
    text = gate_log.read_text()
    assert 'container /ls/b lacks 2 of its nodes (respawned): loading them again' in text, text
    assert 'container /ls/b is back: 2 nodes reloaded and wired' in text, text
    assert recovered < RECOVERY_LIMIT_SEC, f'took {recovered:.1f} s'
    try:  # the supervisor's view on /diagnostics: reloaded, WARN, counted
        listener.wait_for(
            lambda: [s for _, s in listener.statuses('supervisor: /ls/b')
                     if s['level'] == 1 and s['values'].get('restarts_total') == '1'],
            10, 'the reload on /diagnostics',
        )
    finally:
        listener.close()
    assert running['a'].poll() is None  # the other container never stopped
    assert gate_proc.poll() is None  # the supervisor stays
    wait_for(lambda: _listed(client.container('/ls/b')) == ['/ls/ident', '/ls/out'], 20, 'the nodes of b')
    # after the respawn the numbers run on without a gap (the gap is the dead time)
    seqs = sorted(set(_seqs(out)))
    after = [s for s in seqs if s > last]
    assert after == list(range(after[0], after[0] + len(after)))
    print(json.dumps({'recovered_sec': round(recovered, 3)}))


def test_apply_under_launch_goes_through_the_supervisor_and_a_respawn_follows_the_applied_graph(
        client, procs, tmp_path, ros_env):  # noqa: F811
    import subprocess
    import sys

    from test_start_gate import executable

    v1 = tmp_path / 'v1.yaml'
    v1.write_text(textwrap.dedent(GRAPH).replace('TMP', str(tmp_path)))
    v2 = tmp_path / 'v2.yaml'  # insert a node between ident and out
    v2.write_text(
        textwrap.dedent(GRAPH).replace('TMP', str(tmp_path))
        .replace('\nedges:', '\n  - {id: mark, plugin: Identity, container: b}\nedges:')
        .replace('{from: ident, to: out,', '{from: ident, to: mark}\n  - {from: mark, to: out,')
    )
    commands = {name: node_command('component_container', ['--paused'], name, '/ls') for name in ('a', 'b')}
    running = {name: procs.start(name, cmd)[0] for name, cmd in commands.items()}
    gate_proc, gate_log = procs.start('gate', [executable('start_gate'), '--graph', str(v1), '--supervise'])
    from schnitzel_stream_ros.graph.validate import compile_graph
    from schnitzel_stream_ros.graph.wiring import load_requests

    targets = {name: client.container(f'/ls/{name}') for name in ('a', 'b')}
    for request in load_requests(compile_graph(v1)):
        assert targets[request.container_group].load(request).success
    out = tmp_path / 'out.jsonl'
    wait_for(lambda: len(_seqs(out)) > 100, 30, 'packets')
    done = subprocess.run([sys.executable, '-m', 'schnitzel_stream_ros', 'apply', str(v2)],
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'add node mark' in done.stdout
    assert sorted(targets['b'].list_nodes()) == ['/ls/ident', '/ls/mark', '/ls/out']

    os.kill(running['b'].pid, signal.SIGKILL)
    running['b'].wait(10)
    last = max(_seqs(out))
    procs.start('b-respawned', commands['b'])
    wait_for(lambda: max(_seqs(out)) > last + 20, 30, 'packets after the respawn')
    assert 'container /ls/b is back: 3 nodes reloaded' in gate_log.read_text()  # mark too
    wait_for(lambda: _listed(targets['b']) == ['/ls/ident', '/ls/mark', '/ls/out'], 20, 'the nodes of b')
    assert gate_proc.poll() is None
