"""A plugin from a separate package: installed, listed, validated, run, loaded into a container.

examples/schnitzel_stream_example_plugins is a package of its own (setup.py, package.xml, one
entry point in `schnitzel_stream_ros.plugins`). The test installs it with pip into a temporary
target directory (never into the shared environment) and puts that directory on PYTHONPATH of
the processes it starts, so `importlib.metadata` finds its entry point as it would after a
`pip install`. Installed is not trusted: its plugin is listed, but graphs and `load_node` may name
it only after the operator allows its module prefix (SCHNITZEL_STREAM_PLUGIN_ALLOWLIST or the
container's `plugin_allowlist` parameter) — a graph can come from a peer. A second copy without
package metadata stands for code that is merely on the path: the same rule.

`ros2 component load` (ros2cli) cannot be installed here: the container is driven with the request
it sends — composition_interfaces/srv/LoadNode on `<container>/_container/load_node` — from this
test process, another process than the container.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from composition_interfaces.srv import ListNodes, LoadNode
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from schnitzel_stream_ros.runtime.container_handles import container_command
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.ros_peer import RosPeer

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / 'examples' / 'schnitzel_stream_example_plugins'
MODULE = 'schnitzel_stream_example_plugins'
PLUGIN_PATH = f'{MODULE}.scale_reading:ScaleReadingNode'
CONTAINER = '/ext/box'


@pytest.fixture(scope='module')
def example(tmp_path_factory):
    """{'site': installed (dist-info + entry point), 'plain': the sources alone} — both temporary."""
    root = tmp_path_factory.mktemp('example_plugins')
    ignore = shutil.ignore_patterns('*.egg-info', '__pycache__', 'build')
    shutil.copytree(EXAMPLE, root / 'src', ignore=ignore)  # the build writes egg-info next to setup.py
    shutil.copytree(EXAMPLE, root / 'plain', ignore=ignore)
    subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--no-build-isolation',
         '--disable-pip-version-check', '--target', str(root / 'site'), str(root / 'src')],
        check=True, capture_output=True, timeout=180,
    )
    yield {'site': root / 'site', 'plain': root / 'plain'}
    shutil.rmtree(root, ignore_errors=True)


def with_path(env: dict, path: Path, allow: str | None = None) -> dict:
    env = {**env, 'PYTHONPATH': f'{path}:{env.get("PYTHONPATH", "")}'}
    env.pop('SCHNITZEL_STREAM_PLUGIN_ALLOWLIST', None)
    env.pop('SCHNITZEL_STREAM_DEV_ALLOW_ALL_PLUGINS', None)
    if allow:
        env['SCHNITZEL_STREAM_PLUGIN_ALLOWLIST'] = allow
    return env


def cli(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'schnitzel_stream_ros.cli', *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


READINGS = [150, 42.5, 'n/a', 7]


def graph(path: Path, out: Path, plugin: str, **config) -> Path:
    packets = [{'payload': {'sensor_id': 'u1', 'distance_cm': v}, 'source_id': 'u1'} for v in READINGS]
    doc = {
        'version': 2,
        'nodes': [
            {'id': 'src', 'kind': 'source', 'plugin': 'StaticSource',
             'config': {'kind': 'sensor', 'packets': packets}},
            {'id': 'scale', 'plugin': plugin, 'config': config},
            {'id': 'out', 'kind': 'sink', 'plugin': 'JsonlSink',
             'config': {'path': str(out), 'body': 'payload'}},
        ],
        'edges': [{'from': 'src', 'to': 'scale'}, {'from': 'scale', 'to': 'out'}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


SCALE = {'field': 'distance_cm', 'factor': 0.01, 'output_field': 'distance_m', 'unit': 'm'}


def converted(out: Path) -> list:
    return [row.get('distance_m') for row in map(json.loads, out.read_text().splitlines())]


def test_installed_package_is_listed_validated_and_runs_in_a_graph(example, ros_env, tmp_path):
    bare = with_path(ros_env, example['plain'].parent / 'nothing')
    installed = with_path(ros_env, example['site'], allow=MODULE)
    listed = cli(installed, 'plugins')
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith('ScaleReadingNode '))
    assert 'in[sensor]/json_portable' in row and 'field:str!' in row and 'factor:float=1.0' in row
    assert 'ScaleReadingNode' not in cli(bare, 'plugins').stdout  # nothing else provides it

    out = tmp_path / 'det.jsonl'
    good = graph(tmp_path / 'good.yaml', out, 'ScaleReadingNode', **SCALE)
    not_allowed = cli(with_path(ros_env, example['site']), 'validate', str(good))
    text = not_allowed.stdout + not_allowed.stderr
    assert not_allowed.returncode != 0
    assert f"plugin module '{MODULE}.scale_reading' is outside the plugin allowlist" in text
    assert 'refused before import' in text
    checked = cli(installed, 'validate', str(good))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    unknown = cli(bare, 'validate', str(good))
    assert unknown.returncode != 0 and "unknown plugin 'ScaleReadingNode'" in unknown.stdout + unknown.stderr

    # its parameters are checked like any built-in plugin's: declared types, then check_params
    bad = graph(tmp_path / 'bad.yaml', out, 'ScaleReadingNode', field=' ', factor='x')
    refused = cli(installed, 'validate', str(bad))
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "node 'scale'" in text and "parameter 'factor': expected float" in text

    ran = cli(installed, 'run', str(good), '--mode', 'deterministic', '--quiet',
              '--report-json', str(tmp_path / 'det.json'))
    assert ran.returncode == 0, ran.stderr
    assert converted(out) == [1.5, 0.425, None, 0.07]
    report = json.loads((tmp_path / 'det.json').read_text())
    assert report['metrics']['node.scale.converted_total'] == 3
    assert report['metrics']['node.scale.skipped_total'] == 1

    # live: every node a composable ROS node in a component container, edges over the runtime
    live_out = tmp_path / 'live.jsonl'
    live = graph(tmp_path / 'live.yaml', live_out, PLUGIN_PATH, **SCALE)
    ran = cli(installed, 'run', str(live), '--quiet', '--duration', '60',
              '--report-json', str(tmp_path / 'live.json'))
    assert ran.returncode == 0, ran.stderr
    assert converted(live_out) == [1.5, 0.425, None, 0.07]


def test_code_on_the_path_is_refused_until_its_prefix_is_allowed(example, ros_env, tmp_path):
    """Without package metadata the module is just code on the path: the allowlist decides."""
    out = tmp_path / 'out.jsonl'
    path_graph = graph(tmp_path / 'g.yaml', out, PLUGIN_PATH, **SCALE)
    refused = cli(with_path(ros_env, example['plain']), 'validate', str(path_graph))
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert f"plugin module '{MODULE}.scale_reading' is outside the plugin allowlist" in text
    assert 'refused before import' in text

    allowed = with_path(ros_env, example['plain'], allow=MODULE)
    checked = cli(allowed, 'validate', str(path_graph))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = cli(allowed, 'run', str(path_graph), '--mode', 'deterministic', '--quiet')
    assert ran.returncode == 0, ran.stderr
    assert converted(out) == [1.5, 0.425, None, 0.07]


class Client(RosPeer):
    """The client side of `ros2 component load`: LoadNode / ListNodes from another process."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, 'ext_client')

    def load(self, plugin: str, name: str, params: dict):
        request = LoadNode.Request(
            package_name='schnitzel_stream_ros', plugin_name=plugin, node_name=name, node_namespace='/ext'
        )
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in params.items()]
        return self.call(LoadNode, f'{CONTAINER}/_container/load_node', request)

    def listed(self) -> list[str]:
        response = self.call(ListNodes, f'{CONTAINER}/_container/list_nodes', ListNodes.Request())
        return list(response.full_node_names)

    def report(self) -> dict:
        return json.loads(self.call(Trigger, f'{CONTAINER}/_schnitzel/report', Trigger.Request()).message)



