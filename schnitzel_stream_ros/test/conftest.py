"""Shared fixtures. Every DDS test gets its own leased ROS_DOMAIN_ID and localhost-only discovery."""
from __future__ import annotations

import os

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
