"""Launch-time compilation, used by launch/site.launch.py: validate, compile, refuse or launch.

The graph is validated when `ros2 launch` runs (not when the launch file was written), so the
file that starts is always the one on disk now. An invalid graph raises GraphRefused carrying the
validator's lines; launch prints it and exits non-zero — nothing starts. A valid graph is rendered
by the same generator as `schnitzel-stream compile`, and that text is what launch executes, so
the two paths cannot drift apart.
"""
from __future__ import annotations

import os
from typing import Any

from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate
from schnitzel_stream_ros.launchgen.render import render_launch_file


class GraphRefused(RuntimeError):
    """The graph is invalid; the message is every validator line."""

    def __init__(self, path: str, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(f'refusing to launch invalid graph {path}:\n' + '\n'.join(lines))


def launch_entities(path: str | os.PathLike[str], registry: PluginRegistry | None = None) -> list[Any]:
    """[LogInfo per graph warning, LogInfo, LaunchDescription] for a valid graph file; GraphRefused
    otherwise."""
    from launch.actions import LogInfo  # launch is only importable where ROS is installed

    path = os.fspath(path)
    result = load_and_validate(path, registry)
    if not result.ok or result.graph is None:
        raise GraphRefused(path, [str(e) for e in result.errors])
    graph = result.graph
    text = render_launch_file(graph, source_label=path)
    scope: dict[str, Any] = {'__name__': 'schnitzel_stream_generated_launch'}
    exec(compile(text, f'<launch file of {path}>', 'exec'), scope)  # our own generated code
    description = scope['generate_launch_description']()
    summary = (f'schnitzel_stream: graph {path} (sha256 {graph.spec.sha256[:12]}) is valid: '
               f'{len(graph.nodes)} nodes in {len(graph.containers)} container(s)')
    ignored = [LogInfo(msg=f'schnitzel_stream: {warning}') for warning in graph.warnings]
    return [*ignored, LogInfo(msg=summary), description]
