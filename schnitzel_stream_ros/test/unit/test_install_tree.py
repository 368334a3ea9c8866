"""The install tree holds what a ROS user's tools look for (found the ROS way: the ament index)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ament_index_python import get_resource
from ament_index_python.packages import (
    get_package_prefix,
    get_package_share_directory,
    get_packages_with_prefixes,
)
from catkin_pkg.package import parse_package

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry


def test_both_packages_are_in_the_ament_index():
    packages = get_packages_with_prefixes()
    assert 'schnitzel_stream_msgs' in packages
    assert 'schnitzel_stream_ros' in packages


def test_message_definitions_are_installed():
    msg_dir = Path(get_package_share_directory('schnitzel_stream_msgs')) / 'msg'
    installed = {p.name for p in msg_dir.glob('*.msg')}
    assert {'StreamPacket.msg', 'Event.msg', 'BlobRef.msg', 'BoundingBox.msg'} <= installed


def test_share_has_launch_config_and_manifest():
    share = Path(get_package_share_directory('schnitzel_stream_ros'))
    assert (share / 'package.xml').is_file()
    assert (share / 'launch').is_dir()
    assert (share / 'config').is_dir()
    assert (share / 'config' / 'examples' / 'pid_fps.yaml').is_file()  # the control loop example


def test_executables_are_where_ros2_run_looks():
    lib = Path(get_package_prefix('schnitzel_stream_ros')) / 'lib' / 'schnitzel_stream_ros'
    for name in ('schnitzel-stream',):
        exe = lib / name
        assert exe.is_file(), exe
        assert os.access(exe, os.X_OK), exe


def test_component_types_resource_lists_every_plugin_by_the_name_the_container_loads():
    """`ros2 component types` reads resource type rclcpp_components, lines `TypeName;library`."""
    content, _prefix = get_resource('rclcpp_components', 'schnitzel_stream_ros')
    rows = [line.split(';') for line in content.splitlines()]
    assert all(len(row) == 2 for row in rows), rows
    types = [type_name for type_name, _ in rows]
    registered = PluginRegistry(Allowlist()).entry_points  # name -> canonical module:Class
    assert types == sorted(registered.values())  # every plugin, once, in a stable order
    for type_name, library in rows:
        assert library == type_name.partition(':')[0]  # the Python module that defines the plugin


def test_package_manifest_parses_as_ament_python_with_rosdep_keys():
    """A manifest catkin_pkg cannot parse silently turns the package into a plain Python one."""
    share = Path(get_package_share_directory('schnitzel_stream_ros'))
    manifest = parse_package(str(share / 'package.xml'))
    assert manifest.get_build_type() == 'ament_python'
    run_keys = {d.name for d in (*manifest.build_depends, *manifest.exec_depends)} | {
        d.name for d in manifest.build_export_depends}
    # what the installed code imports, by rosdep key (plus the launch side and the container services)
    assert {'rclpy', 'rcl_interfaces', 'builtin_interfaces', 'std_msgs', 'sensor_msgs', 'std_srvs',
            'composition_interfaces', 'lifecycle_msgs', 'ament_index_python', 'launch', 'launch_ros',
            'schnitzel_stream_msgs',
            'python3-yaml', 'python3-numpy', 'python3-opencv', 'python3-serial',
            'python3-onnxruntime-pip', 'python3-fastapi', 'python3-uvicorn', 'python3-matplotlib'} <= run_keys


@pytest.mark.parametrize('name', ['component_container', 'component_container_mt',
                                  'component_container_isolated', 'schnitzel-stream', 'lifecycle_manager'])
def test_installed_executables_run_with_an_interpreter_that_has_the_suite_dependencies(name):
    """launch_ros and `ros2 run` execute these files directly: their shebang picks the interpreter.

    It must import the suite's third-party packages by itself (no PYTHONPATH), since the process
    that starts it may be a ROS tool running under the install's own Python.
    """
    exe = Path(get_package_prefix('schnitzel_stream_ros')) / 'lib' / 'schnitzel_stream_ros' / name
    shebang = exe.read_text().splitlines()[0]
    assert shebang.startswith('#!'), shebang
    interpreter = shebang[2:].split()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    done = subprocess.run([*interpreter, '-c', 'import cv2, serial, onnxruntime'], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f'{shebang}: {done.stderr.strip().splitlines()[-1:]}'
