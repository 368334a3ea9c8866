"""Our container as a drop-in for rclcpp_components': command lines and LoadNode requests of the ROS tools.

A launch file written for `rclcpp_components/component_container` must run with ours after only the
package and plugin names changed. `launch`, `launch_ros` and `ros2cli` are not installable here (no
registry carries them for the pip-wheel ROS 2), so this test plays their side exactly and everything
on our side runs for real, across processes over DDS:
- the container is the installed executable, started with the command line launch_ros' `Node` action
  builds for a `ComposableNodeContainer` / `<node_container>`: `arguments` (here unknown to us),
  then `--ros-args -r __node:=<name>`, `-p` for `SetParameter`s, `--params-file` for the node's
  parameters, `-r` for `SetRemap`s, `-r __ns:=<namespace>` (launch_ros/actions/node.py, jazzy);
- the LoadNode requests are filled field by field as launch_ros' `LoadComposableNodes`
  (`get_composable_node_load_request`: global parameters first, parameter files expanded by launch_ros
  itself into Parameter messages with their `/**` and `<namespace>/<name>` sections, `extra_arguments`
  as Parameter messages, `log_level` left 0) and as `ros2 component load -p -r -e` fill them (values
  typed by rclpy's `get_parameter_value`, the function ros2cli calls) — the stand-in part, said here;
- every result is read back from the running nodes by another process: node names from the graph,
  parameters through the nodes' parameter services, remapped topics from the ROS graph, packets
  from the container's report, log levels from its output.
Where the real tools are installed, test_real_ros_tools.py runs `ros2 launch` (Python, XML, YAML),
`ros2 lifecycle` and `ros2 param` against the container; `ros2 component load` and `ros2 param
dump/load` were run by hand on a ROS install (docs/runtime.md, "Drop-in").
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from composition_interfaces.srv import ListNodes, LoadNode
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from rclpy.parameter import Parameter, get_parameter_value, parameter_dict_from_yaml_file
from std_srvs.srv import Trigger

from schnitzel_stream_ros.graph.wiring import PACKAGE_NAME
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PLUGINS_DIR = Path(__file__).resolve().parents[1] / 'runtime_plugins'
SYNTHETIC = 'schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource'
STATIC = 'schnitzel_stream_ros.nodes.core.static_source:StaticSource'
DETECTOR = 'schnitzel_stream_ros.nodes.compute.mock_detector:MockDetectorNode'


def executable(name: str) -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix(PACKAGE_NAME)) / 'lib' / PACKAGE_NAME / name)


def launch_ros_command(exe: str, *, arguments: list[str], name: str, namespace: str,
                       global_params: list[tuple[str, str]] = (), params_file: str | None = None,
                       global_remaps: list[tuple[str, str]] = ()) -> list[str]:
    """The command line launch_ros' Node action builds for a container (order as in node.py)."""
    cmd = [executable(exe), *arguments, '--ros-args', '-r', f'__node:={name}']
    for key, value in global_params:
        cmd += ['-p', f'{key}:={value}']
    if params_file is not None:
        cmd += ['--params-file', params_file]
    for src, dst in global_remaps:
        cmd += ['-r', f'{src}:={dst}']
    return [*cmd, '-r', f'__ns:={namespace}']


def _flatten(values: dict, prefix: str = '') -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def launch_parameters(node_name: str, namespace: str, *sources: dict | Path) -> list:
    """Parameter messages as launch_ros' to_parameters_list makes them (stand-in, see the docstring).

    A dict is name -> value; a file is a ROS parameter file: its `/**` section, then the section
    keyed `<namespace>/<name>` (slashes stripped), nested names joined with dots.
    """
    key = f'{namespace.strip("/")}/{node_name}' if namespace.strip('/') else node_name
    params = []
    for source in sources:
        if isinstance(source, Path):
            document = yaml.safe_load(source.read_text())
            sections = {k.strip('/'): v['ros__parameters'] for k, v in document.items()}
            values = {**sections.get('**', {}), **sections.get(key, {})}
        else:
            values = source
        params += [Parameter(n, value=v).to_parameter_msg() for n, v in _flatten(values).items()]
    return params


