"""HostCpuSource: /proc/stat text -> busy / idle / own / others cores, and its refusals.

The counters come from files this test writes in /proc/stat form (the real /proc/stat changes under
the test, so exact numbers need a file whose numbers the test chose); one test reads the real one
to show the source starts on this machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schnitzel_stream_ros.nodes.control.host_cpu import CpuTimes, HostCpuSource, read_cpu_times
from schnitzel_stream_ros.plugin import resolve_params
from schnitzel_stream_ros.runtime.plugin_host import PluginError, PluginHost


def _host(config: dict) -> PluginHost:
    return PluginHost('host', HostCpuSource, resolve_params(HostCpuSource, config), is_source=True,
                      is_sink=False)


def _stat(path: Path, user: int, system: int, idle: int, iowait: int = 0, cpus: int = 2) -> Path:
    lines = [f'cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0']
    lines += [f'cpu{i} 1 0 1 1 0 0 0 0 0 0' for i in range(cpus)]
    lines += ['intr 12345 0 0', 'ctxt 99', 'btime 1700000000']
    path.write_text('\n'.join(lines) + '\n')
    return path


def test_the_aggregate_line_and_the_cpu_count_are_read(tmp_path):
    times = read_cpu_times(_stat(tmp_path / 'stat', user=300, system=100, idle=500, iowait=100, cpus=4))
    assert (times.busy, times.total, times.cpus) == (400, 1000, 4)


@pytest.mark.parametrize('text', [
    '',
    'intr 1 2 3\n',
    'cpu  1 2 x 4\ncpu0 1 1 1 1\n',     # a field that is not a number
    'cpu  1 2\ncpu0 1 1 1 1\n',         # too few fields
    'cpu  1 2 3 4 5 6 7 8\n',           # no per-CPU line
    'cpu  ' + '9' * 5000 + '\n',        # a line beyond the read bound
])
def test_text_that_is_not_of_proc_stat_form_gives_none(tmp_path, text):
    path = tmp_path / 'stat'
    path.write_text(text)
    assert read_cpu_times(path) is None


def test_others_are_the_hosts_busy_cores_minus_this_process():
    before = (CpuTimes(busy=1000, total=4000, cpus=2), (10.0, 5.0))
    # 2 CPUs, 1000 jiffies pass, 750 of them busy: 1.5 cores busy; this process used 0.5 s in 1 s
    after = (CpuTimes(busy=1750, total=5000, cpus=2), (11.0, 5.5))
    assert HostCpuSource._sample(before, after) == {
        'busy_cores': 1.5, 'idle_cores': 0.5, 'own_cores': 0.5, 'others_cores': 1.0}
    # counters that did not move (or went back) give no sample rather than a division by zero
    assert HostCpuSource._sample(after, after) is None


def test_a_source_emits_metrics_packets_from_the_real_proc_stat():
    if not Path('/proc/stat').is_file():
        pytest.skip('no /proc/stat here (not Linux)')
    host = _host({'every_sec': 0.2})
    packets = []
    host.connect('out', packets.append)
    host.setup()
    while len(packets) < 2:
        assert host.pull()
    host.stop_event.set()
    assert not host.pull()  # stops when asked
    assert [p.kind for p in packets] == ['metrics', 'metrics']
    for p in packets:
        assert set(p.payload) == {'busy_cores', 'idle_cores', 'own_cores', 'others_cores'}
        assert p.source_id == 'host'
        assert p.payload['own_cores'] >= 0.0
        assert 0.0 <= p.payload['others_cores'] <= p.payload['busy_cores']


def test_a_path_that_is_not_proc_stat_is_a_one_line_error_naming_the_node(tmp_path):
    with pytest.raises(PluginError, match=r"node 'host': parameter 'stat_path': cannot read"):
        _host({'stat_path': str(tmp_path / 'none')}).setup()
    wrong = tmp_path / 'stat'
    wrong.write_text('hello\n')
    with pytest.raises(PluginError, match=r"node 'host': parameter 'stat_path': .* has no 'cpu' line"):
        _host({'stat_path': str(wrong)}).setup()
