"""Hosts to test on: network namespaces on this machine, joined by veth pairs (docs/hosts.md).

`HostLab(['a', 'b'])` makes one network namespace per host plus a hub namespace holding a bridge;
each host gets `veth0` (10.77.N.x/24 on one subnet) whose peer is a port of the hub's bridge. All
addresses and links live inside the namespaces: the machine's own interfaces, routes and addresses
are never touched, and DDS in a host sees only `lo` and `veth0`:

- `ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET` — inside the namespace the subnet *is* the veth link;
- a Fast DDS profile per host (`FASTRTPS_DEFAULT_PROFILES_FILE`, the name Jazzy's Fast DDS 2.14
  reads; `FASTDDS_DEFAULT_PROFILES_FILE` too, Fast DDS 3's name): UDPv4 only, whitelisted to the
  host's veth address (no shared-memory transport, which would cross namespaces through /dev/shm
  and make a partition invisible), short participant leases so a partition is noticed within
  seconds and a returning link is rediscovered within about a second.

`lab.run(host, cmd)` starts a process inside a host (`ip netns exec`); `lab.link_down(host)` /
`link_up(host)` cut and restore that host's link (`ip link set veth0 down|up`). `close()` stops
every process it started (process groups) and deletes every namespace, which removes the veths
and the bridge with them — also after a failed test (the pytest fixture `host_lab` does it in a
finally). Where namespaces cannot be made (no CAP_NET_ADMIN, no `ip`), `HostLab` raises
`NetnsUnavailable` and the fixture skips the test with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from schnitzel_stream_ros.testing.processes import stop

#: First two octets of the lab subnet; the third is picked per lab so concurrent labs differ.
SUBNET_PREFIX = '10.77'
VETH = 'veth0'
#: Seconds a silent participant stays known (Fast DDS lease) and between its announcements.
LEASE_SEC = 4
ANNOUNCE_SEC = 1

_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>veth_only</transport_id>
      <type>UDPv4</type>
      <interfaceWhiteList><address>{address}</address></interfaceWhiteList>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="veth_only_participant" is_default_profile="true">
    <rtps>
      <userTransports><transport_id>veth_only</transport_id></userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
      <builtin>
        <discovery_config>
          <leaseDuration><sec>{lease}</sec></leaseDuration>
          <leaseAnnouncement><sec>{announce}</sec></leaseAnnouncement>
          <initialAnnouncements><count>5</count><period><nanosec>200000000</nanosec></period></initialAnnouncements>
        </discovery_config>
      </builtin>
    </rtps>
  </participant>
</profiles>
"""


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (the message says why)."""


def _ip(*args: str) -> None:
    result = subprocess.run(['ip', *args], capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        raise NetnsUnavailable(f"'ip {' '.join(args)}' failed: {result.stderr.strip() or result.returncode}")


class HostLab:
    """Two or three hosts as network namespaces on one bridged veth subnet (see the module doc)."""

    def __init__(self, hosts: Sequence[str], domain_id: int, workdir: Path | None = None) -> None:
        if not 2 <= len(hosts) <= 3 or len(set(hosts)) != len(hosts):
            raise ValueError('a lab has two or three distinct hosts')
        if shutil.which('ip') is None:
            raise NetnsUnavailable("the 'ip' command (iproute2) is not installed")
        tag = str(os.getpid())
        self.domain_id = domain_id
        self.hosts = list(hosts)
        self.namespaces = {h: f'ssr{tag}-{h}' for h in hosts}
        self.hub = f'ssr{tag}-hub'
        subnet = f'{SUBNET_PREFIX}.{os.getpid() % 250 + 1}'
        self.addresses = {h: f'{subnet}.{i + 2}' for i, h in enumerate(hosts)}
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix='hostlab-'))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._processes: list[subprocess.Popen] = []
        self._made: list[str] = []
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        # names carry this process's pid: existing ones were left by a killed run (of a dead process)
        listing = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True, timeout=20)
        listed = listing.stdout.split()
        for stale in {self.hub, *self.namespaces.values()} & set(listed):
            subprocess.run(['ip', 'netns', 'del', stale], capture_output=True, timeout=20)
        _ip('netns', 'add', self.hub)
        self._made.append(self.hub)
        _ip('-n', self.hub, 'link', 'add', 'br0', 'type', 'bridge')
        _ip('-n', self.hub, 'link', 'set', 'br0', 'up')
        for index, host in enumerate(self.hosts):
            ns = self.namespaces[host]
            _ip('netns', 'add', ns)
            self._made.append(ns)
            hub_port = f'p{index}'
            _ip('-n', ns, 'link', 'add', VETH, 'type', 'veth', 'peer', 'name', hub_port, 'netns', self.hub)
            _ip('-n', self.hub, 'link', 'set', hub_port, 'master', 'br0')
            _ip('-n', self.hub, 'link', 'set', hub_port, 'up')
            _ip('-n', ns, 'link', 'set', 'lo', 'up')
            _ip('-n', ns, 'addr', 'add', f'{self.addresses[host]}/24', 'dev', VETH)
            _ip('-n', ns, 'link', 'set', VETH, 'up')
            _ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', VETH)  # DDS discovery multicast: the veth
            (self.workdir / f'fastdds_{host}.xml').write_text(
                _PROFILE.format(address=self.addresses[host], lease=LEASE_SEC, announce=ANNOUNCE_SEC),
                encoding='utf-8',
            )

    def env(self, host: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of a process in `host`: the lab's domain, discovery on the veth link only."""
        env = dict(os.environ if base is None else base)
        env.pop('ROS_STATIC_PEERS', None)
        env.pop('ROS_LOCALHOST_ONLY', None)
        env['ROS_DOMAIN_ID'] = str(self.domain_id)
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SUBNET'  # inside the namespace: the veth subnet
        profile = str(self.workdir / f'fastdds_{host}.xml')
        env['FASTRTPS_DEFAULT_PROFILES_FILE'] = profile  # what Fast DDS 2.x (Jazzy) reads
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = profile  # Fast DDS 3.x
        env['RMW_IMPLEMENTATION'] = 'rmw_fastrtps_cpp'
        return env

    def command(self, host: str, cmd: Sequence[str]) -> list[str]:
        return ['ip', 'netns', 'exec', self.namespaces[host], *cmd]

    def run(
        self, host: str, cmd: Sequence[str], env: dict[str, str] | None = None, **kwargs: object
    ) -> subprocess.Popen:
        """Start `cmd` inside `host` in its own process group (stopped by close())."""
        proc = subprocess.Popen(
            self.command(host, cmd),
            env=env if env is not None else self.env(host),
            start_new_session=True,
            **kwargs,
        )  # type: ignore[arg-type]
        self._processes.append(proc)
        return proc

    def check_output(self, host: str, cmd: Sequence[str], timeout: float = 60.0) -> str:
        return subprocess.run(
            self.command(host, cmd),
            env=self.env(host),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout

    def link_down(self, host: str) -> None:
        _ip('-n', self.namespaces[host], 'link', 'set', VETH, 'down')

    def link_up(self, host: str) -> None:
        _ip('-n', self.namespaces[host], 'link', 'set', VETH, 'up')
        # the kernel drops routes of a downed link: the discovery route comes back with it
        with contextlib.suppress(NetnsUnavailable):
            _ip('-n', self.namespaces[host], 'route', 'replace', '224.0.0.0/4', 'dev', VETH)

    def close(self) -> None:
        """Stop every process started here, then delete every namespace (veths and bridge go with them)."""
        for proc in reversed(self._processes):
            with contextlib.suppress(Exception):
                stop(proc, timeout=10.0)
        self._processes.clear()
        for ns in reversed(self._made):
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True, timeout=20)
        self._made.clear()

    def __enter__(self) -> HostLab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextlib.contextmanager
def host_lab(hosts: Sequence[str], domain_id: int, workdir: Path | None = None) -> Iterator[HostLab]:
    lab = HostLab(hosts, domain_id, workdir)
    try:
        yield lab
    finally:
        lab.close()


def netns_fixture(hosts: Sequence[str] = ('a', 'b')):  # type: ignore[no-untyped-def]
    """A pytest fixture factory: `host_lab = netns_fixture(('a', 'b'))` in a test module gives each test
    a HostLab (skipped, with the reason, where namespaces cannot be made)."""
    import pytest

    @pytest.fixture
    def fixture(ros_domain, tmp_path):  # type: ignore[no-untyped-def]
        try:
            lab = HostLab(hosts, ros_domain, tmp_path / 'lab')
        except NetnsUnavailable as exc:
            pytest.skip(f'network namespaces cannot be made here: {exc}')
        try:
            yield lab
        finally:
            lab.close()

    return fixture
