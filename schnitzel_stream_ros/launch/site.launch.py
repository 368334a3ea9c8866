"""Launch the site graph: config/site.yaml, or any graph file with graph:=PATH.

`ros2 launch` runs this file with whatever Python runs `ros2` — on a ROS install the system
interpreter, which cannot import the suite's own dependencies (OpenCV, pyserial, onnxruntime live in
the suite's environment). So this file needs nothing but the standard library, launch and
ament_index_python: the graph is validated and compiled when the launch runs, in a child process, by
the suite's installed `schnitzel-stream compile` (lib/schnitzel_stream_ros, started with the suite's
interpreter). An invalid graph is refused with the validator's lines before anything starts; a valid
one yields the same launch description `schnitzel-stream compile -o FILE` writes (public launch_ros
API only), which is what starts.
"""
import os
import re
import subprocess

from ament_index_python.packages import get_package_prefix
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration

PACKAGE = 'schnitzel_stream_ros'
# share/schnitzel_stream_ros/launch/site.launch.py -> share/schnitzel_stream_ros/config/site.yaml
_SHARE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GRAPH = os.path.join(_SHARE, 'config', 'site.yaml')
#: `schnitzel-stream compile` exit status for an invalid graph (cli.EXIT_INVALID)
EXIT_INVALID = 2
#: validating the site graph imports OpenCV and onnxruntime: seconds, not minutes
COMPILE_TIMEOUT_SEC = 300.0
_SUMMARY = re.compile(r'graph: (\d+) containers?, (\d+) nodes? \(generated\)')
_SHA256 = re.compile(r'^# graph sha256: ([0-9a-f]{64})$', re.MULTILINE)


class GraphRefused(RuntimeError):
    """The graph is invalid; `lines` are the validator's messages, one per problem."""

    def __init__(self, path, lines):
        self.lines = lines
        super().__init__(f'refusing to launch invalid graph {path}:\n' + '\n'.join(lines))


def compiler_command():
    """The suite's own CLI as colcon installed it (its shebang names the suite's interpreter)."""
    exe = os.path.join(get_package_prefix(PACKAGE), 'lib', PACKAGE, 'schnitzel-stream')
    if not os.access(exe, os.X_OK):
        raise RuntimeError(f'schnitzel_stream: {exe} is missing or not executable: build the package '
                           '(colcon build) and source its setup file again')
    return [exe]


def compile_graph(path):
    """(launch file text, warning lines) of a valid graph, via `schnitzel-stream compile PATH -o -`;
    GraphRefused else."""
    try:
        done = subprocess.run([*compiler_command(), 'compile', path, '-o', '-'], capture_output=True,
                              text=True, timeout=COMPILE_TIMEOUT_SEC, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f'schnitzel_stream: compiling {path} took longer than '
                           f'{COMPILE_TIMEOUT_SEC:.0f} s') from None
    errors = done.stderr.splitlines()
    if done.returncode == EXIT_INVALID:
        # every validator line, without the closing "<graph>: invalid, no launch file written"
        raise GraphRefused(path, [line for line in errors if not line.endswith('no launch file written')])
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f'schnitzel_stream: compiling {path} failed (exit {done.returncode}):\n'
                           + '\n'.join(errors[-20:]))
    return done.stdout, [line for line in errors if ': warning: ' in line]


def launch_entities(path):
    """[LogInfo per graph warning, LogInfo, LaunchDescription] of the graph file at `path`, compiled now."""
    text, warnings = compile_graph(path)
    scope = {'__name__': 'schnitzel_stream_generated_launch'}
    exec(compile(text, f'<launch file of {path}>', 'exec'), scope)  # the suite's own generator output
    description = scope['generate_launch_description']()
    sha = _SHA256.search(text)
    counts = _SUMMARY.search(text)
    summary = f'schnitzel_stream: graph {path}'
    if sha and counts:
        summary += (f' (sha256 {sha.group(1)[:12]}) is valid: {counts.group(2)} nodes in '
                    f'{counts.group(1)} container(s)')
    logged = [LogInfo(msg=f'schnitzel_stream: {line}') for line in warnings]
    return [*logged, LogInfo(msg=summary), description]


def _start_graph(context):
    return launch_entities(LaunchConfiguration('graph').perform(context))


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('graph', default_value=DEFAULT_GRAPH,
                              description='graph file to validate, compile and launch'),
        OpaqueFunction(function=_start_graph),
    ])
