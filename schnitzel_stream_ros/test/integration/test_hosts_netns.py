"""One graph over two hosts (network namespaces joined by a veth link), survived a 30 s partition.

Host `cameras` (namespace A) runs camera, detector, event builder and the durable edge's sender;
host `events` (namespace B) runs the durable edge's receiver (its queue delivers to the reference
backend, started in B on B's loopback) and the preview frames' receiver: config/examples/site_two_hosts.yaml,
split by `host:` with `schnitzel-stream run --host`. DDS discovers only over the veth link
(testing/netns.py). Mid-run, A's link goes down for 30 s (`ip link set veth0 down`). Then:
- every event A accepted reaches the backend (0 lost; duplicates are deduplicated by key);
- the first delivery after the link returns comes within 5 s (an upper bound with margin: the
  design needs about one resend period plus rediscovery, ~1-3 s);
- the preview frames the partition cost are counted in A's report (dropped on the spot or lost on
  the link), and nothing was queued for them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason
from schnitzel_stream_ros.testing.netns import netns_fixture

GRAPH = Path(__file__).resolve().parents[2] / 'config' / 'examples' / 'site_two_hosts.yaml'
PARTITION_SEC = 30.0
FIRST_DELIVERY_BOUND_SEC = 5.0
CAMERA_FRAMES = 1100  # ~110 s of the 10 fps clip on host A (--max-events), then its backlog drains

host_lab = netns_fixture(('cameras', 'events'))

#: Runs in B: the backend's /stats, one JSON line per change of `unique` (same clock as the test).
POLLER = """
import json, sys, time, urllib.request
last = -1
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            unique = json.load(r)['unique']
    except Exception:
        unique = None
    if unique is not None and unique != last:
        last = unique
        print(json.dumps({'t': time.time(), 'unique': unique}), flush=True)
    time.sleep(0.1)
"""


class Deliveries:
    """The backend's unique count over time, read from the poller's lines."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.points: list[tuple[float, int]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            point = json.loads(line)
            with self.changed:
                self.points.append((point['t'], point['unique']))
                self.changed.notify_all()

    def unique(self) -> int:
        with self.changed:
            return self.points[-1][1] if self.points else 0

    def wait(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def first_after(self, t: float, above: int) -> float | None:
        with self.changed:
            return next((pt for pt, n in self.points if pt > t and n > above), None)


@pytest.mark.skipif(asset(PEDESTRIAN_CLIP) is None, reason=missing_reason(PEDESTRIAN_CLIP))
def test_two_hosts_survive_a_partition_without_losing_an_event(host_lab, tmp_path):
    port = 18080
    env_common = {
        'SITE_VIDEO': str(asset(PEDESTRIAN_CLIP)),
        'SITE_OUT': str(tmp_path / 'a'),
        'SITE_OUT_EVENTS': str(tmp_path / 'b'),
        'SITE_BACKEND_URL': f'http://127.0.0.1:{port}/events',
    }
    env_a = {**host_lab.env('cameras'), **env_common}
    env_b = {**host_lab.env('events'), **env_common}
    ss = [sys.executable, '-m', 'schnitzel_stream_ros']
    host_lab.run(
        'events',
        [*ss, 'backend', '--host', '127.0.0.1', '--port', str(port), '--db', str(tmp_path / 'backend.db')],
        env=env_b,
    )
    poller = host_lab.run(
        'events',
        [sys.executable, '-c', POLLER, f'http://127.0.0.1:{port}/stats'],
        env=env_b,
        stdout=-1,
        text=True,
    )
    deliveries = Deliveries(poller.stdout)
    report_a, report_b = tmp_path / 'a.json', tmp_path / 'b.json'
    run_b = host_lab.run(
        'events',
        [*ss, 'run', str(GRAPH), '--host', 'events', '--quiet', '--report-json', str(report_b)],
        env=env_b,
    )
    run_a = host_lab.run(
        'cameras',
        [
            *ss,
            'run',
            str(GRAPH),
            '--host',
            'cameras',
            '--quiet',
            '--max-events',
            str(CAMERA_FRAMES),
            '--drain-timeout',
            '120',
            '--report-json',
            str(report_a),
        ],
        env=env_a,
    )

    assert deliveries.wait(lambda d: d.unique() > 0, 180), 'no event reached the backend over the veth link'
    time.sleep(3.0)
    host_lab.link_down('cameras')
    time.sleep(PARTITION_SEC)
    before_up = deliveries.unique()
    link_up_at = time.time()
    host_lab.link_up('cameras')
    assert deliveries.wait(lambda d: d.unique() > before_up, 60), 'nothing delivered after the link returned'
    first_delivery = deliveries.first_after(link_up_at, before_up) - link_up_at
    print(f'first delivery {first_delivery:.2f} s after the link returned')

    assert run_a.wait(timeout=400) in (0, 3), 'host A lost data or failed (its report says why)'
    a = json.loads(report_a.read_text())
    accepted = a['metrics']['node.uplink.accepted_total']
    assert deliveries.wait(lambda d: d.unique() >= accepted, 60)
    time.sleep(1.0)
    assert deliveries.unique() == accepted, 'every accepted event reaches the backend exactly once by key'
    assert first_delivery <= FIRST_DELIVERY_BOUND_SEC

    print('host cameras, cross_host:', json.dumps(a['cross_host']))
    rows = {r['edge']: r for r in a['cross_host']['edges']}
    uplink, preview = rows['uplink.out->downlink.in'], rows['preview.out->preview_rx.in']
    assert uplink['direction'] == 'out' and uplink['peer_host'] == 'events' and uplink['lost'] == 0
    assert uplink['link']['acked_total'] == accepted  # nothing left unacknowledged on A
    assert uplink['link'].get('resent_total', 0) > 0  # the partition made the sender resend
    link = preview['link']
    assert link['partition_dropped_total'] > 0 and preview['lost'] >= link['partition_dropped_total']
    assert link.get('link_down_total', 0) >= 1

    run_b.terminate()
    run_b.wait(timeout=120)
    b = json.loads(report_b.read_text())
    rows_b = {r['edge']: r for r in b['cross_host']['edges']}
    assert rows_b['uplink.out->downlink.in']['direction'] == 'in'
    assert rows_b['uplink.out->downlink.in']['packets'] >= accepted
