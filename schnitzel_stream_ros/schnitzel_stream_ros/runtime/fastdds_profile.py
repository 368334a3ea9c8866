"""Fast DDS history pools that start small: about 1 MB less per ROS node, no feature lost.

Why: rmw_fastrtps gives every DataWriter and DataReader Fast DDS's default resource limits, which
preallocate 100 samples per endpoint. A plugin node is an rclpy LifecycleNode: 6 parameter services
and 5 lifecycle services (a reader and a writer each), the type description service, /rosout,
/parameter_events and its transition events, besides its own ports — ~30 endpoints, almost all idle
for the node's whole life, and their preallocated pools were the largest part of the 1.78 MB a node
cost (measured: 1.78 -> 0.82 MB per LifecycleNode with one preallocated sample; the idle vision
container of config/site.yaml -6 MB, the events container -10 MB; bench/README.md). rmw_fastrtps
creates the endpoints with PREALLOCATED_WITH_REALLOC memory, so a pool still grows to whatever is in
flight, within the same max_samples limits as before: only the memory nobody used is not taken.

How: before the process's first rclpy.init (`prepare()`), when the operator has chosen no Fast DDS
profile of their own — neither FASTRTPS_DEFAULT_PROFILES_FILE nor FASTDDS_DEFAULT_PROFILES_FILE set,
no DEFAULT_FASTRTPS_PROFILES.xml in the working directory, SKIP_DEFAULT_XML not set — and the RMW is
Fast DDS, FASTRTPS_DEFAULT_PROFILES_FILE is pointed at fastdds_small_pools.xml (next to this file).
Child processes inherit it. `SCHNITZEL_STREAM_DDS_SMALL_POOLS=0` turns it off. An operator's own
profile is used as it is (copy the two `allocated_samples` entries into it to keep the saving).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The profile this module points Fast DDS at (package data).
PROFILE = Path(__file__).with_name('fastdds_small_pools.xml')
#: Environment variable that switches this off ('0').
SWITCH = 'SCHNITZEL_STREAM_DDS_SMALL_POOLS'
#: Fast DDS 2.x reads the first; the second is Fast DDS 3's name (an operator may have set either).
PROFILE_VARIABLES = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')
#: Fast DDS also loads these from the working directory when no variable names a file.
WORKING_DIRECTORY_PROFILES = ('DEFAULT_FASTRTPS_PROFILES.xml', 'DEFAULT_FASTDDS_PROFILES.xml')
FAST_DDS_RMWS = ('', 'rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp')


def operator_choice(env: os._Environ[str] | dict[str, str], cwd: Path | None) -> str | None:
    """Why our profile is not used here (the operator's own choice), or None when it may be.
    `cwd` None: the working directory is gone, so Fast DDS finds no profile there either."""
    if env.get(SWITCH, '1').strip() == '0':
        return f'{SWITCH}=0'
    if env.get('RMW_IMPLEMENTATION', '') not in FAST_DDS_RMWS:
        return f"RMW_IMPLEMENTATION={env['RMW_IMPLEMENTATION']}"
    for name in PROFILE_VARIABLES:
        if env.get(name):
            return f'{name} is set'
    if env.get('SKIP_DEFAULT_XML'):
        return 'SKIP_DEFAULT_XML is set'
    for name in WORKING_DIRECTORY_PROFILES:
        if cwd is not None and (cwd / name).is_file():
            return f'{name} in the working directory'
    return None


def prepare(env: os._Environ[str] | dict[str, str] = os.environ, cwd: Path | None = None) -> Path | None:
    """Call before the process's first rclpy.init. Returns the profile now in use, None when left alone."""
    if cwd is None:
        try:
            cwd = Path.cwd()
        except OSError:  # the working directory was removed under the process
            cwd = None
    if operator_choice(env, cwd) is not None or not PROFILE.is_file():
        return None
    env[PROFILE_VARIABLES[0]] = str(PROFILE)
    return PROFILE
