"""SlowScoringNode: upstream's benchmark processor — a seeded, per-group delay, then a risk score.

Per packet, as upstream: delay = delay_ms + group_delay_ms[group] + uniform(-jitter_ms, jitter_ms)
from `random.Random(seed)` (drawn only when jitter_ms > 0, one draw per packet in arrival order),
slept when positive; then payload.risk_score = round(signal x 0.75 + (seq mod 5) x 0.05, 6),
payload.policy_group = group, meta.processed_mono_ns. The group is payload.group_id, else
meta.group_id, else group_a. The packet keeps its id (upstream replaces payload and meta). The
sleep and the time stamp go through clock.py (the bench's virtual clock makes latencies exact).
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.nodes.experiments import clock
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

#: longest delay one packet may ask for (a hostile group_delay_ms must not stall the node for hours)
MAX_DELAY_MS = 10_000.0


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


class SlowScoringNode(Plugin):
    """Delay each event by its group's cost (seeded jitter) and attach a risk score."""

    INPUTS = (Port('in', frozenset({Kind.EVENT})),)
    OUTPUTS = (Port('out', frozenset({Kind.EVENT})),)
    PARAMS = (
        Param('delay_ms', float, 1.5, 'base processing time per packet', min=0.0, max=MAX_DELAY_MS),
        Param('jitter_ms', float, 0.0, 'uniform jitter +- this, drawn from the seed', min=0.0,
              max=MAX_DELAY_MS),
        Param('seed', int, 0, 'seed of the jitter draws'),
        Param('group_delay_ms', dict, {}, '{group: extra ms}'),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        bad = [k for k, v in (params['group_delay_ms'] or {}).items()
               if _number(v, -1.0) < 0 or _number(v, 0.0) > MAX_DELAY_MS]
        if bad:
            return [f"parameter 'group_delay_ms': {bad[0]!r} needs a number of ms in 0..{MAX_DELAY_MS:g}"]
        return []

    def setup(self) -> None:
        self.rng = random.Random(self.params['seed'])
        self.group_delay = {str(k): float(v) for k, v in (self.params['group_delay_ms'] or {}).items()}

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        if not isinstance(packet.payload, Mapping):
            raise TypeError(f'expected a mapping payload, got {type(packet.payload).__name__}')
        payload = dict(packet.payload)
        group = str(payload.get('group_id', packet.meta.get('group_id', 'group_a')))
        delay_ms = self.params['delay_ms'] + self.group_delay.get(group, 0.0)
        jitter = self.params['jitter_ms']
        if jitter > 0.0:
            delay_ms += self.rng.uniform(-jitter, jitter)
        if delay_ms > 0.0:
            clock.sleep(min(delay_ms, MAX_DELAY_MS) / 1000.0)
        seq = payload.get('seq', 0)
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
        payload['risk_score'] = round(_number(payload.get('signal'), 0.0) * 0.75 + (seq % 5) * 0.05, 6)
        payload['policy_group'] = group
        self.count('processed_total')
        return packet.derive(payload=payload).with_meta(processed_mono_ns=clock.now_ns())
