"""Plugin nodes are managed (lifecycle) nodes, driven from another process as `ros2 lifecycle` does.

The container is the installed `component_container` process; this test process is the lifecycle
client (lifecycle_msgs services `~/change_state`, `~/get_state`, `~/get_available_states`,
`~/get_available_transitions`, the `~/transition_event` topic) and an outside subscriber of the
nodes' output topics, all over real DDS on the test's leased domain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from composition_interfaces.srv import ListNodes, LoadNode, UnloadNode
from lifecycle_msgs.msg import Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetAvailableStates, GetAvailableTransitions, GetState
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.packet_codec import decode_packet
from schnitzel_stream_ros.runtime.container_handles import container_command
from schnitzel_stream_ros.runtime.lifecycle_manager import BringUpPlan
from schnitzel_stream_ros.runtime.start_gate import GatePlan
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = pytest.mark.integration

CONTAINER = '/t/box'
SOURCE = 'schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource'
IDENTITY = 'schnitzel_stream_ros.nodes.core.identity:Identity'


class LifecycleClient(RosPeer):
    """What `ros2 lifecycle` and `ros2 component load` do, from this test process."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, 'lifecycle_client')
        self._lock = threading.Lock()

    def load(self, plugin: str, name: str, params: dict, extra: dict | None = None):
        request = LoadNode.Request(
            package_name='schnitzel_stream_ros', plugin_name=plugin, node_name=name, node_namespace='/t'
        )
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in params.items()]
        request.extra_arguments = [Parameter(k, value=v).to_parameter_msg() for k, v in (extra or {}).items()]
        response = self.call(LoadNode, f'{CONTAINER}/_container/load_node', request)
        assert response.success, response.error_message
        return response

    def change(self, node: str, label: str) -> bool:
        request = ChangeState.Request(transition=Transition(label=label))
        return self.call(ChangeState, f'/t/{node}/change_state', request).success

    def change_by_id(self, node: str, transition_id: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(ChangeState, f'/t/{node}/change_state', request).success

    def state(self, node: str) -> str:
        return self.call(GetState, f'/t/{node}/get_state', GetState.Request()).current_state.label

    def transitions(self, node: str) -> set[str]:
        response = self.call(
            GetAvailableTransitions, f'/t/{node}/get_available_transitions', GetAvailableTransitions.Request()
        )
        return {t.transition.label for t in response.available_transitions}

    def report(self) -> dict:
        return json.loads(self.call(Trigger, f'{CONTAINER}/_schnitzel/report', Trigger.Request()).message)

    def collect_seqs(self, topic: str) -> list[int]:
        """The payload `seq` of every packet arriving on `topic`, in arrival order (a live list)."""
        seqs: list[int] = []
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)

        def on_msg(msg: StreamPacketMsg) -> None:
            with self._lock:
                seqs.append(decode_packet(msg).payload['seq'])

        self.node.create_subscription(StreamPacketMsg, topic, on_msg, qos)
        return seqs

    def collect_events(self, node: str) -> list[tuple[str, str]]:
        """(start state, goal state) of every `~/transition_event` of `node`: rcl publishes one as
        a transition starts (active -> deactivating) and one as it ends (deactivating -> inactive).
        Its `transition` field comes as rcl fills it (id 0, no label, with the Jazzy wheels), so the
        states are what is checked."""
        events: list[tuple[str, str]] = []

        def on_event(msg: TransitionEvent) -> None:
            with self._lock:
                events.append((msg.start_state.label, msg.goal_state.label))

        self.node.create_subscription(TransitionEvent, f'/t/{node}/transition_event', on_event, 100)
        return events


def _wait_for(predicate, timeout: float = 20.0, what: str = 'condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out waiting for {what}')


def _start_container(env: dict, tmp_path, *, paused: bool = False, ros_params: tuple[str, ...] = ()):
    cmd = container_command('box', '/t', executor='events', max_events=None)
    if not paused:
        cmd.remove('--paused')  # as launch starts it: loaded nodes run at once
    for param in ros_params:
        cmd += ['-p', param]
    log = (tmp_path / 'container.log').open('w')
    return processes.start(cmd, env, stdout=log, stderr=subprocess.STDOUT), log