def cli_parameters(*texts: str) -> list:
    """`ros2 component load -p name:=value` / `-e name:=value`: typed by rclpy as ros2cli does."""
    out = []
    for text in texts:
        name, _, value = text.partition(':=')
        msg = Parameter(name).to_parameter_msg()
        msg.value = get_parameter_value(string_value=value)
        out.append(msg)
    return out


class Peer(RosPeer):
    """Another process's view: a plain rclpy node calling services and reading the ROS graph."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, 'dropin_peer')

    def load(self, container: str, plugin: str, name: str = '', namespace: str = '', *,
             parameters=(), remaps=(), extra=(), log_level: int = 0):
        request = LoadNode.Request(package_name=PACKAGE_NAME, plugin_name=plugin, node_name=name,
                                   node_namespace=namespace, remap_rules=list(remaps), log_level=log_level)
        request.parameters = list(parameters)
        request.extra_arguments = list(extra)
        return self.call(LoadNode, f'{container}/_container/load_node', request)

    def parameters(self, node: str) -> dict:
        """name -> (type, value) of every parameter, as `ros2 param dump` reads them."""
        listed = self.call(ListParameters, f'{node}/list_parameters', ListParameters.Request())
        names = sorted(listed.result.names)
        values = self.call(GetParameters, f'{node}/get_parameters', GetParameters.Request(names=names)).values
        assert len(values) == len(names), f'{node}: get_parameters answered {len(values)} of {len(names)}'
        return {n: (v.type, _plain(Parameter.from_parameter_msg(_msg(n, v)).value))
                for n, v in zip(names, values, strict=True)}

    def publishers_of(self, name: str, namespace: str) -> set[str]:
        return {t for t, _ in self.node.get_publisher_names_and_types_by_node(name, namespace)}



def _plain(value):
    """Arrays as lists (rclpy answers array.array for numeric arrays)."""
    return list(value) if hasattr(value, 'tolist') or isinstance(value, tuple) else value


def _msg(name, value):
    from rcl_interfaces.msg import Parameter as ParameterMsg

    return ParameterMsg(name=name, value=value)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)
    return value


@pytest.fixture
def peer(ros_domain):
    p = Peer(ros_domain)
    yield p
    p.close()


@pytest.fixture
def env(ros_env):
    return {**ros_env, 'PYTHONPATH': f'{PLUGINS_DIR}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
            'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'runtime_test_plugins'}


class Started:
    def __init__(self, env: dict, tmp_path: Path) -> None:
        self.env, self.tmp_path, self.procs = env, tmp_path, []

    def __call__(self, cmd: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.tmp_path / f'container{len(self.procs)}.log'
        with log.open('w') as out:
            proc = processes.start(cmd, self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, log


@pytest.fixture
def start(env, tmp_path):
    s = Started(env, tmp_path)
    yield s
    for proc in s.procs:
        processes.stop(proc)


def node_params_file(tmp_path: Path, full_name: str, params: dict) -> str:
    """The file launch_ros writes for a Node's `parameters=[{...}]` (fully specified name as key)."""
    path = tmp_path / f'launch_params_{abs(hash(full_name))}'
    path.write_text(yaml.dump({full_name: {'ros__parameters': params}}, default_flow_style=False))
    return str(path)


