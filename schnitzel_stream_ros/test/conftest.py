"""Shared fixtures. Every DDS test gets its own leased ROS_DOMAIN_ID and localhost-only discovery."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

# Anything this test process itself does with rclpy stays on this machine too.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'


@pytest.fixture
def ros_domain():
    """A ROS_DOMAIN_ID no other test or process on this machine uses while the test runs."""
    with lease_domain() as lease:
        yield lease.domain_id


@pytest.fixture
def ros_env(ros_domain):
    """Environment for child processes: this test's domain, localhost-only discovery."""
    return localhost_env(ros_domain)


#: Plugins that exist only to exercise the runtime (allowlisted for child processes by plugin_env).
RUNTIME_PLUGINS_DIR = Path(__file__).resolve().parent / 'runtime_plugins'
RUNTIME_TEST_MODULES = ('runtime_test_plugins', 'health_test_plugins')


@pytest.fixture
def plugin_env(ros_env):
    """ros_env plus the runtime test plugins: on PYTHONPATH and on the plugin allowlist."""
    return {
        **ros_env,
        'PYTHONPATH': f'{RUNTIME_PLUGINS_DIR}{os.pathsep}{ros_env.get("PYTHONPATH", "")}',
        'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': ','.join(RUNTIME_TEST_MODULES),
    }