@pytest.fixture
def container(plugin_env, tmp_path):
    proc, log = _start_container(plugin_env, tmp_path)
    yield proc
    processes.stop(proc)
    log.close()


@pytest.fixture
def client(ros_domain):
    c = LifecycleClient(ros_domain)
    yield c
    c.close()


def test_deactivate_pauses_and_activate_resumes_with_nothing_lost(container, client):
    """A source and the node after it are paused and resumed: no packet missing, none repeated."""
    client.load(SOURCE, 'src', {'rate_hz': 20.0, 'count': 0})
    client.load(
        IDENTITY, 'mid', {'inputs.in': ['/t/src/out'], 'inbox.in.max': 1000, 'qos.out.depth': 1000}
    )
    events = client.collect_events('mid')
    seqs = client.collect_seqs('/t/mid/out')
    _wait_for(lambda: len(seqs) >= 10, what='packets through mid')
    assert client.state('mid') == 'active'

    # the node after the source pauses: its output stops, the source goes on, its inbox keeps all
    assert client.change('mid', 'deactivate')
    assert client.state('mid') == 'inactive'
    # exact once deactivate answered (it waits for the call in progress): what mid published over
    # DDS while this reliable subscription was matched; wait until all of it has arrived rather
    # than for a time long enough for the wire on a loaded machine
    published = client.report()['topics']['/t/mid/out']['published']
    _wait_for(lambda: len(seqs) >= published, what="mid's packets published before the pause")
    seen = len(seqs)
    assert seen == published  # this subscription is the topic's one outside listener
    produced = client.report()['nodes']['src']['produced']
    time.sleep(1.5)  # a window in which the inactive node must emit nothing
    report = client.report()
    now = (len(seqs), report['topics']['/t/mid/out']['published'])
    assert now == (seen, published), 'an inactive node emitted'
    _wait_for(lambda: client.report()['nodes']['src']['produced'] >= produced + 10,
              what='the source going on while mid pauses')
    report = client.report()
    assert report['state']['lifecycle'] == {'src': 'active', 'mid': 'inactive'}
    waiting = report['nodes']['src']['produced'] - report['nodes']['mid']['consumed']
    assert waiting >= 10, 'nothing waited in the inactive node'

    assert client.change('mid', 'activate')
    assert client.state('mid') == 'active'
    _wait_for(lambda: len(seqs) >= seen + waiting, what='the waiting packets after activate')

    # the source pauses: nothing is produced, then it goes on with the packet that was next
    assert client.change('src', 'deactivate')
    time.sleep(0.5)
    produced = client.report()['nodes']['src']['produced']
    time.sleep(1.5)
    assert client.report()['nodes']['src']['produced'] == produced, 'an inactive source produced'
    assert client.change('src', 'activate')
    _wait_for(lambda: len(seqs) >= produced + 10 - seqs[0], what='packets after the source resumed')

    with client._lock:
        got = list(seqs)
    assert got == list(range(got[0], got[0] + len(got))), 'a packet was lost or repeated over the pauses'
    with client._lock:
        mid_events = list(events)
    assert mid_events[-4:] == [
        ('active', 'deactivating'),
        ('deactivating', 'inactive'),
        ('inactive', 'activating'),
        ('activating', 'active'),
    ]
    assert container.poll() is None


def test_state_queries_and_invalid_transitions_are_refused(container, client):
    client.load(SOURCE, 'src', {'rate_hz': 20.0, 'count': 0})
    states = client.call(GetAvailableStates, '/t/src/get_available_states', GetAvailableStates.Request())
    labels = {s.label for s in states.available_states}
    assert {'unconfigured', 'inactive', 'active', 'finalized', 'configuring', 'activating'} <= labels
    assert client.state('src') == 'active'
    assert client.transitions('src') == {'deactivate', 'shutdown'}

    # refused as rclcpp refuses them: success=false, nothing changes, the container keeps serving
    assert not client.change('src', 'configure')
    assert not client.change('src', 'cleanup')
    assert not client.change_by_id('src', Transition.TRANSITION_ACTIVATE)
    assert not client.change('src', 'fly')
    assert client.state('src') == 'active'
    produced = client.report()['nodes']['src']['produced']
    _wait_for(lambda: client.report()['nodes']['src']['produced'] > produced + 5, what='the source to go on')
    report = client.report()
    assert 'transition 3 is not available in state' in report['state']['lifecycle_errors']['src']

    assert client.change('src', 'deactivate')
    assert client.transitions('src') == {'activate', 'cleanup', 'shutdown'}
    assert not client.change('src', 'deactivate')
    assert client.state('src') == 'inactive'
    assert container.poll() is None


