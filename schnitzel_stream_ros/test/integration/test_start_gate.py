"""Launch ≡ run: a finite graph loses no packet to the order in which its nodes are loaded.

launch_ros loads composable nodes one at a time, each request after the previous answer; a node
that ran as soon as it was loaded emitted into a graph that was not there yet (`chain.yaml` under
`ros2 launch` printed nothing). The start gate (runtime/start_gate.py) holds sources until every
node is loaded and every crossing topic matched.

Real `launch`/`launch_ros` are not installable here, so the first test plays the generated launch
file the way launch_ros does: the file is executed against API-shaped stand-ins
(test/unit/launch_api_standins.py) to read its actions, then each action is carried out for real —
the container and the start gate run as the installed executables with the arguments and
`--ros-args -r __node:=… -r __ns:=…` that launch_ros gives a Node, and the composable nodes are
loaded through the standard composition service, one at a time with a delay between loads. The
second test is the by-hand path: containers started with `--paused`, `start_gate --graph FILE`, and
loads from another process (this one).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'unit'))
import launch_api_standins

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph
from schnitzel_stream_ros.graph.wiring import PACKAGE_NAME, LoadRequest, load_requests
from schnitzel_stream_ros.launchgen import render_launch_file
from schnitzel_stream_ros.runtime.container_handles import ContainerClient, container_full_name
from schnitzel_stream_ros.runtime.executors import Spinner, make_executor
from schnitzel_stream_ros.testing import processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PACKAGE = Path(__file__).resolve().parents[2]
LOAD_DELAY_SEC = 0.5  # between two loads, as a slow launch would space them


def executable(name: str) -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix(PACKAGE_NAME)) / 'lib' / PACKAGE_NAME / name)


def node_command(exe: str, arguments: list[str], name: str, namespace: str) -> list[str]:
    """The command line launch_ros builds for a Node action with a name and a namespace."""
    return [executable(exe), *arguments, '--ros-args', '-r', f'__node:={name}', '-r', f'__ns:={namespace}']


class Client:
    """A plain rclpy node in this test process that loads nodes through composition services."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node('test_loader', context=self.context)
        executor = make_executor('single', self.context)
        executor.add_node(self.node)
        self.spinner = Spinner(executor, self.context, 'test-loader').start()

    def container(self, full_name: str) -> ContainerClient:
        client = ContainerClient(full_name, self.node)
        client.wait_ready()
        return client

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def client(ros_domain):
    c = Client(ros_domain)
    yield c
    c.close()


