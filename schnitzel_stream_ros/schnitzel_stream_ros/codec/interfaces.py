"""ROS interface names -> Python message classes (`sensor_msgs/msg/Range` -> sensor_msgs.msg.Range).

Ports, sensor sources and the container all name message types the ROS way; this is the one place
that turns such a name into its class, with errors that say which name and where.
"""
from __future__ import annotations

import importlib
import re

_INTERFACE = re.compile(r'^([A-Za-z][A-Za-z0-9_]*)/msg/([A-Z][A-Za-z0-9]*)$')


def message_class(type_name: str, where: str) -> type:
    """The Python class of a message interface name; ValueError naming `where` otherwise."""
    match = _INTERFACE.match(type_name)
    if match is None:
        raise ValueError(f'{where}: {type_name!r} is not a message type name like sensor_msgs/msg/Range')
    package, name = match.groups()
    try:
        module = importlib.import_module(f'{package}.msg')
    except ImportError:
        raise ValueError(f'{where}: message package {package!r} is not installed') from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f'{where}: package {package!r} has no message {name!r}')
    return cls