@pytest.fixture
def managed_container(plugin_env, tmp_path):
    """Nodes stay unconfigured after their load (container parameter autostart:=false)."""
    proc, log = _start_container(plugin_env, tmp_path, ros_params=('autostart:=false',))
    yield proc
    processes.stop(proc)
    log.close()


def test_unconfigured_nodes_are_brought_up_and_down_from_outside(managed_container, client, tmp_path):
    marker = tmp_path / 'closed.txt'
    failed_marker = tmp_path / 'failed_closed.txt'
    client.load(SOURCE, 'src', {'rate_hz': 50.0, 'count': 0})
    sink_params = {'closed_marker': str(marker), 'inputs.in': ['/t/src/out']}
    client.load('runtime_test_plugins:MarkClosedSink', 'sink', sink_params)
    client.load('runtime_test_plugins:FailingSetup', 'bad', {'closed_marker': str(failed_marker)})
    events = client.collect_events('sink')
    assert set(client.report()['state']['lifecycle'].values()) == {'unconfigured'}
    assert client.transitions('src') == {'configure', 'shutdown'}
    time.sleep(0.5)
    assert client.report()['nodes']['src']['produced'] == 0, 'an unconfigured source produced'

    # a failing configure: refused with the reason, close() ran, the node stays unconfigured
    assert not client.change('bad', 'configure')
    assert client.state('bad') == 'unconfigured'
    assert failed_marker.read_text() == 'closed'
    reason = client.report()['state']['lifecycle_errors']['bad']
    assert reason == "node 'bad': setup() failed: RuntimeError: cannot open the device"

    # configure opens, activate runs: the sink before the source, as a manager orders it
    for node in ('sink', 'src'):
        assert client.change(node, 'configure')
        assert client.state(node) == 'inactive'
    time.sleep(0.3)
    assert client.report()['nodes']['src']['produced'] == 0, 'an inactive source produced'
    for node in ('sink', 'src'):
        assert client.change(node, 'activate')
    _wait_for(lambda: client.report()['nodes']['sink']['consumed'] >= 20, what='packets at the sink')

    # deactivate + cleanup: the plugin closes (its close() writes what it consumed)
    assert client.change('src', 'deactivate')
    assert client.change('sink', 'deactivate')
    assert client.change('sink', 'cleanup')
    assert client.state('sink') == 'unconfigured'
    assert int(marker.read_text().split('=')[1]) >= 20
    marker.unlink()

    # and back up: a fresh instance, packets flow again
    assert client.change('sink', 'configure')
    assert client.change('sink', 'activate')
    assert client.change('src', 'activate')
    _wait_for(lambda: client.report()['nodes']['sink']['consumed'] >= 10, what='packets after configure')

    # shutdown from active: drained and closed; finalized; the container unloads it as any node
    assert client.change('sink', 'shutdown')
    assert client.state('sink') == 'finalized'
    assert client.transitions('sink') == set()
    assert int(marker.read_text().split('=')[1]) >= 10
    with client._lock:
        seen = list(events)
    assert ('configuring', 'inactive') in seen and ('cleaningup', 'unconfigured') in seen
    assert seen[-2:] == [('active', 'shuttingdown'), ('shuttingdown', 'finalized')]
    listed = client.call(ListNodes, f'{CONTAINER}/_container/list_nodes', ListNodes.Request())
    uid = dict(zip(listed.full_node_names, listed.unique_ids, strict=True))['/t/sink']
    unload = UnloadNode.Request(unique_id=uid)
    unloaded = client.call(UnloadNode, f'{CONTAINER}/_container/unload_node', unload)
    assert unloaded.success, unloaded.error_message
    assert managed_container.poll() is None


