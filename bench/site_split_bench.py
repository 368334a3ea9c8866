"""What splitting cameras from detectors costs on the site: config/site.yaml as it ships (three
containers: camera -> vision over the shared-memory frame lane -> events over DDS) against the same
graph with the cameras inside the detectors' container (two containers: frames handed over in
process, the layout before issue 23). Same run, layouts interleaved (the order flips every round),
medians of the rounds, each named in the JSON.

Each run is `schnitzel-stream run` of the live site with its outside world made local as the site demo
makes it (bench/state_bench.py's site lane: the pedestrian clip at 10 fps on cam0, the same clip over
RTSP on cam1, the person detector, trackers, events, the durable forwarder to the reference backend).
Figures from the steady part (from the first second both detectors work): frames/s of cameras and
detectors, events/s, CPU of the run's process tree as % of a core and per detector frame, the
containers' resident memory at the end, and the camera -> detector edge's latency (the runtime's
edge histogram: send -> the detector's call; the lane's send stamp, or the in-process hand-off).
The split buys isolation (a crashing detector does not stop camera ingestion: docs/runtime.md,
"Live operation"); this bench is what it costs. The baseline is the two-container layout; plain rclpy is not a
meaningful baseline for a whole site.

    python bench/site_split_bench.py [--seconds 25] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from state_bench import CAMERAS, RTSP_CLIP, run_site  # a script's own folder is on sys.path

from schnitzel_stream_ros.demo.site_demo import local_site
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason
from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

LAYOUTS = ('three_containers', 'two_containers')
EDGES = ('cam0.out->det0.in', 'cam1.out->det1.in')
LATENCIES = tuple(f'{edge}.latency_{q}_ms' for edge in EDGES for q in ('p50', 'p99'))
FIGURES = ('detector_frames_per_sec', 'events_per_sec', 'cpu_percent_of_a_core', 'cpu_ms_per_detector_frame',
           'rss_mb_containers')


def cameras_with_detectors(graph: dict[str, Any]) -> None:
    """The two-container layout: the camera container's nodes move into the detectors' container."""
    for node in graph['nodes']:
        if node.get('container') == 'camera':
            node['container'] = 'vision'


def _edge_latency(folder: Path) -> dict[str, float | None]:
    metrics = json.loads((folder / 'report.json').read_text()).get('metrics', {})
    return {key: metrics.get(f'edge.{key}') for key in LATENCIES}


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if isinstance(v, int | float)]
    return round(statistics.median(values), 3) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seconds', type=float, default=25.0,
                        help='each run (start-up excluded from the figures)')
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args()
    video, clip = asset(PEDESTRIAN_CLIP), asset(RTSP_CLIP)
    if video is None or clip is None:
        missing = PEDESTRIAN_CLIP if video is None else RTSP_CLIP
        print(json.dumps({'bench': 'site_split', 'status': 'skipped', 'reason': missing_reason(missing)}))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {layout: [] for layout in LAYOUTS}
    loadavg: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, lease_domain() as lease:
        out = Path(tmp)
        env = localhost_env(lease.domain_id)
        with local_site(out, env, video, clip):  # one outside world for every run
            for r in range(args.rounds):
                loadavg.append(Path('/proc/loadavg').read_text().strip())
                for layout in (LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]):
                    folder = out / f'{layout}{r}'
                    edit = cameras_with_detectors if layout == 'two_containers' else None
                    figures = run_site(folder, env, args.seconds, None, 0.0, edit)
                    runs[layout].append(figures | _edge_latency(folder))
            loadavg.append(Path('/proc/loadavg').read_text().strip())
    summary = {
        layout: {
            'camera_frames_per_sec': {c: _median([r['camera_frames_per_sec'][c] for r in rows])
                                      for c in CAMERAS},
            **{key: _median([r.get(key) for r in rows]) for key in FIGURES + LATENCIES},
        }
        for layout, rows in runs.items()
    }
    three, two = summary['three_containers'], summary['two_containers']
    print(json.dumps({
        'bench': 'site_split',
        'machine': {'cpus': os.cpu_count(), 'python': platform.python_version()},
        'lane': 'config/site.yaml live through `schnitzel-stream run`, cameras at their real rate (10 fps '
                'file, RTSP), the site demo\'s local outside world',
        'baseline': 'the same graph with the cameras in the detectors\' container (two containers, frames '
                    'handed over in process), interleaved in the same run',
        'seconds_per_run': args.seconds, 'rounds': args.rounds, 'loadavg': loadavg,
        'medians': summary,
        'three_over_two': {key: (round(three[key] / two[key], 3) if three[key] and two[key] else None)
                           for key in FIGURES},
        'runs': runs,
        'wall_seconds': round(time.monotonic() - started, 1),
    }, indent=1))
    return 0

if __name__ == '__main__':
    raise SystemExit(main())
