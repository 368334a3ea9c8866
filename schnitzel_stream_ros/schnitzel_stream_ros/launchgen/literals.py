"""Parameter values as Python source for a launch file, typed the way launch_ros will read them.

launch_ros reads plain strings in a parameter dict as YAML (so 'y' becomes true and '0483' becomes
483). Every string value is therefore wrapped in `ParameterValue(..., value_type=str)`. String
arrays are YAML-read element by element; an array whose elements would change type is passed as
JSON text instead, which the runtime decodes with the plugin's schema (docs/wiring.md).
"""
from __future__ import annotations

import json
import math
from typing import Any

import yaml

PARAMETER_VALUE = 'ParameterValue'


def _yaml_stable(text: str) -> bool:
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def scalar(value: Any) -> str:
    """A bool/int/float/str as Python source (no wrapping)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float('{value}')"
    if isinstance(value, bool | int | float | str):
        return repr(value)
    raise TypeError(f'not a ROS parameter scalar: {value!r}')


def typed_string(text: str) -> str:
    return f'{PARAMETER_VALUE}({text!r}, value_type=str)'


def parameter_value(value: Any) -> str:
    """Python source for one ROS parameter value (see module docstring for the string rules)."""
    if isinstance(value, str):
        return typed_string(value)
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value) and not all(_yaml_stable(v) for v in value):
            return typed_string(json.dumps(value, separators=(',', ':')))
        return '[' + ', '.join(scalar(v) for v in value) + ']'
    return scalar(value)