@pytest.mark.parametrize(('exe', 'arguments', 'executor'), [
    ('component_container', ['test_args'], 'events'),
    ('component_container_mt', ['test_args', '--verbose'], 'multi, 3 threads'),
    ('component_container_isolated', ['--use_multi_threaded_executor', 'test_args'],
     'multi, 3 threads, plugin code isolated on node threads'),
])
def test_container_takes_the_command_line_launch_ros_builds_for_rclcpp_containers(
        exe, arguments, executor, start, peer, tmp_path):
    """`args: 'test_args'` made the container exit with "unrecognized arguments"; rclcpp ignores them."""
    params = node_params_file(tmp_path, '/dropin/my_container',
                              {'thread_num': 3, 'diagnostics_period_sec': 0.0})
    proc, log = start(launch_ros_command(exe, arguments=arguments, name='my_container', namespace='/dropin',
                                         global_params=[('use_sim_time', 'false')], params_file=params,
                                         global_remaps=[('chatter', '/elsewhere')]))
    listed = peer.call(ListNodes, '/dropin/my_container/_container/list_nodes', ListNodes.Request())
    assert list(listed.full_node_names) == []
    text = wait_for(lambda: 'ready' in (t := log.read_text()) and t, 15, 'the container to be ready')
    unknown = ' '.join(a for a in arguments if a != '--use_multi_threaded_executor')
    assert f'ignoring arguments this container does not know: {unknown}' in text
    assert f'container /dropin/my_container ready (executor {executor})' in text
    got = peer.parameters('/dropin/my_container')
    assert got['thread_num'] == (ParameterType.PARAMETER_INTEGER, 3)
    assert got['use_sim_time'] == (ParameterType.PARAMETER_BOOL, False)
    # a chain loaded into it runs (in the isolated one, every packet on the sink's own thread)
    assert peer.load('/dropin/my_container', SYNTHETIC, 'src', '/dropin',
                     parameters=launch_parameters('src', '/dropin', {'rate_hz': 200.0, 'count': 0})).success
    sink = peer.load('/dropin/my_container', 'runtime_test_plugins:MarkClosedSink', 'sink', '/dropin',
                     parameters=launch_parameters('sink', '/dropin', {'closed_marker': '/dev/null',
                                                                      'inputs.in': ['/dropin/src/out']}))
    assert sink.success, sink.error_message
    report = '/dropin/my_container/_schnitzel/report'

    def consumed() -> int:
        return json.loads(peer.call(Trigger, report, Trigger.Request()).message)['nodes']['sink']['consumed']

    wait_for(lambda: consumed() >= 20, 20, 'packets at the sink')
    assert proc.poll() is None
    # our own options keep their meaning; a bad value of one is still an error
    bad = subprocess.run([executable(exe), '--executor', 'fast', '--ros-args', '-r', '__node:=x'],
                         env=start.env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "argument --executor: invalid choice: 'fast'" in bad.stderr


PARAMS_FILE = """
/**:
  ros__parameters:
    rate_hz: 100.0
    site_gain: 3
/dropin/robot/cam/src:
  ros__parameters:
    count: 0
    payload_bytes: 16
other_node:
  ros__parameters:
    count: 7
"""


def test_every_load_node_field_launch_ros_and_ros2_component_send_is_honoured_or_refused(
        start, peer, tmp_path):
    _proc, log = start(launch_ros_command('component_container', arguments=[], name='box',
                                          namespace='/dropin'))
    box = '/dropin/box'
    params_file = tmp_path / 'site_params.yaml'
    params_file.write_text(PARAMS_FILE)

    # PushROSNamespace('robot') around a ComposableNode(namespace='cam'): launch_ros sends /dropin/robot/cam;
    # SetParameter(site_gain=...) first, then the node's parameter file; SetRemap + the node's own remap
    src = peer.load(box, SYNTHETIC, 'src', '/dropin/robot/cam',
                    parameters=launch_parameters('src', '/dropin/robot/cam', {'site_gain': 1}, params_file),
                    remaps=['chatter:=/elsewhere', '~/out:=/dropin/frames'],
                    extra=launch_parameters('src', '/dropin/robot/cam', {'use_intra_process_comms': True}))
    assert (src.success, src.error_message, src.full_node_name) == (True, '', '/dropin/robot/cam/src')
    got = peer.parameters('/dropin/robot/cam/src')
    assert got['rate_hz'] == (ParameterType.PARAMETER_DOUBLE, 100.0)  # from the `/**` section
    assert got['count'] == (ParameterType.PARAMETER_INTEGER, 0)  # from the node's own section
    assert got['payload_bytes'] == (ParameterType.PARAMETER_INTEGER, 16)
    assert 'site_gain' not in got  # no plugin declares it: ignored, as rclcpp ignores such overrides
    # the private output was remapped: that is the topic in the ROS graph
    assert '/dropin/frames' in peer.publishers_of('src', '/dropin/robot/cam')
    assert '/dropin/robot/cam/src/out' not in peer.publishers_of('src', '/dropin/robot/cam')

    # an input remapped by a rule of its request: in-container, the packets still arrive
    sink = peer.load(box, 'runtime_test_plugins:LogEveryLevel', 'talk', '/dropin',
                     parameters=cli_parameters('inputs.in:=[/dropin/raw]'),
                     remaps=['/dropin/raw:=/dropin/frames'],
                     extra=cli_parameters('use_intra_process_comms:=true', 'queue_size:=4'), log_level=40)
    assert sink.success, sink.error_message
    quiet = peer.load(box, 'runtime_test_plugins:LogEveryLevel', 'chatty', '/dropin',
                      parameters=cli_parameters('inputs.in:=[/dropin/frames]'), log_level=10)
    assert quiet.success, quiet.error_message
    text = wait_for(lambda: 'talk: level error' in (t := log.read_text()) and 'chatty: level debug' in t
                    and t, 20, 'both nodes to log')
    assert 'talk: level warning' not in text and 'talk: level info' not in text  # log_level 40 = ERROR
    assert "ignored parameters plugin schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource " \
           "does not declare: 'site_gain'" in text
    assert "node 'talk': extra argument 'queue_size' means nothing to this container; ignored" in text
    assert text.count('use_intra_process_comms accepted and needs nothing here') == 1  # said once

    # `ros2 component load` without -n and with --node-namespace: the plugin's default name
    unnamed = peer.load(box, STATIC, '', '/dropin/robot', parameters=cli_parameters('kind:=demo'))
    assert (unnamed.success, unnamed.full_node_name) == (True, '/dropin/robot/static_source')

    # refused, one line naming node and field; the container keeps serving
    refusals = [
        (dict(remaps=['/**:=/x']), "node 'bad': remap_rules refused by ROS: Couldn't parse remap rule: "
                                   "'-r /**:=/x'. Error: Wildcard '**' is not implemented"),
        (dict(remaps=['*:=/x']), "Wildcard '*' is not implemented"),
        (dict(remaps=['__node:=other']), "node 'bad': remap rule '__node:=other' would rename the node"),
        (dict(remaps=['bad:__ns:=/x']), 'would rename the node'),
        (dict(extra=cli_parameters('use_intra_process_comms:=1')),
         "node 'bad': extra argument 'use_intra_process_comms' must be a boolean, got 1"),
        (dict(extra=cli_parameters('forward_global_arguments:=true')),
         "extra argument 'forward_global_arguments:=true' is not supported"),
        (dict(log_level=7), "node 'bad': log_level 7 is not one of [0, 10, 20, 30, 40, 50]"),
        (dict(parameters=cli_parameters('count:=many')), "node 'bad': parameter 'count': expected int"),
    ]
    for fields, message in refusals:
        answer = peer.load(box, SYNTHETIC, 'bad', '/dropin', **fields)
        assert not answer.success and message in answer.error_message, (fields, answer.error_message)
        assert '\n' not in answer.error_message
    listed = peer.call(ListNodes, f'{box}/_container/list_nodes', ListNodes.Request())
    assert list(listed.full_node_names) == ['/dropin/robot/cam/src', '/dropin/talk', '/dropin/chatty',
                                            '/dropin/robot/static_source']


def test_unknown_parameters_can_be_refused_by_the_container(start, peer):
    start(launch_ros_command('component_container', arguments=[], name='strict', namespace='/dropin',
                             global_params=[('unknown_parameters', 'refuse')]))
    answer = peer.load('/dropin/strict', SYNTHETIC, 'src', '/dropin', parameters=cli_parameters('cuont:=3'))
    assert not answer.success
    assert answer.error_message.startswith("node 'src': unknown parameter 'cuont' (did you mean 'count'?)")


def dump(peer: Peer, node: str, path: Path) -> dict:
    """`ros2 param dump <node>`: every parameter, names split at dots into nested keys (ros2param's dump)."""
    listed = peer.call(ListParameters, f'{node}/list_parameters', ListParameters.Request())
    names = sorted(listed.result.names)
    values = peer.call(GetParameters, f'{node}/get_parameters', GetParameters.Request(names=names)).values
    tree: dict = {}
    for name, value in zip(names, values, strict=True):
        *parents, leaf = name.split('.')
        branch = tree
        for part in parents:
            branch = branch.setdefault(part, {})
        branch[leaf] = _plain(Parameter.from_parameter_msg(_msg(name, value)).value)
    path.write_text(yaml.dump({node: {'ros__parameters': tree}}, default_flow_style=False))
    return tree


def test_param_dump_then_load_gives_the_same_node(start, peer, tmp_path):
    box = '/dropin/box'
    start(launch_ros_command('component_container', arguments=[], name='box', namespace='/dropin'))
    packets = [{'kind': 'demo', 'payload': {'n': 1, 'tags': ['a', 'b']}}, {'payload': [1, 'x', None]}]
    assert peer.load(box, STATIC, 'src', '/dropin', parameters=launch_parameters(
        'src', '/dropin', {'packets': json.dumps(packets)})).success
    # values rclpy re-reads with another type: 1e-05 as text (ros2cli#834), text that reads as a number
    assert peer.load(box, SYNTHETIC, 'syn', '/dropin', parameters=launch_parameters(
        'syn', '/dropin', {'rate_hz': 1e-05, 'source_id': '123', 'kind': 'true', 'count': 0})).success
    for name, params in (('det', {'inputs.in': ['/dropin/src/out'], 'confidence': 0.5, 'bbox_dx': 2}),
                         ('det_box', {'inputs.in': ['/dropin/src/out'],
                                      'bbox': '{"x1": 1, "x2": 5, "y1": 2, "y2": 9}'})):
        answer = peer.load(box, DETECTOR, name, '/dropin',
                           parameters=launch_parameters(name, '/dropin', params))
        assert answer.success, answer.error_message
    for node in ('/dropin/src', '/dropin/syn', '/dropin/det', '/dropin/det_box'):
        before = peer.parameters(node)
        # rclpy's own read-only parameter is in every dump too
        assert before['start_type_description_service'][0] == ParameterType.PARAMETER_BOOL
        if node == '/dropin/det':
            assert before['bbox'] == (ParameterType.PARAMETER_NOT_SET, None)
        path = tmp_path / (node.replace('/', '_') + '.yaml')
        tree = dump(peer, node, path)
        # `ros2 param load <node> <file>`: rclpy reads the file, one SetParameters request with all of them
        loaded = list(parameter_dict_from_yaml_file(str(path)).values())
        if node == '/dropin/det_box':
            # rclpy (Jazzy) re-reads the JSON text of a dict parameter as a YAML mapping and puts the
            # dict into string_value (rclpy#1507): the real `ros2 param load` then fails to send
            # anything. Dict parameters are read-only (no plugin marks one dynamic), so the documented
            # way is to load the dump without them (docs/runtime.md); this checks the defect is real
            broken = [m for m in loaded if not isinstance(m.value.string_value, str)]
            assert [m.name for m in broken] == ['bbox'] and tree['bbox'].startswith('{')
            loaded = [m for m in loaded if m not in broken]
        request = SetParameters.Request(parameters=loaded)
        results = peer.call(SetParameters, f'{node}/set_parameters', request).results
        failed = [(p.name, r.reason) for p, r in zip(loaded, results, strict=True) if not r.successful]
        assert failed == []
        assert peer.parameters(node) == before
        # the dump as a launch parameter file for a fresh node of the same plugin: the same parameters
        plugin = {'/dropin/src': STATIC, '/dropin/syn': SYNTHETIC}.get(node, DETECTOR)
        copy = node.rsplit('/', 1)[1] + '_copy'
        from_file = yaml.safe_load(path.read_text())[node]['ros__parameters']
        # a null is a parameter without a value: launch_ros refuses null in a parameter file, and
        # leaving it out gives the same (no value)
        given = {k: v for k, v in _flatten(from_file).items() if v is not None}
        answer = peer.load(box, plugin, copy, '/dropin', parameters=launch_parameters(copy, '/dropin', given))
        assert answer.success, answer.error_message
        assert peer.parameters(f'/dropin/{copy}') == before
    # a real change to a read-only parameter is still refused
    change = SetParameters.Request(parameters=[Parameter('confidence', value=0.9).to_parameter_msg()])
    refused = peer.call(SetParameters, '/dropin/det/set_parameters', change).results[0]
    assert not refused.successful and 'read-only' in refused.reason
    assert peer.parameters('/dropin/det')['bbox'] == (ParameterType.PARAMETER_NOT_SET, None)  # still declared
