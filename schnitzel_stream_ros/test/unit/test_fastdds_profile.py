"""The Fast DDS profile containers start with (runtime/fastdds_profile.py): used only when the
operator chose none, and really read by Fast DDS (a real rclpy process per case, real DDS entities:
the per-node memory it exists to save is measured, not assumed)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schnitzel_stream_ros.runtime import fastdds_profile

#: Five LifecycleNodes after one plain node; prints the anonymous memory they added, per node (kB).
PER_NODE_ANON_KB = '''
import json, time
import rclpy
from rclpy.lifecycle import LifecycleNode

def anonymous_kb():
    for line in open('/proc/self/smaps_rollup'):
        if line.startswith('Anonymous:'):
            return int(line.split()[1])

rclpy.init()
first = rclpy.create_node('first')
before = anonymous_kb()
nodes = [LifecycleNode(f'n{i}') for i in range(5)]
print(json.dumps({'per_node_kb': (anonymous_kb() - before) / len(nodes)}))
for node in (*nodes, first):
    node.destroy_node()
rclpy.shutdown()
'''


def test_the_profile_is_used_when_the_operator_chose_none(tmp_path):
    env: dict[str, str] = {}
    assert fastdds_profile.prepare(env, cwd=tmp_path) == fastdds_profile.PROFILE
    assert env == {'FASTRTPS_DEFAULT_PROFILES_FILE': str(fastdds_profile.PROFILE)}
    assert fastdds_profile.PROFILE.is_file()


@pytest.mark.parametrize('env, reason', [
    ({'FASTRTPS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'}, 'FASTRTPS_DEFAULT_PROFILES_FILE is set'),
    ({'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'}, 'FASTDDS_DEFAULT_PROFILES_FILE is set'),
    ({'SKIP_DEFAULT_XML': '1'}, 'SKIP_DEFAULT_XML is set'),
    ({'SCHNITZEL_STREAM_DDS_SMALL_POOLS': '0'}, 'SCHNITZEL_STREAM_DDS_SMALL_POOLS=0'),
    ({'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'}, 'RMW_IMPLEMENTATION=rmw_cyclonedds_cpp'),
])
def test_an_operator_choice_is_left_alone(tmp_path, env, reason):
    given = dict(env)
    assert fastdds_profile.operator_choice(env, tmp_path) == reason
    assert fastdds_profile.prepare(env, cwd=tmp_path) is None
    assert env == given


def test_a_profile_in_the_working_directory_is_left_alone(tmp_path):
    (tmp_path / 'DEFAULT_FASTRTPS_PROFILES.xml').write_text('<dds/>')
    env: dict[str, str] = {}
    assert fastdds_profile.prepare(env, cwd=tmp_path) is None
    assert env == {}


def per_node_kb(env: dict[str, str], cwd: Path) -> float:
    done = subprocess.run([sys.executable, '-c', PER_NODE_ANON_KB], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])['per_node_kb']


def test_fast_dds_reads_the_profile_and_a_node_costs_less(ros_env, tmp_path):
    """Fast DDS only logs a profile it cannot parse and goes on with its defaults: so the proof that
    it read this one is the memory it saves (measured 1.78 -> 0.82 MB per LifecycleNode)."""
    plain = {k: v for k, v in ros_env.items() if k not in fastdds_profile.PROFILE_VARIABLES}
    ours = dict(plain)
    assert fastdds_profile.prepare(ours, cwd=tmp_path) is not None
    without, with_profile = per_node_kb(plain, tmp_path), per_node_kb(ours, tmp_path)
    assert with_profile < 0.75 * without, (without, with_profile)
