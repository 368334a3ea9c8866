"""Stand-ins for the public launch / launch_ros API, used only because those packages are not
installable here: no package registry carries launch/launch_ros for the pip-wheel ROS 2 (a mock
where the real thing cannot run). Each class takes exactly the keyword arguments of the real
constructor it imitates, so generated launch files that call the real API wrongly fail here too;
they record what they were given and do nothing else. A real `ros2 launch` runs outside CI.
"""
from __future__ import annotations

import types
from typing import Any

#: keyword arguments of launch_ros.actions.Node that ComposableNodeContainer passes through
NODE_KWARGS = frozenset({
    'executable', 'package', 'name', 'namespace', 'exec_name', 'parameters', 'remappings', 'ros_arguments',
    'arguments', 'output', 'respawn', 'respawn_delay', 'cwd', 'env', 'additional_env', 'emulate_tty',
    'prefix', 'sigterm_timeout', 'sigkill_timeout',
})


class LaunchDescription:
    def __init__(self, initial_entities: list[Any] | None = None, *,
                 deprecated_reason: str | None = None) -> None:
        self.entities = list(initial_entities or [])


class DeclareLaunchArgument:
    def __init__(self, name: str, *, default_value: Any = None, description: str | None = None,
                 choices: list[str] | None = None) -> None:
        self.name, self.default_value, self.description = name, default_value, description


class OpaqueFunction:
    def __init__(self, *, function: Any, args: list[Any] | None = None,
                 kwargs: dict[str, Any] | None = None) -> None:
        self.function = function


class LogInfo:
    def __init__(self, *, msg: Any) -> None:
        self.msg = msg


class LaunchConfiguration:
    def __init__(self, variable_name: str, *, default: Any = None) -> None:
        self.variable_name, self.default = variable_name, default

    def perform(self, context: Any) -> str:
        return context.launch_configurations[self.variable_name]


class ComposableNodeContainer:
    def __init__(self, *, name: str, namespace: str, composable_node_descriptions: list[Any] | None = None,
                 **node_kwargs: Any) -> None:
        unknown = set(node_kwargs) - NODE_KWARGS
        if unknown:
            raise TypeError(f'ComposableNodeContainer got unexpected keyword arguments {sorted(unknown)}')
        self.name, self.namespace = name, namespace
        self.nodes = list(composable_node_descriptions or [])
        self.kwargs = node_kwargs


class Node:
    """launch_ros.actions.Node (a process of an executable of a package)."""

    def __init__(self, *, executable: str, package: str | None = None, name: str | None = None,
                 namespace: str | None = None, **node_kwargs: Any) -> None:
        unknown = set(node_kwargs) - NODE_KWARGS
        if unknown:
            raise TypeError(f'Node got unexpected keyword arguments {sorted(unknown)}')
        self.executable, self.package, self.name, self.namespace = executable, package, name, namespace
        self.kwargs = node_kwargs


class ComposableNode:
    def __init__(self, *, package: str, plugin: str, name: str | None = None, namespace: str | None = None,
                 parameters: list[Any] | None = None, remappings: list[tuple[str, str]] | None = None,
                 extra_arguments: list[Any] | None = None, condition: Any = None) -> None:
        self.package, self.plugin, self.name, self.namespace = package, plugin, name, namespace
        self.parameters, self.remappings = parameters or [], remappings or []
        self.extra_arguments = extra_arguments or []


class ParameterValue:
    def __init__(self, value: Any, *, value_type: Any = None) -> None:
        self.value, self.value_type = value, value_type


def modules() -> dict[str, types.ModuleType]:
    """The stand-in modules by import name (launch, launch.actions, launch_ros.*)."""
    attributes_by_module = {
        'launch': {'LaunchDescription': LaunchDescription},
        'launch.actions': {'DeclareLaunchArgument': DeclareLaunchArgument, 'OpaqueFunction': OpaqueFunction,
                           'LogInfo': LogInfo},
        'launch.substitutions': {'LaunchConfiguration': LaunchConfiguration},
        'launch_ros': {},
        'launch_ros.actions': {'ComposableNodeContainer': ComposableNodeContainer, 'Node': Node},
        'launch_ros.descriptions': {'ComposableNode': ComposableNode},
        'launch_ros.parameter_descriptions': {'ParameterValue': ParameterValue},
    }
    made = {}
    for name, attributes in attributes_by_module.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        made[name] = module
    return made


def install(monkeypatch: Any) -> None:
    """Put the stand-in modules into sys.modules for one test."""
    import sys

    for name, module in modules().items():
        monkeypatch.setitem(sys.modules, name, module)
