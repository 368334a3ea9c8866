"""The operator's rules of config/examples/site_autonomic.yaml, decision by decision.

The controller bench (bench/controller_bench.py) measures these rules on the real lanes under CPU
contention; here the same rules, read from the same graph file, get injected metrics at given
seconds (autonomic/policy.py is pure), so what they do is checked exactly and on any machine: other
processes taking a core put every camera in low power until they stop, and then back to the rate
before; far over the target every camera loses 4 frames/s at once, near it 2, a detector that sheds
frames slows only its own camera, nothing acts in the dead band, and the way back climbs to the
full 10 frames/s in steps of 2, one per cooldown.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from schnitzel_stream_ros.autonomic.policy import Policy
from schnitzel_stream_ros.autonomic.spec import parse_spec
from schnitzel_stream_ros.graph.validate import load_and_validate

EXAMPLE = Path(__file__).resolve().parents[2] / 'config' / 'examples' / 'site_autonomic.yaml'
CAMERAS = [f'cam{k}' for k in range(6)]


def _controller_config() -> dict:
    graph = yaml.safe_load(EXAMPLE.read_text())
    return next(n for n in graph['nodes'] if n['id'] == 'ctl')['config']


def _policy() -> Policy:
    c = _controller_config()
    policy = Policy(parse_spec(c['knobs'], c['rules'], c.get('modes', {}), c.get('rollback', {}),
                               c['stale_after_sec'], c['rate_window_sec']))
    for cam in CAMERAS:
        policy.known(f'{cam}_fps', 10.0)
    return policy


class Site:
    """Metrics as the controller gets them: the probe's p99 and each detector's shed counter (from
    /diagnostics), the CPU other processes take (HostCpuSource)."""

    def __init__(self) -> None:
        self.policy = _policy()
        self.shed = dict.fromkeys(CAMERAS, 0.0)
        self.last: list = []

    def at(self, t: float, p99: float, shed_per_sec: dict[str, float] | None = None,
           others: float = 0.1) -> list[tuple]:
        for cam, rate in (shed_per_sec or {}).items():
            self.shed[cam] += rate  # called once per second
        values = {'probe.age_p99_ms': p99, 'host.others_cores': others}
        values |= {f'det{cam[3:]}.inbox_shed_total': v for cam, v in self.shed.items()}
        self.policy.observe(values, t)
        self.last = self.policy.evaluate(t)
        return [(d.rule, d.action, d.knob, d.old, d.new, d.guardrail) for d in self.last if d.action == 'set']

    def rates(self) -> list[float | None]:
        return [self.policy.values[f'{cam}_fps'] for cam in CAMERAS]


def test_the_graph_file_is_valid_and_its_cameras_start_at_the_full_rate():
    result = load_and_validate(EXAMPLE)
    assert not result.errors, [str(e) for e in result.errors]
    graph = yaml.safe_load(EXAMPLE.read_text())
    cams = [n for n in graph['nodes'] if n['plugin'] == 'OpenCvVideoFileSource']
    assert [n['config']['fps'] for n in cams] == [10] * 6
    knobs = _controller_config()['knobs']
    assert {k: (v['node'], v['min'], v['max']) for k, v in knobs.items()} == {
        f'{cam}_fps': (cam, 2, 10) for cam in CAMERAS}


def test_far_over_the_target_every_camera_loses_four_frames_then_two_more_after_the_cooldown():
    site = Site()
    for t in range(4):
        site.at(t, 100.0)
    assert site.at(4.0, 400.0) == []  # for_sec 1: one sample is not yet a condition
    first = site.at(5.0, 400.0)
    assert first == [(f'over_{cam}', 'set', f'{cam}_fps', 10.0, 6.0, None) for cam in CAMERAS]
    assert site.at(6.0, 400.0) == []  # cooldown 4 s
    assert site.at(9.0, 400.0) == [(f'over_{cam}', 'set', f'{cam}_fps', 6.0, 2.0, None) for cam in CAMERAS]
    assert site.at(13.0, 400.0) == []  # at the lower bound: refused, not set
    assert site.rates() == [2.0] * 6


def test_near_the_target_two_frames_and_nothing_in_the_dead_band():
    site = Site()
    for t in range(10):
        site.at(t, 175.0)  # between 150 and 200: neither late nor restore
    assert site.rates() == [10.0] * 6
    site.at(10.0, 220.0)
    site.at(11.0, 220.0)
    assert site.at(12.0, 220.0) == [(f'late_{cam}', 'set', f'{cam}_fps', 10.0, 8.0, None) for cam in CAMERAS]


def test_a_detector_that_sheds_slows_only_its_own_camera():
    site = Site()
    decided = []
    for t in range(8):
        decided += site.at(float(t), 150.0, {'cam2': 3.0})
    assert decided == [('shed_cam2', 'set', 'cam2_fps', 10.0, 8.0, None)]
    assert site.rates() == [10.0, 10.0, 8.0, 10.0, 10.0, 10.0]


def test_the_way_back_climbs_to_the_full_rate_in_steps_of_two():
    site = Site()
    for t in range(8):
        site.at(float(t), 400.0)  # 10 -> 6 at t=1, -> 2 at t=5
    assert site.rates() == [2.0] * 6
    steps = []
    for t in range(8, 60):
        steps += [(t, new) for _, _, knob, _, new, _ in site.at(float(t), 80.0) if knob == 'cam0_fps']
    # below 120 ms for 8 s (from t=8) -> +2 at t=16, then one step per 4 s cooldown up to 10
    assert steps == [(16, 4.0), (20, 6.0), (24, 8.0), (28, 10.0)]
    assert site.rates() == [10.0] * 6


def test_other_processes_taking_a_core_hold_every_camera_low_until_they_stop():
    site = Site()
    site.at(0.0, 80.0)  # the first sample: no rate() yet (safe mode for this one evaluation)
    site.at(1.0, 80.0, others=1.1)
    site.at(2.0, 80.0, others=1.1)
    entered = site.at(3.0, 80.0, others=1.1)  # for_sec 2
    assert entered == [('contention', 'set', f'{cam}_fps', 10.0, 4.0, None) for cam in CAMERAS]
    assert site.policy.mode == 'low_power'
    for t in range(4, 30):  # latency low: restore would raise them, the mode holds them
        assert site.at(float(t), 80.0, others=0.9) == []
    assert {d.guardrail for d in site.last if d.action == 'reject'} <= {'mode'}
    assert site.at(30.0, 80.0, others=0.5) == []  # hysteresis: 0.5 is not yet below 0.4
    left = site.at(31.0, 80.0, others=0.2)
    assert left == [('rules', 'set', f'{cam}_fps', 4.0, 10.0, None) for cam in CAMERAS]  # the rules: normal
    assert site.policy.mode == 'normal'
