"""SyntheticRiskEventSource: upstream's benchmark source — a seeded plan of group-tagged risk events.

Same keys and packets as upstream's (event_plan.py draws the plan): payload {event_id
"<source_id>:<seq:08d>", seq, group_id, logical_ts_ms, signal = (seq % 10) / 10 x signal_scale},
meta {seq, group_id, recovery_marker, emitted_mono_ns, expected_total}. `emitted_mono_ns` is
CLOCK_MONOTONIC at emission, which every process of the machine shares, so a sink in another
container measures end-to-end latency against it. Before the recovery-marker event the source
sleeps `outage_sleep_ms` (an outage the graph must recover from), after each event
`emit_sleep_ms`; both waits end early when the node is asked to stop. Time comes from clock.py
(the machine's; the bench's virtual clock for exact comparisons).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from schnitzel_stream_ros.nodes.experiments import clock
from schnitzel_stream_ros.nodes.experiments.event_plan import (
    DEFAULT_GROUPS,
    MAX_PLANNED_EVENTS,
    event_plan,
    planned_count,
)
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


def plan_from_params(params: Mapping[str, Any], seed: int | None = None):
    """The plan these parameters (upstream's source config) describe; `seed` overrides theirs."""
    return event_plan(
        seed=params['seed'] if seed is None else seed,
        total_events=params['total_events'],
        event_interval_ms=params['event_interval_ms'],
        burst_every=params['burst_every'],
        burst_size=params['burst_size'],
        recovery_marker_seq=params['recovery_marker_seq'],
        groups=[str(g) for g in params['groups'] or ()],
        group_probs=params['group_probs'] or {},
    )


class SyntheticRiskEventSource(Plugin):
    """Emit the seeded event plan of a backpressure-fairness workload (upstream benchmark source)."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.EVENT}), description='one packet per planned event'),)
    STALL_TIMEOUT_SEC = 0.0  # finite and paced by its plan: silence during an outage is the workload
    PARAMS = (
        Param('source_id', str, 'synthetic_source', 'source_id and event_id prefix'),
        Param('seed', int, 0, 'seed of the group draws'),
        Param('total_events', int, 600, 'base events', min=0),
        Param('event_interval_ms', float, 10.0, 'logical time between base events', min=0.0),
        Param('burst_every', int, 0, 'every n-th base event comes burst_size times (0 = never)', min=0),
        Param('burst_size', int, 1, 'copies of a burst event', min=1),
        Param('recovery_marker_seq', int, -1, 'seq of the event after the outage (-1 = none)'),
        Param('groups', list, list(DEFAULT_GROUPS), 'group ids'),
        Param('group_probs', dict, {}, '{group: weight}, normalised (all 0 = uniform)'),
        Param('outage_sleep_ms', float, 0.0, 'pause before the recovery-marker event', min=0.0),
        Param('emit_sleep_ms', float, 0.0, 'pause after each event', min=0.0),
        Param('signal_scale', float, 1.0, 'scale of the synthetic signal', min=0.0),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        count = planned_count(params['total_events'], params['burst_every'], params['burst_size'])
        if count > MAX_PLANNED_EVENTS:
            return [f"parameter 'total_events': the plan would hold {count:,} events, over the limit of "
                    f'{MAX_PLANNED_EVENTS:,}']
        return []

    def setup(self) -> None:
        self.plan = plan_from_params(self.params)
        self.source_id = self.params['source_id'].strip() or 'synthetic_source'

    def produce(self) -> Iterator[StreamPacket]:
        stop = self.ctx.stop_event
        outage = self.params['outage_sleep_ms'] / 1000.0
        pause = self.params['emit_sleep_ms'] / 1000.0
        scale = self.params['signal_scale']
        for item in self.plan:
            if item.recovery_marker and outage > 0 and clock.wait(stop, outage):
                return
            payload = {
                'event_id': f'{self.source_id}:{item.seq:08d}', 'seq': item.seq, 'group_id': item.group_id,
                'logical_ts_ms': item.logical_ts_ms, 'signal': (item.seq % 10) / 10.0 * scale,
            }
            meta = {
                'seq': item.seq, 'group_id': item.group_id, 'recovery_marker': item.recovery_marker,
                'emitted_mono_ns': clock.now_ns(), 'expected_total': len(self.plan),
            }
            self.count('emitted_total')
            yield StreamPacket.new(Kind.EVENT, self.source_id, payload, meta)
            if pause > 0 and clock.wait(stop, pause):
                return
