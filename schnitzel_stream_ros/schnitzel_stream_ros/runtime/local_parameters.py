"""Remote parameters inside the deterministic engine: another node's dynamic parameters, set the
way `ros2 param set` sets them (same checks), without DDS.

The deterministic mode has no ROS parameter services; a controller in it still acts through the
one interface plugins have for that (plugin.RemoteParameters), and a change is refused for the same
reasons the live node would refuse it (unknown node or parameter, read-only, out of range). The
answer comes at once, on the engine's one thread (the calling plugin's own).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.plugin import ParamDone, ParamError
from schnitzel_stream_ros.runtime.plugin_host import PluginError, PluginHost


class LocalParameters:
    """plugin.RemoteParameters over the hosts of one engine (node names: id or /namespace/id)."""

    def __init__(self, hosts: Mapping[str, PluginHost]) -> None:
        self._hosts = hosts

    def _host(self, node: str) -> PluginHost | None:
        return self._hosts.get(node.rsplit('/', 1)[-1])

    def get(self, node: str, name: str, done: ParamDone) -> None:
        host = self._host(node)
        if host is None or name not in host.plugin_cls.param_schema():
            done(None, f'no parameter {name!r} on node {node!r}')
            return
        done(host.params[name], None)

    def set(self, node: str, name: str, value: Any, done: ParamDone) -> None:
        host = self._host(node)
        spec = host.plugin_cls.param_schema().get(name) if host is not None else None
        if host is None or spec is None:
            done(None, f'no parameter {name!r} on node {node!r}')
            return
        if not spec.dynamic:
            done(None, f"parameter '{name}' is read-only while the node runs")
            return
        try:
            checked = spec.check(_as_type(value, spec.type))
            host.apply_params({name: checked})
        except (ParamError, PluginError) as exc:
            done(None, str(exc))
            return
        done(checked, None)


def _as_type(value: Any, declared: type) -> Any:
    """A knob value (a number) as the parameter's type: int rounded, bool for 0/1."""
    if declared is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if declared is bool and isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    return value
