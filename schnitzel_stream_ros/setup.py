"""ament_python package of schnitzel_stream_ros.

launch/ and config/ go to share/schnitzel_stream_ros so `ros2 launch` finds them; console
scripts go to lib/schnitzel_stream_ros (setup.cfg) so `ros2 run` and launch_ros find them.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'schnitzel_stream_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', sorted(glob('launch/*.py'))),
        (f'share/{PACKAGE}/config', sorted(glob('config/*.yaml'))),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest']},
    zip_safe=True,
    maintainer='schnitzel_stream maintainers',
    maintainer_email='maintainers@schnitzel-stream.org',
    description='StreamPacket graphs of composable plugin nodes on ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'schnitzel-stream = schnitzel_stream_ros.cli:main',
            'pingpong = schnitzel_stream_ros.demo.pingpong:main',
        ],
    },
)
