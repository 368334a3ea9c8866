"""Our container under the real ROS tools: `ros2 launch` (launch_ros), `ros2 lifecycle`, `ros2 param`.

test_container_dropin.py and test_lifecycle.py play launch_ros' and ros2cli's side, because no
registry carries launch / launch_ros / ros2cli for the pip-wheel ROS 2. On a ROS 2 Jazzy install
(`source /opt/ros/jazzy/setup.bash && scripts/bootstrap && . env.sh`) those tools exist, and this
module runs them for real, each as its own process on the test's leased ROS domain, localhost only:
- `ros2 launch` of a Python, an XML and a YAML launch file holding our `component_container` with
  `args` and a composable node using every LoadNode field launch_ros fills (name, namespace,
  parameters, remappings, extra_arguments), inside a GroupAction with PushROSNamespace, SetRemap and
  SetParameter; the result is read back from the running nodes by other processes (`ros2 node list`,
  `ros2 param get`, the ROS graph, the container's report);
- `ros2 lifecycle get/set` on a loaded node, an invalid transition included;
- the launch file `schnitzel-stream compile --lifecycle-manager` writes, under `ros2 launch`: the
  lifecycle manager brings the two-container graph up and packets reach the sink's file.
Without the real tools the module is skipped as a whole (one reason, below); nothing here is faked.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rcl_interfaces.srv import GetParameters
from std_srvs.srv import Trigger

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

#: The real tools: the `ros2` command and the Python packages of launch_ros and the ros2cli verbs used.
REAL_MODULES = ('launch', 'launch_ros', 'launch_xml', 'launch_yaml',
                'ros2launch', 'ros2lifecycle', 'ros2param', 'ros2node')
HAVE_REAL_TOOLS = shutil.which('ros2') is not None and all(
    importlib.util.find_spec(name) is not None for name in REAL_MODULES)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not HAVE_REAL_TOOLS, reason=(
        'the real ros2 launch / launch_ros are not installed here (no registry carries them for '
        'pip-wheel ROS); test_container_dropin.py plays their side')),
]

PACKAGE = 'schnitzel_stream_ros'
SYNTHETIC = 'schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource'
IDENTITY = 'schnitzel_stream_ros.nodes.core.identity:Identity'

PYTHON_LAUNCH = """
from launch import LaunchDescription
from launch.actions import GroupAction
from launch_ros.actions import ComposableNodeContainer, PushROSNamespace, SetParameter, SetRemap
from launch_ros.descriptions import ComposableNode


def generate_launch_description():
    return LaunchDescription([
        GroupAction([
            PushROSNamespace('robot'),
            SetRemap(src='/robot/upstream', dst='/robot/cam/frames'),
            SetParameter(name='payload_bytes', value=24),
            ComposableNodeContainer(
                package='schnitzel_stream_ros',
                executable='component_container',
                name='box',
                namespace='',
                arguments=['test_args'],
                output='screen',
                composable_node_descriptions=[
                    ComposableNode(
                        package='schnitzel_stream_ros',
                        plugin='SYNTHETIC',
                        name='src',
                        namespace='cam',
                        parameters=['PARAMS_FILE', {'rate_hz': 40.0, 'count': 0}],
                        remappings=[('~/out', 'frames')],
                        extra_arguments=[{'use_intra_process_comms': True}],
                    ),
                    ComposableNode(
                        package='schnitzel_stream_ros',
                        plugin='IDENTITY',
                        name='ident',
                        parameters=[{'inputs.in': ['/robot/upstream']}],
                    ),
                ],
            ),
        ]),
    ])
