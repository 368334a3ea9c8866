"""Launch the site graph: config/site.yaml, or any graph file with graph:=PATH.

The graph is validated and compiled at launch time; an invalid graph is refused with the
validator's messages before anything starts (see schnitzel_stream_ros.launchgen.site).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from schnitzel_stream_ros.launchgen.site import launch_entities

# share/schnitzel_stream_ros/launch/site.launch.py -> share/schnitzel_stream_ros/config/site.yaml
_SHARE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GRAPH = os.path.join(_SHARE, 'config', 'site.yaml')


def _start_graph(context):
    return launch_entities(LaunchConfiguration('graph').perform(context))


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('graph', default_value=DEFAULT_GRAPH,
                              description='graph file to validate, compile and launch'),
        OpaqueFunction(function=_start_graph),
    ])