def _container(env: dict, log: Path) -> subprocess.Popen:
    cmd = container_command('box', '/ext', executor='events', max_events=None)
    cmd.remove('--paused')  # as `ros2 run` starts it by hand: loaded nodes run at once
    return processes.start(cmd, env, stdout=log.open('w'), stderr=subprocess.STDOUT)


SENSOR = ('schnitzel_stream_ros.nodes.sensors.simulated:SimulatedSensorSource',
          {'sensor_id': 'u1', 'field': 'distance_cm', 'waveform': 'constant', 'offset': 250.0,
           'rate_hz': 50.0})
SCALE_PARAMS = {**SCALE, 'inputs.in': ['/ext/sensor/out']}


def test_component_load_of_the_installed_plugin_and_allowlist_in_the_container(example, ros_env, ros_domain,
                                                                                tmp_path):
    client = Client(ros_domain)
    try:
        # 1. installed package, not allowed: refused by name and by path, nothing loaded
        box = _container(with_path(ros_env, example['site']), tmp_path / 'site_refused.log')
        try:
            for plugin in (PLUGIN_PATH, 'ScaleReadingNode'):
                refused = client.load(plugin, 'scale', SCALE_PARAMS)
                assert not refused.success and 'outside the plugin allowlist' in refused.error_message
            assert client.listed() == []
        finally:
            processes.stop(box)
        # 2. allowed: loads by its module path (what launch and `ros2 component load` send)
        box = _container(with_path(ros_env, example['site'], allow=MODULE), tmp_path / 'site.log')
        try:
            assert client.load(SENSOR[0], 'sensor', SENSOR[1]).success
            loaded = client.load(PLUGIN_PATH, 'scale', SCALE_PARAMS)
            assert (loaded.success, loaded.error_message, loaded.full_node_name) == (True, '', '/ext/scale')
            by_name = client.load('ScaleReadingNode', 'scale_by_name', SCALE_PARAMS)  # the registered name
            assert (by_name.success, by_name.error_message) == (True, '')
            assert client.listed() == ['/ext/sensor', '/ext/scale', '/ext/scale_by_name']
            deadline = time.monotonic() + 20
            while client.report()['nodes']['scale']['counters'].get('converted_total', 0) < 10:
                assert time.monotonic() < deadline, 'the external node converted nothing'
                time.sleep(0.1)
        finally:
            processes.stop(box)

        # 3. the same code merely on the path: refused in the container, then allowed
        box = _container(with_path(ros_env, example['plain']), tmp_path / 'plain.log')
        try:
            refused = client.load(PLUGIN_PATH, 'scale', SCALE_PARAMS)
            assert not refused.success
            assert 'outside the plugin allowlist' in refused.error_message
            assert client.listed() == []
        finally:
            processes.stop(box)
        box = _container(with_path(ros_env, example['plain'], allow=MODULE), tmp_path / 'allowed.log')
        try:
            allowed = client.load(PLUGIN_PATH, 'scale', SCALE_PARAMS)
            assert (allowed.success, allowed.error_message) == (True, '')
            assert client.listed() == ['/ext/scale']
        finally:
            processes.stop(box)
    finally:
        client.close()
