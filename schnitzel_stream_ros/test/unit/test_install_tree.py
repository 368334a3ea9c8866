"""The install tree holds what a ROS user's tools look for (found the ROS way: the ament index)."""
from __future__ import annotations

import os
from pathlib import Path

from ament_index_python.packages import (
    get_package_prefix,
    get_package_share_directory,
    get_packages_with_prefixes,
)


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


def test_executables_are_where_ros2_run_looks():
    lib = Path(get_package_prefix('schnitzel_stream_ros')) / 'lib' / 'schnitzel_stream_ros'
    for name in ('schnitzel-stream',):
        exe = lib / name
        assert exe.is_file(), exe
        assert os.access(exe, os.X_OK), exe
