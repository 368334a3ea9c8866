"""The /diagnostics rule book (observability/health.py) on snapshots made by the real metric objects.

No DDS: the snapshots come from NodeMetrics/EdgeMetrics through runtime_snapshot, exactly as
Container.snapshot() builds them; time is passed in, so holds and thresholds are exact.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schnitzel_stream_ros.observability.health import (
    ERROR,
    OK,
    WARN,
    HealthMonitor,
    HealthRules,
    InboxView,
    NodeView,
    decide,
    fmt,
)
from schnitzel_stream_ros.observability.metrics import (
    EdgeMetrics,
    LatencyHistogram,
    NodeMetrics,
    percentiles_ms,
)
from schnitzel_stream_ros.observability.snapshot import runtime_snapshot

C = '/site/vision'


class Site:
    """A source -> node chain of real metric objects, sampled like the container does."""

    def __init__(self, *, inbox_max: int = 64, overflow: str = 'drop_new', stall_sec: float = 5.0) -> None:
        self.src = NodeMetrics('src', is_source=True, is_sink=False)
        self.node = NodeMetrics('det', is_source=False, is_sink=False)
        self.edge = EdgeMetrics('/site/src/out', 'det', 'in')
        self.inbox_max, self.overflow, self.stall_sec = inbox_max, overflow, stall_sec
        self.depth = 0
        self.inbox_dropped = 0
        self.state = {'started': True, 'stopped': False, 'fatal': [], 'warnings': [], 'source_end': {}}
        self.transport = {'decode_failed_total': 0}
        self.started = True

    def flow(self, n: int, latency_ns: int = 1_000_000) -> None:
        self.src.produced += n
        self.edge.packets += n
        self.node.consumed += n
        self.node.produced += n
        for _ in range(n):
            self.edge.latency.record(latency_ns)

    def drop(self, n: int) -> None:
        self.edge.packets += n
        self.edge.dropped += n
        self.inbox_dropped += n

    def sample(self, monitor: HealthMonitor, now: float):
        snapshot = runtime_snapshot(
            'vision',
            [(self.src, 0), (self.node, self.inbox_dropped)],
            [(self.edge, self.depth, self.depth)],
            transport=self.transport,
            state=self.state,
        )
        views = {
            'src': NodeView('/site/src', 'pkg:Cam', started=self.started, stall_sec=self.stall_sec),
            'det': NodeView(
                '/site/det',
                'pkg:Det',
                inboxes=(InboxView('in', self.inbox_max, self.overflow, self.depth, self.inbox_dropped),),
            ),
        }
        health = monitor.update(now, snapshot, views)
        by_name = {s.name: s for s in health.statuses}
        return by_name[C], by_name[f'{C}: src'], by_name[f'{C}: det'], health.edges


@pytest.fixture
def monitor():
    return HealthMonitor(C, HealthRules(hold_sec=10.0, stall_sec=10.0, full_sec=5.0, backlog_age_sec=10.0))


def test_healthy_chain_is_ok_with_rates_depth_and_window_latency(monitor):
    site = Site()
    site.flow(10, latency_ns=50_000_000)  # 50 ms before the first sample
    container, src, det, edges = site.sample(monitor, 100.0)
    assert (container.level, src.level, det.level) == (OK, OK, OK)
    assert det.value('consumed_per_sec') == ''  # no window before the second sample
    site.flow(25, latency_ns=2_000_000)  # 2 ms in the next second
    site.depth = 3
    container, src, det, edges = site.sample(monitor, 101.0)
    assert (src.level, det.level) == (OK, OK)
    assert (src.name, src.hardware_id, src.message) == (f'{C}: src', '/site/src', 'producing 25.0/s')
    assert det.value('consumed_per_sec') == '25' and det.value('consumed') == '35'
    assert det.value('inbox_depth') == '3' and det.value('inbox_max') == '64'
    assert det.value('errors_total') == '0' and det.value('plugin') == 'pkg:Det'
    # latency of the last window only (2 ms, within the histogram's ~9 %), the total keeps the 50 ms
    assert float(det.value('latency_p99_ms')) == pytest.approx(2.0, rel=0.1)
    (edge,) = edges
    assert edge.name == f'{C}: /site/src/out -> det.in' and edge.level == OK
    assert float(edge.value('latency_p99_ms')) == pytest.approx(2.0, rel=0.1)
    assert float(edge.value('latency_p99_ms_total')) == pytest.approx(50.0, rel=0.1)
    assert edge.value('packets') == '35' and edge.value('packets_per_sec') == '25'
    assert edge.value('dropped_total') == '0'
    assert (edge.value('inbox_max'), edge.value('overflow')) == ('64', 'drop_new')
    assert container.message == 'running 2 nodes' and container.value('nodes') == '2'
    assert src.value('consumed') is None  # a source without inputs shows no input values


def test_plugin_raising_is_error_and_held_for_the_hold_time(monitor):
    site = Site()
    site.flow(5)
    site.sample(monitor, 0.0)
    site.node.errors += 3  # the runtime caught three exceptions of process()
    _, _, det, _ = site.sample(monitor, 1.0)
    assert det.level == ERROR and det.message == 'plugin raised 3 times in the last 10 s'
    assert det.value('errors_total') == '3'
    _, _, det, _ = site.sample(monitor, 10.9)  # no new error, still within the hold
    assert det.level == ERROR
    _, _, det, _ = site.sample(monitor, 11.1)
    assert (det.level, det.message) == (OK, 'OK')
    site.node.count('errors_total', 1)  # a plugin that counts its own errors: same rule
    _, _, det, _ = site.sample(monitor, 12.0)
    assert det.level == ERROR and det.value('errors_total') == '4'


def test_errors_before_the_first_sample_are_not_missed(monitor):
    site = Site()
    site.node.errors = 2
    _, _, det, _ = site.sample(monitor, 0.0)
    assert det.level == ERROR


def test_inbox_dropping_is_warn_on_node_and_edge(monitor):
    site = Site()
    site.sample(monitor, 0.0)
    site.drop(4)
    _, _, det, (edge,) = site.sample(monitor, 1.0)
    assert det.level == WARN and det.message == 'inbox dropped 4 packets in the last 10 s'
    assert edge.level == WARN and edge.value('dropped_recent') == '4' and edge.value('dropped_total') == '4'
    _, _, det, (edge,) = site.sample(monitor, 12.0)
    assert (det.level, edge.level) == (OK, OK)
    assert edge.value('dropped_recent') == '0' and edge.value('dropped_total') == '4'


def test_keep_freshest_inbox_sheds_without_warning(monitor):
    site = Site(inbox_max=1, overflow='drop_oldest')
    site.sample(monitor, 0.0)
    site.drop(7)
    _, _, det, (edge,) = site.sample(monitor, 1.0)
    assert det.level == OK and det.value('inbox_shed_total') == '7'
    assert edge.level == OK and edge.message.startswith('shedding (keep-freshest): 7 packets dropped')


def test_source_stall_warns_after_its_threshold_only(monitor):
    site = Site(stall_sec=5.0)
    site.flow(1)
    _, src, _, _ = site.sample(monitor, 0.0)
    assert src.level == OK
    _, src, _, _ = site.sample(monitor, 5.0)
    assert src.level == OK  # exactly at the threshold: not yet
    _, src, _, _ = site.sample(monitor, 5.5)
    assert src.level == WARN and src.message == 'stalled: no packet for 5.5 s (timeout 5 s)'
    assert src.value('last_packet_age_sec') == '5.5' and src.value('stall_timeout_sec') == '5'
    site.flow(1)
    _, src, _, _ = site.sample(monitor, 6.0)
    assert src.level == OK  # a packet came: recovered at once


def test_stall_rule_off_paused_or_ended(monitor):
    site = Site(stall_sec=0.0)  # no threshold: no rule
    site.sample(monitor, 0.0)
    assert site.sample(monitor, 100.0)[1].level == OK
    paused = Site(stall_sec=1.0)
    paused.started = False  # waiting for ~/_schnitzel/start
    other = HealthMonitor(C)
    paused.sample(other, 0.0)
    assert paused.sample(other, 50.0)[1].level == OK
    ended = Site(stall_sec=1.0)
    third = HealthMonitor(C)
    ended.sample(third, 0.0)
    ended.state['source_end'] = {'src': 'exhausted'}
    _, src, _, _ = ended.sample(third, 50.0)
    assert (src.level, src.message, src.value('source_end')) == (OK, 'source ended (exhausted)', 'exhausted')
    ended.state['source_end'] = {'src': 'failed'}
    assert ended.sample(third, 51.0)[1].level == ERROR


def test_camera_gauges_and_counters(monitor):
    site = Site()
    site.src.gauge('connected', 1)
    site.flow(1)
    assert site.sample(monitor, 0.0)[1].level == OK
    site.src.gauge('connected', 0)
    site.src.count('stalls_total')
    site.src.count('read_failures_total')
    _, src, _, _ = site.sample(monitor, 1.0)
    assert src.level == WARN
    assert src.message == (
        'read_failures_total +1 in the last 10 s; stalls_total +1 in the last 10 s; not connected'
    )
    assert src.value('connected') == '0' and src.value('stalls_total') == '1'
    site.src.count('gave_up_total')
    assert site.sample(monitor, 2.0)[1].level == ERROR


def test_breaker_open_is_error_and_backlog_warns_with_its_trend(monitor):
    site = Site()
    sink = site.node
    sink.gauge('breaker_state_code', 0)
    sink.gauge('queue_depth', 0)
    sink.gauge('oldest_age_sec', 0.0)
    assert site.sample(monitor, 0.0)[2].level == OK
    sink.gauge('breaker_state_code', 1)
    sink.gauge('queue_depth', 40)
    sink.gauge('oldest_age_sec', 4.0)
    _, _, det, _ = site.sample(monitor, 4.0)
    assert det.level == ERROR and det.message == 'backend unreachable: circuit open for 0 s'
    sink.gauge('breaker_state_code', 2)  # half-open: a probe is out, still no backend
    sink.gauge('queue_depth', 120)
    sink.gauge('oldest_age_sec', 14.0)
    _, _, det, _ = site.sample(monitor, 14.0)
    assert det.level == ERROR and det.message == 'backend unreachable: circuit half-open for 10 s'
    sink.gauge('breaker_state_code', 0)  # back: the backlog drains, still old
    sink.gauge('queue_depth', 30)
    sink.gauge('oldest_age_sec', 15.0)
    _, _, det, _ = site.sample(monitor, 15.0)
    assert det.level == WARN
    assert det.message == 'delivery backlog draining: 30 events, oldest 15 s (+30 in 15 s)'
    sink.gauge('queue_depth', 2)
    sink.gauge('oldest_age_sec', 0.1)
    assert site.sample(monitor, 16.0)[2].level == OK
    assert site.sample(monitor, 16.0)[2].value('queue_depth') == '2'


def test_a_sink_holding_packets_for_room_is_error_with_the_reason_and_clears_when_it_resumes(monitor):
    site = Site()
    sink = site.node
    sink.gauge('storage_blocked_code', 0)
    assert site.sample(monitor, 0.0)[2].level == OK
    sink.gauge('storage_blocked_code', 3)
    sink.gauge('storage_held_packets', 64)
    _, _, det, _ = site.sample(monitor, 1.0)
    assert det.level == ERROR
    assert det.message == (
        'queue cannot take events: a full disk; holding 64 packets, '
        'the inbox and the producers upstream are held back'
    )
    sink.gauge('storage_blocked_code', 2)
    assert 'the free-space reserve of its filesystem' in site.sample(monitor, 2.0)[2].message
    sink.gauge('storage_blocked_code', 0)  # room again: resumed by itself
    sink.count('storage_blocked_total')  # an episode: counted for the report, no failure counter
    assert site.sample(monitor, 3.0)[2].level == OK


def test_backlog_growing_without_breaker(monitor):
    site = Site()
    for t, depth in ((0.0, 5), (10.0, 50), (20.0, 90)):
        site.node.gauge('queue_depth', depth)
        site.node.gauge('oldest_age_sec', t + 1)
        _, _, det, _ = site.sample(monitor, t)
    assert det.level == WARN
    assert det.message == 'delivery backlog growing: 90 events, oldest 21 s (+85 in 20 s)'


def test_inbox_full_for_a_while_warns(monitor):
    site = Site(inbox_max=4, overflow='block')
    site.depth = 4
    assert site.sample(monitor, 0.0)[2].level == OK
    assert site.sample(monitor, 4.0)[2].level == OK
    _, _, det, _ = site.sample(monitor, 5.0)
    assert det.level == WARN and det.message == "inbox 'in' full (4/4, block) for 5 s"
    site.depth = 1
    assert site.sample(monitor, 6.0)[2].level == OK


def test_container_fatal_and_transport_failures(monitor):
    site = Site()
    container = site.sample(monitor, 0.0)[0]
    assert (container.level, container.name, container.hardware_id) == (OK, C, C)
    site.transport['decode_failed_total'] = 2
    container = site.sample(monitor, 1.0)[0]
    assert container.level == WARN and container.message == '2 packets failed to encode/decode'
    site.state['fatal'] = ["inbox 'det.in' is full (4 packets) and its overflow policy is 'error'"]
    container = site.sample(monitor, 2.0)[0]
    assert container.level == ERROR and container.message.startswith("fatal: inbox 'det.in'")
    site.state = {**site.state, 'started': False, 'fatal': []}
    assert site.sample(monitor, 20.0)[0].message == 'waiting for start'


def test_unloaded_nodes_and_edges_are_forgotten(monitor):
    site = Site()
    site.sample(monitor, 0.0)
    assert set(monitor._nodes) == {'src', 'det'} and len(monitor._edges) == 1
    health = monitor.update(1.0, runtime_snapshot('vision', [], []), {})
    assert [s.name for s in health.statuses] == [C] and health.edges == []
    assert monitor._nodes == {} and monitor._edges == {}


def test_container_reports_process_cpu_over_the_last_period(monitor):
    snapshot = runtime_snapshot('vision', [], [])

    def cpu(now: float, cpu_sec: float | None) -> str:
        values = dict(monitor.update(now, snapshot, {}, cpu_sec).statuses[0].values)
        return values['cpu_percent']

    assert cpu(0.0, 10.0) == ''  # no period yet
    assert cpu(2.0, 11.0) == '50'  # 1 s of CPU in 2 s: half a core
    assert cpu(3.0, 12.5) == '150'  # two threads busy: more than one core
    assert cpu(4.0, None) == ''  # not measured


def test_decide_and_fmt():
    assert decide([]) == (OK, 'OK')
    assert decide([(WARN, 'a'), (ERROR, 'b'), (ERROR, 'c')]) == (ERROR, 'b; c')
    assert decide([(WARN, str(i)) for i in range(5)]) == (WARN, '0; 1; 2 (+2 more)')
    assert [fmt(v) for v in (3, 3.0, 0.12345, None, True, 'x')] == ['3', '3', '0.123', '', 'true', 'x']


def test_stall_threshold_order():
    from schnitzel_stream_ros.nodes.core.synthetic_source import SyntheticSource
    from schnitzel_stream_ros.nodes.delivery.sqlite_queue_source import SqliteQueueSource
    from schnitzel_stream_ros.nodes.vision.rtsp import OpenCvRtspSource
    from schnitzel_stream_ros.observability.health import stall_threshold

    assert stall_threshold(OpenCvRtspSource, {'timeout_sec': 4.0}, 10.0) == 4.0  # its own watchdog
    assert stall_threshold(SqliteQueueSource, {'follow': True}, 10.0) == 0.0  # waits for rows
    assert stall_threshold(SyntheticSource, {'rate_hz': 25.0}, 10.0) == 10.0
    assert stall_threshold(SyntheticSource, {'rate_hz': 0.05}, 10.0) == 60.0  # three periods
    assert stall_threshold(SyntheticSource, {'rate_hz': 0.05}, 0.0) == 0.0  # rule off


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=512, max_size=512), st.integers(1, 2**40))
def test_one_pass_percentiles_match_the_histogram(counts, max_ns):
    hist = LatencyHistogram()
    hist.merge(counts, max_ns)
    assert percentiles_ms(counts, max_ns, (0.5, 0.99)) == (hist.percentile_ms(0.5), hist.percentile_ms(0.99))
    assert percentiles_ms([0] * 512, max_ns, (0.5, 0.99)) == (None, None)


def test_odd_plugin_gauges_do_not_break_a_sample(monitor):
    site = Site()
    site.node.counters.update(
        {'queue_depth': 'many', 'oldest_age_sec': float('nan'), 'breaker_state_code': [1], 'connected': None,
         'gave_up_total': 'x', 'stalls_total': 'y'}
    )
    site.sample(monitor, 0.0)
    _, _, det, _ = site.sample(monitor, 1.0)
    assert det.level == OK and det.value('queue_depth') == 'many' and det.value('oldest_age_sec') == 'nan'


def test_restart_policy_restarts_warn_and_isolation_is_an_error_while_it_lasts(monitor):
    site = Site()
    site.flow(5)
    site.sample(monitor, 0.0)
    site.node.count('restarts_total', 2)  # runtime/node_restart.py: fresh instances after failures
    _, _, det, _ = site.sample(monitor, 1.0)
    assert det.level == WARN and det.message == 'restarts_total +2 in the last 10 s'
    site.node.gauge('isolated', 1)  # ... until its max_restarts: isolated
    _, _, det, _ = site.sample(monitor, 30.0)
    isolated = 'isolated by its restart policy: its plugin is no longer called'
    assert (det.level, det.message) == (ERROR, isolated)
    assert det.value('isolated') == '1'
    site.node.gauge('isolated', 0)  # a hot-replace brought a new instance
    _, _, det, _ = site.sample(monitor, 31.0)
    assert det.level == OK


def test_the_progress_line_names_a_sink_that_holds_packets_for_room():
    import io

    from schnitzel_stream_ros.observability.progress import ProgressLine

    out = io.StringIO()
    line = ProgressLine(out, interval_sec=0.0)
    holding = {'consumed': 10, 'counters': {'storage_blocked_code': 3, 'storage_held_packets': 64}}
    line.update([{'nodes': {'q': holding}}], force=True)
    assert out.getvalue().rstrip().endswith('| HOLDING (no room): q disk full, 64 packets held')
    line.update([{'nodes': {'q': {'consumed': 12, 'counters': {'storage_blocked_code': 0}}}}], force=True)
    assert 'HOLDING' not in out.getvalue().splitlines()[-1]
