"""Any ROS message object -> a strict-JSON value, by walking its generated field list.

Why not rosidl_runtime_py's message_to_ordereddict: it is not installed with the pip wheels, and
its output is not strict JSON (NaN/Infinity floats pass through, which the JSON lanes refuse). The
walk uses only what every generated Python message class has: `get_fields_and_field_types()`
(falling back to `__slots__`). Conversions:
- nested messages -> objects (field order kept); builtin_interfaces/Time -> {sec, nanosec};
- fixed/bounded/unbounded arrays (numpy arrays, array.array, lists) -> lists; arrays longer than
  `max_array_items` become {"length": n, "truncated": true} so an Image's pixels cannot blow up a
  packet (0 = no limit);
- `byte`/`octet` values (bytes of length 1) -> ints, longer bytes -> lists of ints;
- NaN and ±Infinity -> null (REP 117 uses ±Inf for "out of range", which JSON cannot carry).
"""
from __future__ import annotations

import array
import math
from typing import Any

import numpy as np

DEFAULT_MAX_ARRAY_ITEMS = 4096


def is_ros_message(value: Any) -> bool:
    return hasattr(type(value), 'get_fields_and_field_types')


def interface_name(msg: Any) -> str:
    """'sensor_msgs/msg/Range' for a sensor_msgs.msg.Range object (module path of generated code)."""
    cls = type(msg)
    package = cls.__module__.split('.', 1)[0]
    kind = 'msg'
    parts = cls.__module__.split('.')
    if len(parts) > 1 and parts[1] in ('msg', 'srv', 'action'):
        kind = parts[1]
    return f'{package}/{kind}/{cls.__name__}'


def field_names(msg: Any) -> list[str]:
    getter = getattr(type(msg), 'get_fields_and_field_types', None)
    if getter is not None:
        return list(getter())
    return [s.lstrip('_') for s in getattr(type(msg), '__slots__', ()) if s != '_check_fields']


def _scalar(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, np.generic):
        return _scalar(value.item())
    raise TypeError(f'{type(value).__name__} is not a ROS field value')


def to_json_value(value: Any, max_array_items: int = DEFAULT_MAX_ARRAY_ITEMS) -> Any:
    """Strict-JSON value of a message, array or field value (see module doc)."""
    if is_ros_message(value):
        return {name: to_json_value(getattr(value, name), max_array_items) for name in field_names(value)}
    if isinstance(value, bytes | bytearray):
        return value[0] if len(value) == 1 else list(value)
    if isinstance(value, np.ndarray | array.array | list | tuple):
        length = len(value)
        if max_array_items and length > max_array_items:
            return {'length': length, 'truncated': True}
        if isinstance(value, np.ndarray | array.array):
            value = value.tolist()
        return [to_json_value(item, max_array_items) for item in value]
    return _scalar(value)


def message_to_dict(msg: Any, max_array_items: int = DEFAULT_MAX_ARRAY_ITEMS) -> dict[str, Any]:
    """A message object as a JSON object (raises TypeError for a non-message)."""
    if not is_ros_message(msg):
        raise TypeError(f'expected a ROS message object, got {type(msg).__name__}')
    return to_json_value(msg, max_array_items)
