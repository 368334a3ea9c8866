"""The hosts-to-test-on fixture (testing/netns.py): three namespaces reach each other over the veth
subnet and nothing else, a cut link cuts, and everything is gone afterwards — also when making the
lab fails half-way."""
from __future__ import annotations

import subprocess
import sys

import pytest

from schnitzel_stream_ros.testing import netns
from schnitzel_stream_ros.testing.netns import HostLab, NetnsUnavailable

#: Runs in a host: connect to HOST:PORT once, print ok or the error's name.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print('ok')
except OSError as exc:
    print(type(exc).__name__)
"""
LISTEN = """
import socket
server = socket.create_server(('0.0.0.0', 47001))
print('listening', flush=True)
while True:
    server.accept()[0].close()
"""


def _root_links() -> set[str]:
    out = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True, check=True).stdout
    return {line.split(':')[1].strip().split('@')[0] for line in out.splitlines()}


def _namespaces() -> str:
    return subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout


def _lab(ros_domain, tmp_path, hosts=('a', 'b', 'c')):  # type: ignore[no-untyped-def]
    try:
        return HostLab(hosts, ros_domain, tmp_path / 'lab')
    except NetnsUnavailable as exc:
        pytest.skip(f'network namespaces cannot be made here: {exc}')


def test_three_hosts_reach_each_other_over_the_veth_only_and_vanish_afterwards(ros_domain, tmp_path):
    links_before = _root_links()
    lab = _lab(ros_domain, tmp_path)
    try:
        assert _root_links() == links_before  # nothing added to the machine's own interfaces
        listener = lab.run('c', [sys.executable, '-u', '-c', LISTEN], stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == 'listening'
        reach = [sys.executable, '-c', CONNECT, lab.addresses['c'], '47001']
        assert lab.check_output('a', reach).strip() == 'ok'
        assert lab.check_output('b', reach).strip() == 'ok'
        # the machine's loopback is not the host's: c's listener is not on a's 127.0.0.1
        assert lab.check_output('a', [sys.executable, '-c', CONNECT, '127.0.0.1', '47001']).strip() != 'ok'
        lab.link_down('a')
        assert lab.check_output('a', reach).strip() != 'ok'
        assert lab.check_output('b', reach).strip() == 'ok'  # only a's link is cut
        lab.link_up('a')
        assert lab.check_output('a', reach, timeout=60).strip() == 'ok'
        env = lab.env('a')
        assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SUBNET' and env['ROS_DOMAIN_ID'] == str(ros_domain)
        profile = (tmp_path / 'lab' / 'fastdds_a.xml').read_text()
        assert f'<address>{lab.addresses["a"]}</address>' in profile
        assert '<useBuiltinTransports>false</useBuiltinTransports>' in profile  # no shared memory
    finally:
        lab.close()
    assert listener.poll() is not None
    listed = _namespaces()
    assert not any(ns in listed for ns in [*lab.namespaces.values(), lab.hub])
    assert _root_links() == links_before


def test_a_lab_that_fails_half_way_leaves_nothing(ros_domain, tmp_path, monkeypatch):
    real_ip, calls = netns._ip, []

    def failing_ip(*args: str) -> None:
        calls.append(args)
        if len(calls) == 9:  # after the hub and the first host exist
            raise NetnsUnavailable("'ip' failed on purpose")
        real_ip(*args)

    monkeypatch.setattr(netns, '_ip', failing_ip)
    with pytest.raises(NetnsUnavailable, match='on purpose'):
        HostLab(('a', 'b'), ros_domain, tmp_path / 'lab')
    made = [args[2] for args in calls if args[:2] == ('netns', 'add')]
    if not made:
        pytest.skip('network namespaces cannot be made here')
    listed = _namespaces()
    assert made and not any(ns in listed for ns in made)
