"""Foundation: our StreamPacket message crosses Fast DDS between separate processes, intact."""
from __future__ import annotations

import json
import subprocess

import pytest

from schnitzel_stream_ros.testing import processes

pytestmark = pytest.mark.integration

MODULE = ['-m', 'schnitzel_stream_ros.demo.pingpong']


def test_stream_packet_message_imports():
    from schnitzel_stream_msgs.msg import Event, StreamPacket

    msg = StreamPacket()
    assert msg.ENCODING_JSON == 'json'
    assert Event().SEVERITY_CRITICAL == 'CRITICAL'


def test_packets_cross_dds_between_processes_intact(ros_env):
    """source process -> relay process -> sink process; the sink checks every field of every packet."""
    count = 300
    args = ['--count', str(count), '--timeout', '40', '--prefix', '/foundation']
    sink_cmd = processes.python_cmd(*MODULE, 'sink', *args)
    sink = processes.start(sink_cmd, ros_env, stdout=subprocess.PIPE, text=True)
    relay = processes.start(processes.python_cmd(*MODULE, 'relay', *args), ros_env)
    source = processes.start(processes.python_cmd(*MODULE, 'source', *args), ros_env)
    try:
        out, _ = sink.communicate(timeout=80)
    finally:
        for proc in (source, relay, sink):
            processes.stop(proc)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary['received'] == count, summary
    assert summary['intact'] == count, summary
    assert summary['ros_domain_id'] == ros_env['ROS_DOMAIN_ID']
    assert summary['discovery_range'] == 'LOCALHOST'  # as the child process saw it
    assert sink.returncode == 0