@pytest.fixture
def paused_container(plugin_env, tmp_path):
    proc, log = _start_container(plugin_env, tmp_path, paused=True)
    yield proc
    processes.stop(proc)
    log.close()


def test_the_start_gate_activates_autostart_nodes_and_leaves_managed_ones_alone(paused_container, client):
    client.load(SOURCE, 'src', {'rate_hz': 20.0, 'count': 0})
    client.load(IDENTITY, 'mid', {'inputs.in': ['/t/src/out']}, extra={'autostart': False})
    assert client.report()['state']['lifecycle'] == {'src': 'inactive', 'mid': 'unconfigured'}
    assert client.state('src') == 'inactive'  # configured at its load; the gate is not open yet
    client.call(Trigger, f'{CONTAINER}/_schnitzel/start', Trigger.Request())
    assert client.report()['state']['lifecycle'] == {'src': 'active', 'mid': 'unconfigured'}
    _wait_for(lambda: client.report()['nodes']['src']['produced'] >= 5, what='the source to start')
    assert client.report()['nodes']['mid']['consumed'] == 0


def _run_manager(env: dict, plan: BringUpPlan) -> subprocess.CompletedProcess:
    """The lifecycle_manager executable (its module: the installed script is the same main)."""
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros.runtime.lifecycle_manager_main',
           '--plan', plan.to_json(), '--timeout', '30']
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_the_lifecycle_manager_brings_a_graph_up_consumers_first(managed_container, client, plugin_env):
    client.load(SOURCE, 'src', {'rate_hz': 0.0, 'count': 50})  # finite and unthrottled: nothing may be lost
    client.load(IDENTITY, 'mid', {'inputs.in': ['/t/src/out']})
    client.load(IDENTITY, 'sink', {'inputs.in': ['/t/mid/out']})
    nodes = ('/t/src', '/t/mid', '/t/sink')
    plan = BringUpPlan(GatePlan({CONTAINER: nodes}, {}), tuple(reversed(nodes)))
    done = _run_manager(plugin_env, plan)
    assert done.returncode == 0, done.stderr
    log = done.stderr.splitlines()
    activated = [n for line in log for n in ('/t/sink', '/t/mid', '/t/src') if line.endswith(f'{n}: active')]
    assert activated == ['/t/sink', '/t/mid', '/t/src'], done.stderr  # consumers before producers
    assert client.report()['state']['lifecycle'] == {'src': 'active', 'mid': 'active', 'sink': 'active'}
    _wait_for(lambda: client.report()['nodes']['sink']['consumed'] == 50, what='all 50 packets at the end')


def test_a_failing_configure_is_reported_and_the_graph_not_started(managed_container, client, plugin_env):
    client.load(SOURCE, 'src', {'rate_hz': 20.0, 'count': 0})
    client.load('runtime_test_plugins:FailingSetup', 'bad', {})
    client.load(IDENTITY, 'mid', {'inputs.in': ['/t/src/out']})
    nodes = ('/t/src', '/t/bad', '/t/mid')
    plan = BringUpPlan(GatePlan({CONTAINER: nodes}, {}), ('/t/mid', '/t/bad', '/t/src'))
    done = _run_manager(plugin_env, plan)
    assert done.returncode == 1
    assert ("configure of /t/bad failed: node 'bad': setup() failed: RuntimeError: cannot open the device; "
            'graph not started') in done.stderr
    report = client.report()
    assert report['state']['lifecycle'] == {'src': 'unconfigured', 'bad': 'unconfigured', 'mid': 'inactive'}
    assert report['nodes']['src']['produced'] == 0


