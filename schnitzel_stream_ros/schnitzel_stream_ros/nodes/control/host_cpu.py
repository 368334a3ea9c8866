"""HostCpuSource: how much of the machine's CPU other processes take, as `metrics` packets.

A controller that only sees its own lane (inbox depth, latency) learns about contention by
suffering it, and at a lowered rate it cannot tell "the machine is still busy" from "the machine is
free again" except by raising the rate and suffering again. The kernel's counters say it directly:
the host's busy time (/proc/stat, all CPUs) minus this process's own CPU time is what everything
else takes — a burner, a backup job, another container. A rule on `host.others_cores` can hold a
low-power mode exactly as long as something else is busy.

Every `every_sec`: one `metrics` packet (payload `{busy_cores, idle_cores, own_cores,
others_cores}`, in cores: 1.0 = one CPU fully), the same as gauges for /diagnostics. The first
sample only sets the baseline. /proc/stat is read bounded (its `cpu` lines only, each at most 4 KiB,
at most 4,096 CPUs); a line that does not parse is counted (`unparsed_total`) and the sample skipped.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from schnitzel_stream_ros.packet import Kind, MetaKey, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

MAX_LINE = 4096
MAX_CPUS = 4096


class CpuTimes:
    """Aggregate busy and total jiffies and the CPU count from the text of /proc/stat."""

    def __init__(self, busy: int, total: int, cpus: int) -> None:
        self.busy, self.total, self.cpus = busy, total, cpus


def read_cpu_times(path: Path) -> CpuTimes | None:
    """The `cpu` line (all CPUs) and the number of `cpuN` lines; None when the file does not parse."""
    aggregate: list[int] | None = None
    cpus = 0
    with path.open('r', encoding='ascii', errors='replace') as stream:
        for _ in range(MAX_CPUS + 1):
            line = stream.readline(MAX_LINE)
            if not line.startswith('cpu'):
                break
            name, *fields = line.split()
            if name == 'cpu':
                if len(fields) < 4 or not all(f.isdigit() for f in fields):
                    return None
                aggregate = [int(f) for f in fields]
            elif name[3:].isdigit():
                cpus += 1
    if aggregate is None or cpus == 0:
        return None
    idle = aggregate[3] + (aggregate[4] if len(aggregate) > 4 else 0)  # idle + iowait
    total = sum(aggregate[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return CpuTimes(total - idle, total, cpus)


class HostCpuSource(Plugin):
    """The host's CPU use and what other processes take of it (cores), for a controller's rules."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.METRICS}), PayloadProfile.JSON_PORTABLE,
                    description='{busy_cores, idle_cores, own_cores, others_cores}'),)
    PARAMS = (
        Param('every_sec', float, 1.0, 'one sample per this many seconds', min=0.2, max=60.0),
        Param('source_id', str, 'host', 'source_id of the packets: metrics read as <source_id>.<key>'),
        Param('stat_path', str, '/proc/stat', "the kernel's CPU counters (Linux)"),
    )

    def setup(self) -> None:
        self.path = Path(self.params['stat_path'])
        try:
            first = read_cpu_times(self.path)
        except OSError as exc:
            raise ValueError(f"node {self.node_id!r}: parameter 'stat_path': cannot read {self.path}: "
                             f'{exc.strerror or exc}') from None
        if first is None:
            raise ValueError(f"node {self.node_id!r}: parameter 'stat_path': {self.path} has no 'cpu' line "
                             'of /proc/stat form')

    def produce(self) -> Iterator[StreamPacket]:
        every = self.params['every_sec']
        source_id = self.params['source_id']
        before = None
        seq = 0
        while not self.wait_for_stop(0.0 if before is None else every):
            try:
                now = read_cpu_times(self.path)
            except OSError:
                now = None
            own = (time.monotonic(), time.process_time())
            if now is None:
                self.count('unparsed_total')
                continue
            if before is not None:
                values = self._sample(before, (now, own))
                if values is not None:
                    for key, value in values.items():
                        self.gauge(key, value)
                    meta = {MetaKey.IDEMPOTENCY_KEY: f'host_cpu:{source_id}:{seq}'}
                    seq += 1
                    yield StreamPacket.new(Kind.METRICS, source_id, values, meta)
            before = (now, own)

    @staticmethod
    def _sample(before: tuple[CpuTimes, tuple[float, float]],
                after: tuple[CpuTimes, tuple[float, float]]) -> dict[str, float] | None:
        (t0, (wall0, cpu0)), (t1, (wall1, cpu1)) = before, after
        total = t1.total - t0.total
        if total <= 0 or wall1 <= wall0:
            return None  # no tick passed (or the counters went back): no sample
        busy = max(0.0, min(1.0, (t1.busy - t0.busy) / total)) * t1.cpus
        own = max(0.0, (cpu1 - cpu0) / (wall1 - wall0))
        return {'busy_cores': round(busy, 3), 'idle_cores': round(t1.cpus - busy, 3),
                'own_cores': round(own, 3), 'others_cores': round(max(0.0, busy - own), 3)}
