"""An example plugin package for schnitzel_stream_ros, outside the suite's tree.

It shows everything a third-party package needs: a plugin class on schnitzel_stream_ros's Plugin
base class and one entry point in the `schnitzel_stream_ros.plugins` group. Install it with pip
(`pip install .`) or build it in a colcon workspace; `schnitzel-stream plugins` then lists
`ScaleReadingNode`, and graphs name it `plugin: ScaleReadingNode`.
"""
from setuptools import setup

PACKAGE = 'schnitzel_stream_example_plugins'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=[PACKAGE],
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
    ],
    # schnitzel_stream_ros itself is not a pip dependency: on ROS it comes from the workspace
    # (package.xml exec_depend), and pip cannot install it from an index.
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='schnitzel_stream maintainers',
    maintainer_email='maintainers@schnitzel-stream.org',
    description='Example plugin package for schnitzel_stream_ros.',
    license='Apache-2.0',
    entry_points={
        'schnitzel_stream_ros.plugins': [
            'ScaleReadingNode = schnitzel_stream_example_plugins.scale_reading:ScaleReadingNode',
        ],
    },
)
