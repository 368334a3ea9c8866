"""OpenCvVideoFileSource `phase_ms`: a realtime clip standing in for one of several cameras starts its
pacing later, so the cameras do not all deliver at the same instant.

Only lower bounds on waits are asserted (a frame is never early); how late a loaded machine makes
it is not a property of the source.
"""

from __future__ import annotations

import time

import pytest

from schnitzel_stream_ros.nodes.vision.video_file import OpenCvVideoFileSource
from schnitzel_stream_ros.plugin import resolve_params
from schnitzel_stream_ros.runtime.plugin_host import PluginHost
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, asset, missing_reason


def _first_frames(config: dict, count: int) -> list[float]:
    path = asset(PEDESTRIAN_CLIP)
    if path is None:
        pytest.skip(missing_reason(PEDESTRIAN_CLIP))
    arrivals: list[float] = []
    host = PluginHost('cam', OpenCvVideoFileSource,
                      resolve_params(OpenCvVideoFileSource, {'path': str(path), **config}),
                      is_source=True, is_sink=False)
    host.connect('out', lambda packet: arrivals.append(time.monotonic()))
    host.setup()
    start = time.monotonic()
    try:
        while len(arrivals) < count:
            assert host.pull()
    finally:
        host.close()
    return [t - start for t in arrivals]


def test_a_phase_delays_the_paced_frames_by_that_much():
    arrivals = _first_frames({'realtime': True, 'phase_ms': 300.0}, 3)
    # the clip is 10 frames/s: frame i is due at 0.3 s + i * 0.1 s, never before
    for i, t in enumerate(arrivals):
        assert t >= 0.3 + 0.1 * i - 0.005


def test_without_realtime_the_phase_does_not_pace_anything():
    assert OpenCvVideoFileSource.param_schema()['phase_ms'].default == 0.0
    arrivals = _first_frames({'realtime': False, 'phase_ms': 10000.0}, 3)
    assert arrivals[-1] < 10.0  # read as fast as it can: not held for the 10 s phase