class Procs:
    def __init__(self, env: dict, tmp_path: Path) -> None:
        self.env, self.tmp_path, self.procs = env, tmp_path, []

    def start(self, name: str, cmd: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.tmp_path / f'{name}.log'
        with log.open('w') as out:
            proc = processes.start(cmd, self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, log

    def stop(self) -> None:
        for proc in self.procs:
            processes.stop(proc)


@pytest.fixture
def procs(ros_env, tmp_path):
    p = Procs(ros_env, tmp_path)
    yield p
    p.stop()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


def launch_actions(graph_path: Path, monkeypatch) -> list:
    """The actions of the generated launch file of a graph, as launch would receive them."""
    launch_api_standins.install(monkeypatch)
    graph = compile_graph(graph_path, PluginRegistry(Allowlist()))
    scope: dict = {}
    exec(compile(render_launch_file(graph), str(graph_path), 'exec'), scope)
    return scope['generate_launch_description']().entities


def as_load_request(container: str, description) -> LoadRequest:
    """A ComposableNode description as the LoadNode request launch_ros sends for it."""
    (params,) = description.parameters
    typed = launch_api_standins.ParameterValue
    values = {k: v.value if isinstance(v, typed) else v for k, v in params.items()}
    remaps = tuple(f'{a}:={b}' for a, b in description.remappings)
    return LoadRequest(
        package_name=description.package, plugin_name=description.plugin, node_name=description.name,
        node_namespace=description.namespace, remap_rules=remaps, parameters=values,
        container_group=container,
    )


@pytest.mark.parametrize('gate', [True, False], ids=['with-start-gate', 'without-gate-as-before'])
def test_chain_delivers_its_packet_through_the_launch_load_sequence(gate, client, procs, monkeypatch):
    *containers, gate_action = launch_actions(PACKAGE / 'test/graphs/valid/chain.yaml', monkeypatch)
    (container,) = containers
    arguments = container.kwargs['arguments'] if gate else []  # without: loaded nodes run at once
    _proc, log = procs.start('container', node_command(
        container.kwargs['executable'], arguments, container.name, container.namespace))
    gate_proc = None
    if gate:
        gate_proc, gate_log = procs.start('gate', node_command(
            gate_action.executable, gate_action.kwargs['arguments'], gate_action.name, gate_action.namespace))
    target = client.container(container_full_name(container.name, container.namespace))
    early = []
    for description in container.nodes:  # launch_ros: one request after the previous answer
        request = as_load_request(container.name, description)
        assert target.load(request).success
        if not gate and request.node_name == 'src':
            # without the gate the source runs at once: its one packet is out before the next load
            # (waited for, so a source thread slowed by a loaded machine cannot make it late enough)
            wait_for(lambda: target.snapshot()['nodes']['src']['produced'] == 1, 20, 'the early packet')
            early.append(request.node_name)
        time.sleep(LOAD_DELAY_SEC)
    if gate:
        wait_for(lambda: 'DEV ' in log.read_text(), 20, 'the packet at the sink')
        wait_for(lambda: 'graph started: 3 nodes in 1 containers' in gate_log.read_text(), 20, 'the gate')
        assert gate_proc.poll() is None, gate_log.read_text()  # it stays: the graph's supervisor
        assert log.read_text().count('DEV ') == 1
    else:
        assert early == ['src']  # loaded first, and its packet was out before the others came
        wait_for(lambda: target.snapshot()['state']['idle'], 20, 'the container idle')
        assert 'DEV ' not in log.read_text()  # the problem the gate solves: the packet was emitted too early


TWO_CONTAINERS = """
version: 2
namespace: /gate2
nodes:
  - {id: src, plugin: StaticSource, container: a,
     config: {packets: [{kind: demo, source_id: s, payload: {n: 1}},
                        {kind: demo, source_id: s, payload: {n: 2}}]}}
  - {id: ident, plugin: Identity, container: b}
  - {id: out, plugin: PrintSink, container: b, config: {prefix: 'GOT '}}
edges:
  - {from: src, to: ident}
  - {from: ident, to: out}
"""


def test_hand_started_containers_and_composition_loads_lose_nothing_across_processes(
        client, procs, tmp_path):
    graph_path = tmp_path / 'two.yaml'
    graph_path.write_text(TWO_CONTAINERS)
    graph = compile_graph(graph_path)
    logs = {name: procs.start(name, node_command('component_container', ['--paused'], name, '/gate2'))[1]
            for name in ('a', 'b')}
    gate_proc, gate_log = procs.start('gate', [executable('start_gate'), '--graph', str(graph_path)])
    targets = {name: client.container(f'/gate2/{name}') for name in ('a', 'b')}
    # the source first, its consumers in the other process last: the worst order for a finite source
    for request in load_requests(graph):
        assert targets[request.container_group].load(request).success
        time.sleep(LOAD_DELAY_SEC)
    wait_for(lambda: logs['b'].read_text().count('GOT ') == 2, 30, 'both packets in the other container')
    assert gate_proc.wait(20) == 0, gate_log.read_text()
    assert 'graph started: 3 nodes in 2 containers' in gate_log.read_text()


def test_the_gate_says_what_it_waits_for_and_gives_up_on_timeout(procs, tmp_path):
    graph_path = tmp_path / 'two.yaml'
    graph_path.write_text(TWO_CONTAINERS)
    command = [executable('start_gate'), '--graph', str(graph_path), '--timeout', '1.5']
    proc, log = procs.start('gate', command)
    assert proc.wait(30) == 1
    text = log.read_text()
    missing = 'container /gate2/a not reachable; container /gate2/b not reachable'
    assert f'gave up after 1.5 s; still missing: {missing}' in text, text


PACED_TWO_CONTAINERS = TWO_CONTAINERS.replace('namespace: /gate2\n',
                                              'namespace: /gate3\nconfig: {pace_sources: true}\n')


@pytest.mark.parametrize('consumer_reports', [True, False], ids=['consumer-credits', 'consumer-silent'])
def test_a_paced_graph_starts_only_once_its_source_container_has_heard_the_consumers_credit(
        consumer_reports, client, procs, tmp_path):
    """config.pace_sources across processes (runtime/pace_link.py): a source that starts before its
    container hears the consuming container's pace credits runs unpaced. The gate waits for that credit
    as well as for the DDS match: with a consumer container that reports (started last, its nodes loaded
    last) the graph starts and delivers; with one that never reports (started without --pace-sources)
    the gate does not open and says why — before, it opened on the DDS match alone."""
    graph_path = tmp_path / 'paced.yaml'
    graph_path.write_text(PACED_TWO_CONTAINERS)
    graph = compile_graph(graph_path)
    timeout = '60' if consumer_reports else '6'
    gate_proc, gate_log = procs.start('gate', [executable('start_gate'), '--graph', str(graph_path),
                                               '--timeout', timeout])
    logs = {'a': procs.start('a', node_command('component_container', ['--paused', '--pace-sources'],
                                               'a', '/gate3'))[1]}
    targets = {'a': client.container('/gate3/a')}
    for request in load_requests(graph):
        if request.container_group == 'a':
            assert targets['a'].load(request).success
    time.sleep(LOAD_DELAY_SEC)  # the consumer's container comes late
    flags = ['--paused'] + ['--pace-sources'] * consumer_reports
    logs['b'] = procs.start('b', node_command('component_container', flags, 'b', '/gate3'))[1]
    targets['b'] = client.container('/gate3/b')
    for request in load_requests(graph):
        if request.container_group == 'b':
            assert targets['b'].load(request).success
    if consumer_reports:
        wait_for(lambda: logs['b'].read_text().count('GOT ') == 2, 40, 'both packets in the other container')
        assert gate_proc.wait(20) == 0, gate_log.read_text()
    else:
        assert gate_proc.wait(40) == 1, gate_log.read_text()
        text = gate_log.read_text()
        assert 'topic /gate3/src/out: pace credits heard from 0/1 containers' in text, text
        assert 'GOT ' not in logs['b'].read_text()
