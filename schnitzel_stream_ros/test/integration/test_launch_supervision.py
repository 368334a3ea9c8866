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


def _seqs(path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(line)['seq'] for line in path.read_text().splitlines() if line.endswith('}')]


def test_a_container_launch_respawns_gets_its_nodes_back_and_the_stream_goes_on(
        client, procs, tmp_path, monkeypatch):  # noqa: F811
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
    assert running['a'].poll() is None  # the other container never stopped
    assert gate_proc.poll() is None  # the supervisor stays
    b = client.container('/ls/b')
    assert sorted(b.list_nodes()) == ['/ls/ident', '/ls/out']
    # after the respawn the numbers run on without a gap (the gap is the dead time)
    seqs = sorted(set(_seqs(out)))
    after = [s for s in seqs if s > last]
    assert after == list(range(after[0], after[0] + len(after)))
    print(json.dumps({'recovered_sec': round(recovered, 3)}))