def test_a_run_of_a_managed_graph_waits_for_its_manager_and_loses_nothing(tmp_path, plugin_env):
    """`schnitzel-stream run` of a graph with config.autostart: false across two containers: the
    nodes wait unconfigured (the run does not end) until `lifecycle_manager --graph` brings them up;
    then all 300 packets of the unthrottled finite source arrive in order and the run ends as any
    finite run. (The manager's wait for cross-container matches is not what this run depends on
    here: configuring consumers first already gives discovery the time; the wait is for slower
    discovery.)"""
    cross = textwrap.dedent(CROSS_GRAPH).replace('TMP', str(tmp_path))
    graph = tmp_path / 'managed.yaml'
    graph.write_text(cross)
    report_path = tmp_path / 'report.json'
    log = (tmp_path / 'run.log').open('w')
    run = processes.start(
        [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph),
         '--report-json', str(report_path), '--duration', '90'],
        plugin_env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3.0)
        assert run.poll() is None, 'the run ended before its nodes were brought up'
        done = subprocess.run(
            [sys.executable, '-m', 'schnitzel_stream_ros.runtime.lifecycle_manager_main',
             '--graph', str(graph), '--timeout', '60'],
            env=plugin_env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert run.wait(timeout=60) == 0
    finally:
        processes.stop(run)
        log.close()
    report = json.loads(report_path.read_text())
    assert (report['status'], report['stop_reason']) == ('ok', 'sources_done')
    seqs = [json.loads(line)['seq'] for line in (tmp_path / 'out.jsonl').read_text().splitlines()]
    assert seqs == list(range(300))


CROSS_GRAPH = """
    version: 2
    namespace: /lm
    config: {autostart: false}
    nodes:
      - {id: src, plugin: SyntheticSource, container: cam,
         config: {rate_hz: 0.0, count: 300, payload_bytes: 16}}
      - {id: ident, plugin: Identity, container: cam, qos: {out: {depth: 500}}}
      - {id: log, kind: sink, plugin: JsonlSink, container: store,
         config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: ident, inbox: {max: 64, overflow: block}}
      - {from: ident, to: log, inbox: {max: 1000, overflow: block}, qos: {depth: 500}}
"""


RESPAWN_GRAPH = """
    version: 2
    namespace: /lr
    nodes:
      - {id: src, plugin: SyntheticSource, container: a, config: {rate_hz: 100.0, count: 0, payload_bytes: 4}}
      - {id: out, kind: sink, plugin: JsonlSink, container: b, config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: out, qos: {depth: 1000}, inbox: {max: 1000}}
"""


def test_compiled_with_a_lifecycle_manager_a_respawned_container_comes_back_active(
        tmp_path, plugin_env, ros_domain, monkeypatch):
    """The launch file of `compile --lifecycle-manager`, its actions carried out for real as in
    test_launch_supervision.py (launch is not installable here; its API is played by stand-ins):
    containers, the start gate supervisor, the lifecycle manager, loads with launch_ros' fields.
    The manager brings the graph up; after a kill -9 and launch's respawn of container b, the start
    gate reloads b's node (unconfigured) and the manager brings it up again."""
    from test_start_gate import Client, launch_api_standins, node_command  # (it puts test/unit on the path)

    from schnitzel_stream_ros.graph.allowlist import Allowlist
    from schnitzel_stream_ros.graph.registry import PluginRegistry
    from schnitzel_stream_ros.graph.validate import compile_graph
    from schnitzel_stream_ros.graph.wiring import LoadRequest
    from schnitzel_stream_ros.launchgen import render_launch_file

    graph_path = tmp_path / 'graph.yaml'
    graph_path.write_text(textwrap.dedent(RESPAWN_GRAPH).replace('TMP', str(tmp_path)))
    launch_api_standins.install(monkeypatch)
    scope: dict = {}
    graph = compile_graph(graph_path, PluginRegistry(Allowlist()))
    exec(compile(render_launch_file(graph, lifecycle_manager=True), 'managed', 'exec'), scope)
    *containers, gate, manager = scope['generate_launch_description']().entities
    started: list[subprocess.Popen] = []

    def start(name: str, cmd: list[str]) -> subprocess.Popen:
        with (tmp_path / f'{name}.log').open('w') as out:
            started.append(processes.start(cmd, plugin_env, stdout=out, stderr=subprocess.STDOUT))
        return started[-1]

    loader = Client(ros_domain)
    try:
        commands = {c.name: node_command(c.kwargs['executable'], c.kwargs['arguments'], c.name, c.namespace)
                    for c in containers}
        running = {name: start(name, cmd) for name, cmd in commands.items()}
        start('gate', node_command(gate.executable, gate.kwargs['arguments'], gate.name, gate.namespace))
        start('manager', node_command(manager.executable, manager.kwargs['arguments'], manager.name,
                                      manager.namespace))
        for container in containers:  # launch_ros: one load request after the previous answer
            target = loader.container(f'/lr/{container.name}')
            for d in container.nodes:
                (params,) = d.parameters
                values = {k: getattr(v, 'value', v) for k, v in params.items()}
                (extra,) = d.extra_arguments
                remaps = tuple(f'{a}:={b}' for a, b in d.remappings)
                request = LoadRequest(
                    d.package, d.plugin, d.name, d.namespace, remaps, values, container.name, extra
                )
                assert target.load(request).success
        out = tmp_path / 'out.jsonl'

        def count() -> int:
            return len(out.read_text().splitlines()) if out.exists() else 0

        _wait_for(lambda: count() > 50, 40, 'packets after the manager brought the graph up')
        manager_log = (tmp_path / 'manager.log').read_text()
        assert manager_log.index('/lr/out: active') < manager_log.index('/lr/src: active')

        # the gate supervises once it has seen every node loaded (here it opens nothing: all are managed)
        gate_log = tmp_path / 'gate.log'
        _wait_for(lambda: 'supervising' in gate_log.read_text(), 40, 'the start gate to supervise')
        os.kill(running['b'].pid, signal.SIGKILL)
        running['b'].wait(10)
        before = count()
        start('b-respawned', commands['b'])  # launch: respawn=True
        _wait_for(lambda: count() > before + 50, 40, 'packets after the respawn')
        assert 'unconfigured again: /lr/out; bringing them up' in (tmp_path / 'manager.log').read_text()
        lifecycle = loader.container('/lr/b').snapshot()['state']['lifecycle']
        assert lifecycle == {'out': 'active'}
    finally:
        loader.close()
        for proc in started:
            processes.stop(proc)


def test_without_lifecycle_services_nodes_still_run_and_cannot_be_left_unconfigured(
        plugin_env, tmp_path, client):
    """`-p lifecycle_services:=false`: the DDS entities of the lifecycle interface are saved where
    nothing outside manages the nodes; the container still configures and activates them."""
    proc, log = _start_container(plugin_env, tmp_path, ros_params=('lifecycle_services:=false',))
    try:
        client.load(SOURCE, 'src', {'rate_hz': 20.0, 'count': 0})
        _wait_for(lambda: client.report()['nodes']['src']['produced'] >= 5, what='the source to run')
        assert client.report()['state']['lifecycle'] == {'src': 'active'}
        def discovered() -> dict | None:
            names = dict(client.node.get_service_names_and_types())
            return names if '/t/src/get_parameters' in names else None

        services = _wait_for(discovered, what="the node's parameter services")
        assert '/t/src/get_state' not in services and '/t/src/change_state' not in services
        request = LoadNode.Request(
            package_name='schnitzel_stream_ros', plugin_name=IDENTITY, node_name='mid', node_namespace='/t'
        )
        request.extra_arguments = [Parameter('autostart', value=False).to_parameter_msg()]
        refused = client.call(LoadNode, f'{CONTAINER}/_container/load_node', request)
        assert not refused.success
        assert refused.error_message == (
            "node 'mid': extra argument autostart:=false needs the container's lifecycle_services (false "
            'here): nothing could bring the node up'
        )
    finally:
        processes.stop(proc)
        log.close()
    contradiction = ('lifecycle_services:=false', 'autostart:=false')
    proc, log = _start_container(plugin_env, tmp_path, ros_params=contradiction)
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        processes.stop(proc)
        log.close()
    assert 'autostart:=false needs lifecycle_services' in (tmp_path / 'container.log').read_text()
