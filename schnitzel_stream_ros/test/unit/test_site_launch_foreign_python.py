"""site.launch.py the way a ROS install runs it: under an interpreter that has none of the suite's packages.

On a ROS install `ros2 launch` runs with the system Python, which cannot import OpenCV, pyserial,
onnxruntime or numpy from the suite's environment. Here that interpreter is this one started with
`-I -S` (no site-packages, no PYTHONPATH) and given only what a ROS install's Python has for this
file: launch (the API-shaped stand-ins of launch_api_standins — launch itself is not installable
here, a mock where the real thing cannot run) and a copy of ament_index_python. The installed
launch file must still validate and compile the graph (through the suite's installed CLI) and
produce the launch description, and refuse an invalid graph before any container exists.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ament_index_python
import pytest
from ament_index_python.packages import get_package_share_directory

from schnitzel_stream_ros.graph.validate import load_and_validate

UNIT_DIR = Path(__file__).resolve().parent
PACKAGE = UNIT_DIR.parents[1]
#: what the launch process must not be able to import for this test to mean anything
SUITE_ONLY = ('cv2', 'serial', 'onnxruntime', 'numpy', 'rclpy', 'schnitzel_stream_ros')

DRIVER = r'''
import importlib.util, json, sys
standins_dir, pylib, launch_file, graph = sys.argv[1:5]
sys.path[:0] = [standins_dir, pylib]
import launch_api_standins
modules = launch_api_standins.modules()
created = []
class CountingContainer(modules['launch_ros.actions'].ComposableNodeContainer):
    def __init__(self, **kwargs):
        created.append(kwargs['name'])
        super().__init__(**kwargs)
modules['launch_ros.actions'].ComposableNodeContainer = CountingContainer
sys.modules.update(modules)
importable = []
for name in sys.argv[5:]:
    try:
        __import__(name)
        importable.append(name)
    except ImportError:
        pass
spec = importlib.util.spec_from_file_location('site_launch', launch_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
argument, opaque = module.generate_launch_description().entities
context = type('Context', (), {'launch_configurations': {'graph': graph or argument.default_value}})()
out = {'importable': importable, 'default_graph': argument.default_value}
try:
    *logs, description = opaque.function(context)
except module.GraphRefused as refused:
    out['refused'] = refused.lines
else:
    out['log'] = logs[-1].msg
    *containers, gate = description.entities
    out['containers'] = [
        {'name': c.name, 'namespace': c.namespace, 'kwargs': c.kwargs,
         'nodes': [[n.name, n.plugin] for n in c.nodes]} for c in containers]
    out['gate'] = {'executable': gate.executable, 'namespace': gate.namespace}
out['created'] = created
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def foreign_python(tmp_path_factory):
    """Run the installed site.launch.py under `python -I -S` with only stand-in launch + ament index."""
    pylib = tmp_path_factory.mktemp('ros_python_lib')
    shutil.copytree(Path(ament_index_python.__file__).parent, pylib / 'ament_index_python')
    launch_file = Path(get_package_share_directory('schnitzel_stream_ros')) / 'launch' / 'site.launch.py'

    def run(graph: str = '') -> dict:
        done = subprocess.run(
            [sys.executable, '-I', '-S', '-c', DRIVER, str(UNIT_DIR), str(pylib), str(launch_file), graph,
             *SUITE_ONLY],
            capture_output=True, text=True, timeout=240, env=dict(os.environ), cwd=PACKAGE,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    return run


def test_the_launch_interpreter_has_none_of_the_suite_packages(foreign_python):
    assert foreign_python(str(PACKAGE / 'test' / 'graphs' / 'valid' / 'chain.yaml'))['importable'] == []


def test_site_graph_validates_compiles_and_yields_its_containers(foreign_python):
    out = foreign_python()
    assert Path(out['default_graph']).name == 'site.yaml'
    assert 'is valid: 16 nodes in 3 container(s)' in out['log']
    camera, vision, events = out['containers']
    assert (camera['name'], vision['name'], events['name']) == ('camera', 'vision', 'events')
    assert camera['namespace'] == vision['namespace'] == events['namespace'] == '/site'
    # the containers it starts are ours: launch_ros runs lib/schnitzel_stream_ros/component_container
    assert vision['kwargs'] == {'package': 'schnitzel_stream_ros', 'executable': 'component_container',
                                'arguments': ['--paused'], 'respawn': True, 'output': 'screen'}
    assert out['gate'] == {'executable': 'start_gate', 'namespace': '/site'}  # opens them once wired
    assert [n for n, _ in camera['nodes']] == ['cam0', 'cam1']
    assert [n for n, _ in vision['nodes']] == ['det0', 'det1', 'trk0', 'trk1', 'annotated0']
    assert dict(camera['nodes'])['cam0'] == (
        'schnitzel_stream_ros.nodes.vision.video_file:OpenCvVideoFileSource')
    assert dict(events['nodes'])['distance'] == (
        'schnitzel_stream_ros.nodes.sensors.serial_line:SerialLineSensorSource')
    assert out['created'] == ['camera', 'vision', 'events']


def test_an_invalid_graph_is_refused_before_any_container_exists(foreign_python):
    bad = PACKAGE / 'test' / 'graphs' / 'invalid' / 'unknown_param.yaml'
    out = foreign_python(str(bad))
    assert out['refused'] == [str(e) for e in load_and_validate(bad).errors]
    assert out['refused'] and out['refused'][0].startswith(f"{bad}:9: node 'out': unknown parameter")
    assert out['created'] == []
