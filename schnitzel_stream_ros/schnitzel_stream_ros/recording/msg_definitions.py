"""Complete `ros2msg` message definitions, as ros2 bag stores them in MCAP schemas.

A reader that has no ROS install (Foxglove, rosbags, mcap's own tools) decodes a recording only
with the full definition of each message type: its .msg text followed by every type it uses,
recursively. rosbag2 writes that text as: the root .msg first, then each dependency preceded by a
line of 80 `=` and a line `MSG: <type as written in the field>` (docs/message_definition_encoding.md
of rosbag2). Dependencies are visited depth-first in sorted order and each appears once, as
rosbag2 does, so our schemas are byte-identical to its schemas for the same installed messages.

The text comes from the installed `share/<package>/msg/<Type>.msg` files found through the ament
index — the same files rosbag2 reads — because rosidl_runtime_py is not part of the pip wheels.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

#: The line between definitions (exactly 80 '=').
SEPARATOR = '=' * 80
#: Field types that are not messages (rosidl's primitive types).
PRIMITIVE_TYPES = frozenset({
    'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
    'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring',
})
#: Deepest nesting followed before a definition is considered cyclic (rosbag2 uses 50 as well).
MAX_DEPTH = 50

_INTERFACE = re.compile(r'^([A-Za-z][A-Za-z0-9_]*)/(?:msg/)?([A-Za-z][A-Za-z0-9_]*)$')
# the type token that starts a field line: `pkg/Type[] name`, `Type name`, `uint8 X=1`
_FIELD_TYPE = re.compile(r'^\s*([A-Za-z][A-Za-z0-9_/]*)(?:\[[^\]]*\])?\s+')


class DefinitionNotFound(LookupError):
    """No installed .msg file for a message type."""


def split_type_name(type_name: str) -> tuple[str, str]:
    """`pkg/msg/Type` or `pkg/Type` -> (pkg, Type); ValueError for anything else."""
    match = _INTERFACE.match(type_name)
    if match is None:
        raise ValueError(f'{type_name!r} is not a message type name like sensor_msgs/msg/Image')
    return match.group(1), match.group(2)


@lru_cache(maxsize=256)
def msg_file_text(type_name: str) -> str:
    """The installed .msg text of a type (`pkg/msg/Type` or `pkg/Type`)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    package, name = split_type_name(type_name)
    try:
        share = Path(get_package_share_directory(package))
    except PackageNotFoundError:
        raise DefinitionNotFound(f'{type_name}: package {package!r} is not in the ament index') from None
    path = share / 'msg' / f'{name}.msg'
    if not path.is_file():
        raise DefinitionNotFound(f'{type_name}: no {path}')
    return path.read_text(encoding='utf-8')


def field_dependencies(text: str, package: str) -> list[str]:
    """Message types used by the fields of a .msg text, sorted, qualified with `package` when bare."""
    found: set[str] = set()
    for line in text.splitlines():
        match = _FIELD_TYPE.match(line)
        if match is None:
            continue
        token = match.group(1)
        if token in PRIMITIVE_TYPES:
            continue
        found.add(token if '/' in token else f'{package}/{token}')
    return sorted(found)


def full_definition(type_name: str) -> str:
    """The complete ros2msg definition text of `type_name` (root first, then its dependencies)."""
    seen: set[str] = set()

    def expand(name: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise ValueError(f'{type_name}: message definitions nest deeper than {MAX_DEPTH} levels')
        text = msg_file_text(name)
        parts = [text]
        for dependency in field_dependencies(text, split_type_name(name)[0]):
            if dependency in seen:
                continue
            seen.add(dependency)
            parts.append(f'\n{SEPARATOR}\nMSG: {dependency}\n')
            parts.append(expand(dependency, depth + 1))
        return ''.join(parts)

    return expand(type_name, 0)
