"""Message type support without the code generator (runtime/type_support_import.py), in fresh
interpreters: real rclpy nodes publish and receive, the generator's template engine and parser are
not imported, and `generate_py` is still there for whoever asks for it."""
from __future__ import annotations

import json
import subprocess
import sys

PUBLISH_AND_RECEIVE = '''
import json, sys, time
from schnitzel_stream_ros.runtime import type_support_import
prepared = type_support_import.prepare()
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('lean_type_support')
got = []
node.create_subscription(String, 'lean_chatter', lambda m: got.append(m.data), 10)
pub = node.create_publisher(String, 'lean_chatter', 10)
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    pub.publish(String(data='hello'))
    rclpy.spin_once(node, timeout_sec=0.1)
heavy = sorted(m for m in ('em', 'lark', 'rosidl_pycommon', 'rosidl_generator_py.generate_py_impl')
               if m in sys.modules)
from rosidl_generator_py import generate_py
print(json.dumps({'prepared': prepared, 'got': got[:1], 'heavy_before_asking': heavy,
                  'generate_py': callable(generate_py) and 'em' in sys.modules}))
node.destroy_node()
rclpy.shutdown()
'''

ALREADY_IMPORTED = '''
import json, rosidl_generator_py
from schnitzel_stream_ros.runtime import type_support_import
print(json.dumps({'prepared': type_support_import.prepare(),
                  'lean': type_support_import.loaded_without_generator()}))
'''


def run(script: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_messages_flow_without_the_generator_which_is_still_importable(ros_env):
    assert run(PUBLISH_AND_RECEIVE, ros_env) == {
        'prepared': True, 'got': ['hello'], 'heavy_before_asking': [], 'generate_py': True,
    }


def test_an_already_imported_package_is_left_as_it_is(ros_env):
    assert run(ALREADY_IMPORTED, ros_env) == {'prepared': False, 'lean': False}