"""

#: A ROS parameter file as launch_ros expands it itself: `/**` for every node, then the node's section.
PARAMS_FILE = """
/**:
  ros__parameters:
    count: 5
    kind: from-wildcard
/robot/cam/src:
  ros__parameters:
    source_id: cam-src
other_node:
  ros__parameters:
    source_id: not-this
"""


def python_launch_file(tmp_path: Path) -> Path:
    params = tmp_path / 'params.yaml'
    params.write_text(PARAMS_FILE)
    launch_file = tmp_path / 'box.launch.py'
    launch_file.write_text(PYTHON_LAUNCH.replace('SYNTHETIC', SYNTHETIC).replace('IDENTITY', IDENTITY)
                           .replace('PARAMS_FILE', str(params)))
    return launch_file


XML_LAUNCH = """
<launch>
  <group>
    <push_ros_namespace namespace="xml"/>
    <set_parameter name="payload_bytes" value="8"/>
    <node_container pkg="schnitzel_stream_ros" exec="component_container" name="box" namespace=""
                    args="test_args" output="screen">
      <composable_node pkg="schnitzel_stream_ros" plugin="SYNTHETIC" name="src" namespace="cam">
        <param name="rate_hz" value="30.0"/>
        <param name="count" value="0"/>
        <remap from="~/out" to="frames"/>
        <extra_arg name="use_intra_process_comms" value="true"/>
      </composable_node>
    </node_container>
  </group>
</launch>
""".replace('SYNTHETIC', SYNTHETIC)

YAML_LAUNCH = """
launch:
- group:
  - push_ros_namespace:
      namespace: yaml
  - set_parameter:
      name: payload_bytes
      value: '12'  # launch_yaml takes text here (typed as ROS does it)
  - node_container:
      pkg: schnitzel_stream_ros
      exec: component_container
      name: box
      namespace: ''
      args: test_args
      output: screen
      composable_node:
      - pkg: schnitzel_stream_ros
        plugin: SYNTHETIC
        name: src
        namespace: cam
        param:
        - name: rate_hz
          value: 20.0
        - name: count
          value: 0
        remap:
        - from: ~/out
          to: frames
        extra_arg:
        - name: use_intra_process_comms
          value: 'true'
""".replace('SYNTHETIC', SYNTHETIC)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f'timed out after {timeout:g} s waiting for {what}'
        time.sleep(0.2)
    return value


class Ros2:
    """The real `ros2` command on the test's domain. Its daemon (one per domain) is stopped at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(['ros2', *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def says(self, *args: str) -> str:
        """The command's answer (stdout); its stderr in the message when it answered nothing."""
        result = self(*args)
        assert result.stdout.strip(), f'`ros2 {" ".join(args)}` said nothing: {result.stderr!r}'
        return result.stdout.strip()

    def until(self, *args: str, expect: str, timeout: float = 60.0) -> str:
        """Repeat the command until its stdout holds `expect` (the daemon learns the graph over time)."""
        last: list[subprocess.CompletedProcess] = []

        def done() -> bool:
            last[:] = [self(*args)]
            return expect in last[0].stdout

        try:
            wait_for(done, timeout, f'`ros2 {" ".join(args)}` to say {expect!r}')
        except AssertionError as error:
            output = f'{last[0].stdout}{last[0].stderr}' if last else ''
            raise AssertionError(f'{error}; last output: {output!r}') from None
        return last[0].stdout


class Launches:
    """`ros2 launch FILE` as processes in their own session, output in a file; all stopped at the end."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path, self.procs = env, tmp_path, []

    def __call__(self, launch_file: Path) -> tuple[subprocess.Popen, Path]:
        log = self.tmp_path / f'{launch_file.name}.log'
        with log.open('w') as out:
            proc = processes.start(['ros2', 'launch', str(launch_file)], self.env,
                                   stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, log

    def wait_loaded(self, proc: subprocess.Popen, log: Path, node: str, timeout: float = 60.0) -> str:
        """Until launch_ros says the node is loaded; a failed load or an ended launch stops the wait."""
        def loaded():
            text = log.read_text()
            assert 'Failed to load node' not in text, text[-3000:]
            assert proc.poll() is None, f'ros2 launch ended ({proc.returncode}):\n{text[-3000:]}'
            return f"Loaded node '{node}'" in text and text

        return wait_for(loaded, timeout, f'launch_ros to load {node}')


@pytest.fixture
def ros2(ros_env):
    tool = Ros2(ros_env)
    yield tool
    tool('daemon', 'stop', timeout=30)


@pytest.fixture
def launch(ros_env, tmp_path):
    launches = Launches(ros_env, tmp_path)
    yield launches
    for proc in launches.procs:
        processes.stop(proc, sig=signal.SIGINT, timeout=20)  # ros2 launch's own shutdown, then SIGKILL


@pytest.fixture
def peer(ros_domain):
    p = RosPeer(ros_domain, 'real_tools_peer')
    yield p
    p.close()


def publishers_of(peer: RosPeer, name: str, namespace: str) -> set[str]:
    return {topic for topic, _ in peer.node.get_publisher_names_and_types_by_node(name, namespace)}


def report(peer: RosPeer, container: str) -> dict:
    return json.loads(peer.call(Trigger, f'{container}/_schnitzel/report', Trigger.Request()).message)


def test_python_launch_file_with_group_namespace_remap_and_parameter_pushes(launch, ros2, peer, tmp_path):
    proc, log = launch(python_launch_file(tmp_path))
    text = launch.wait_loaded(proc, log, '/robot/cam/src')
    assert "Loaded node '/robot/cam/src' in container '/robot/box'" in text
    # the container got `args` and took no offence (rclcpp ignores unknown arguments too)
    assert 'ignoring arguments this container does not know: test_args' in text
    assert 'use_intra_process_comms accepted and needs nothing here' in text

    nodes = ros2.until('node', 'list', expect='/robot/cam/src').split()
    assert {'/robot/box', '/robot/cam/src'} <= set(nodes)
    # SetParameter of the group (sent first) and the node's own parameters
    assert ros2.until('param', 'get', '/robot/cam/src', 'payload_bytes',
                      expect='Integer value is: 24').strip() == 'Integer value is: 24'
    assert ros2.says('param', 'get', '/robot/cam/src', 'rate_hz') == 'Double value is: 40.0'
    # the parameter file: the `/**` section, the node's own section (not another node's), the dict after it
    assert ros2.says('param', 'get', '/robot/cam/src', 'source_id') == 'String value is: cam-src'
    assert ros2.says('param', 'get', '/robot/cam/src', 'kind') == 'String value is: from-wildcard'
    got = peer.call(GetParameters, '/robot/cam/src/get_parameters', GetParameters.Request(names=['count']))
    assert got.values[0].integer_value == 0
    # `~/out` -> `frames`, resolved in the pushed namespace: the topic in the ROS graph
    topics = wait_for(lambda: publishers_of(peer, 'src', '/robot/cam') or None, 20, 'the node to publish')
    assert '/robot/cam/frames' in topics and '/robot/cam/src/out' not in topics
    frames = ros2.until('topic', 'info', '/robot/cam/frames', expect='Publisher count: 1')
    assert 'schnitzel_stream_msgs/msg/StreamPacket' in frames
    # the group's SetRemap turned ident's input /robot/upstream into /robot/cam/frames: packets arrive
    # (the node without a namespace of its own sits in the pushed one). Its producer is in the same
    # container, so they are handed over inside it (no DDS subscription shows in the graph)
    loaded = launch.wait_loaded(proc, log, '/robot/ident')
    assert "Loaded node '/robot/ident' in container '/robot/box'" in loaded
    box = wait_for(lambda: (r := report(peer, '/robot/box'))['nodes']['ident']['consumed'] >= 10 and r,
                   30, 'packets at ident')
    assert set(box['topics']) == {'/robot/cam/frames', '/robot/ident/out'}  # no /robot/upstream
    nodes = box['nodes']
    assert nodes['src']['produced'] >= 10


@pytest.mark.parametrize(('kind', 'text', 'namespace', 'payload_bytes', 'rate'), [
    ('xml', XML_LAUNCH, '/xml', 8, 'Double value is: 30.0'),
    ('yaml', YAML_LAUNCH, '/yaml', 12, 'Double value is: 20.0'),
])
def test_xml_and_yaml_launch_files_load_the_same_container(
        kind, text, namespace, payload_bytes, rate, launch, ros2, peer, tmp_path):
    launch_file = tmp_path / f'box.launch.{kind}'
    launch_file.write_text(text)
    proc, log = launch(launch_file)
    out = launch.wait_loaded(proc, log, f'{namespace}/cam/src')
    assert f"in container '{namespace}/box'" in out
    assert 'ignoring arguments this container does not know: test_args' in out
    assert {f'{namespace}/box', f'{namespace}/cam/src'} <= set(
        ros2.until('node', 'list', expect=f'{namespace}/cam/src').split())
    assert ros2.until('param', 'get', f'{namespace}/cam/src', 'payload_bytes',
                      expect='Integer value is').strip() == f'Integer value is: {payload_bytes}'
    assert ros2.says('param', 'get', f'{namespace}/cam/src', 'rate_hz') == rate
    topics = wait_for(lambda: publishers_of(peer, 'src', f'{namespace}/cam') or None, 20,
                      'the node to publish')
    assert f'{namespace}/cam/frames' in topics


def test_ros2_lifecycle_get_and_set_on_a_launched_node(launch, ros2, peer, tmp_path):
    proc, log = launch(python_launch_file(tmp_path))
    launch.wait_loaded(proc, log, '/robot/cam/src')
    node = '/robot/cam/src'
    assert node in ros2.until('lifecycle', 'nodes', expect=node).split()
    assert ros2.until('lifecycle', 'get', node, expect='active [3]').strip() == 'active [3]'

    done = ros2('lifecycle', 'set', node, 'deactivate')
    assert (done.returncode, done.stdout.strip()) == (0, 'Transitioning successful'), done.stderr
    assert ros2.says('lifecycle', 'get', node) == 'inactive [2]'
    paused_at = report(peer, '/robot/box')['nodes']['src']['produced']
    time.sleep(1.0)  # at 40 Hz a running source would make ~40 more
    assert report(peer, '/robot/box')['nodes']['src']['produced'] <= paused_at + 1

    done = ros2('lifecycle', 'set', node, 'activate')
    assert (done.returncode, done.stdout.strip()) == (0, 'Transitioning successful'), done.stderr
    assert ros2.says('lifecycle', 'get', node) == 'active [3]'
    wait_for(lambda: report(peer, '/robot/box')['nodes']['src']['produced'] > paused_at + 10, 20,
             'the source to go on after activate')

    # an invalid transition: `configure` is not available while active; refused, nothing changes
    refused = ros2('lifecycle', 'set', node, 'configure')
    assert refused.returncode != 0
    assert 'Unknown transition requested, available ones are:' in refused.stderr
    assert '- deactivate [4]' in refused.stderr and '- configure' not in refused.stderr
    assert ros2.says('lifecycle', 'get', node) == 'active [3]'
    assert proc.poll() is None
    assert report(peer, '/robot/box')['state']['lifecycle'] == {'src': 'active', 'ident': 'active'}


TWO_CONTAINERS = """
    version: 2
    namespace: /lm
    nodes:
      - {id: src, plugin: SyntheticSource, container: cam,
         config: {rate_hz: 50.0, count: 0, payload_bytes: 8}}
      - {id: ident, plugin: Identity, container: cam}
      - {id: log, kind: sink, plugin: JsonlSink, container: store,
         config: {path: TMP/out.jsonl, body: payload}}
    edges:
      - {from: src, to: ident}
      - {from: ident, to: log, qos: {depth: 100}, inbox: {max: 100}}
"""


def test_compiled_launch_file_with_the_lifecycle_manager_brings_the_graph_up(
        launch, ros2, ros_env, tmp_path):
    graph = tmp_path / 'two.yaml'
    graph.write_text(textwrap.dedent(TWO_CONTAINERS).replace('TMP', str(tmp_path)))
    launch_file = tmp_path / 'two.launch.py'
    compiled = subprocess.run([sys.executable, '-m', 'schnitzel_stream_ros', 'compile', str(graph),
                               '--lifecycle-manager', '-o', str(launch_file)],
                              env=ros_env, capture_output=True, text=True, timeout=60)
    assert compiled.returncode == 0, compiled.stderr
    proc, log = launch(launch_file)
    for node in ('/lm/src', '/lm/ident', '/lm/log'):
        launch.wait_loaded(proc, log, node)
    out = tmp_path / 'out.jsonl'
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 20, 60,
             'packets at the sink after the lifecycle manager brought the graph up')
    text = log.read_text()
    assert text.index('/lm/log: active') < text.index('/lm/src: active'), text[-3000:]  # consumers first
    for node in ('/lm/src', '/lm/ident', '/lm/log'):
        assert ros2.until('lifecycle', 'get', node, expect='active [3]').strip() == 'active [3]'
    seqs = [json.loads(line)['seq'] for line in out.read_text().splitlines()]
    assert seqs == sorted(seqs)
    assert proc.poll() is None
