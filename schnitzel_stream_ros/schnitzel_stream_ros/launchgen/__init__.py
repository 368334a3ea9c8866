"""Validated graph -> Python launch file for launch_ros (public launch/launch_ros API only)."""
from schnitzel_stream_ros.launchgen.render import GENERATOR_VERSION, render_launch_file

__all__ = ['GENERATOR_VERSION', 'render_launch_file']
