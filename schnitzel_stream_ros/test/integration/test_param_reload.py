"""A `ros2 param dump` loaded back with `ros2 param load` changes nothing (ros_params.unchanged_parameter).

The node here is a plain rclpy node of this process (on the test's own domain; the check is what
the node's set_parameters service applies); the values are what rclpy's parameter_dict_from_yaml_file —
the reader of `ros2 param load` — makes of a dump written the way `ros2 param dump` writes it.
"""

from __future__ import annotations

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_dict_from_yaml_file

from schnitzel_stream_ros.runtime.ros_params import as_reloaded, unchanged_parameter

pytestmark = pytest.mark.integration

VALUES = {
    'rate': 1e-05,  # rclpy reads it back as text (ros2cli#834)
    'ident': '123',  # text that reads as an integer
    'flag': 'true',
    'json_list': '[1, 2]',  # JSON text of a list parameter: reads as an integer array
    'mixed': '[1, "x"]',  # stays text
    'names': ['a', 'b'],
    'numbers': [1.5, 2.0],
    'count': 3,
}


@pytest.fixture
def node(ros_domain):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    n = Node('reload', context=context, start_parameter_services=False)
    for name, value in VALUES.items():
        n.declare_parameter(name, value, ParameterDescriptor(read_only=True))
    n.declare_parameter('unset', None, ParameterDescriptor(read_only=True, dynamic_typing=True))
    yield n
    n.destroy_node()
    rclpy.shutdown(context=context)


def test_every_value_of_a_dump_reads_back_as_unchanged(node, tmp_path):
    path = tmp_path / 'dump.yaml'
    dumped = {name: node.get_parameter(name).value for name in [*VALUES, 'unset']}
    dumped = {k: list(v) if hasattr(v, 'tolist') else v for k, v in dumped.items()}
    path.write_text(yaml.dump({'/reload': {'ros__parameters': dumped}}, default_flow_style=False))
    reloaded = [Parameter.from_parameter_msg(m) for m in parameter_dict_from_yaml_file(str(path)).values()]
    retyped = {p.name for p in reloaded if p.type_ != node.get_parameter(p.name).type_}
    assert retyped == {'rate', 'ident', 'flag', 'json_list', 'unset'}  # what the reader changes
    assert all(unchanged_parameter(node, p) for p in reloaded)


def test_a_real_change_is_not_unchanged(node):
    assert not unchanged_parameter(node, Parameter('rate', value=2e-05))
    assert not unchanged_parameter(node, Parameter('ident', value=124))
    assert not unchanged_parameter(node, Parameter('names', value=['a']))
    assert not unchanged_parameter(node, Parameter('unset', value='{}'))
    assert not unchanged_parameter(node, Parameter('undeclared', value=1))
    assert as_reloaded(Parameter('rate', value=1e-05)).value == '1e-05'
