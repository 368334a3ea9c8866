"""A node's restart policy: what the runtime does when its plugin's process() raises.

    nodes:
      - {id: zones, plugin: ZonePolicyNode, restart: {policy: on-failure, max_restarts: 10, backoff_sec: 0.5}}

- no `restart` key (default): the error is logged and counted and the node goes on with the next
  packet, same instance (what a site did before restart policies existed);
- `on-failure`: the failed instance is closed and a fresh one set up after a backoff (`backoff_sec`,
  doubling while failures follow each other, capped at 32x), without touching the container or any
  other node; after `max_restarts` restarts (0 = no limit) the node is isolated;
- `never`: the node is isolated at its first error.

An isolated node stays loaded and wired (its edges keep their QoS, nothing upstream blocks), but its
plugin is no longer called: packets reaching it are counted (`isolated_dropped_total`) and dropped.
A source's produce() has its own restart rule (runtime/workers.py, SourceWorker), unchanged by this.

Graph -> load request: the reserved wiring parameters `restart.policy`, `restart.max_restarts`,
`restart.backoff_sec` (docs/wiring.md), only present when the graph sets a policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RestartPolicy(StrEnum):
    ON_FAILURE = 'on-failure'
    NEVER = 'never'


@dataclass(frozen=True)
class RestartSpec:
    policy: RestartPolicy
    max_restarts: int = 0  # 0: no limit
    backoff_sec: float = 1.0


RESTART_KEYS = ('policy', 'max_restarts', 'backoff_sec')
PARAM_PREFIX = 'restart.'
#: Longest backoff, as a multiple of backoff_sec.
BACKOFF_CAP_FACTOR = 32.0
MAX_BACKOFF_SEC = 3600.0


def parse_restart(raw: Any) -> tuple[RestartSpec | None, list[tuple[str, str]]]:
    """A node's `restart` mapping -> (spec, [(key, problem), ...]); None when absent or broken."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, [('', f'restart must be a mapping {{policy, max_restarts, backoff_sec}}, got {raw!r}')]
    problems = [(str(k), f'unknown restart key {k!r} (expected one of {list(RESTART_KEYS)})')
                for k in raw if k not in RESTART_KEYS]
    policy = raw.get('policy')
    if policy not in tuple(RestartPolicy):
        choices = [str(p) for p in RestartPolicy]
        problems.append(('policy', f'restart policy {policy!r} is not one of {choices}'))
    max_restarts = raw.get('max_restarts', 0)
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        problems.append(('max_restarts', f'max_restarts must be an integer >= 0, got {max_restarts!r}'))
    backoff = raw.get('backoff_sec', 1.0)
    number = isinstance(backoff, int | float) and not isinstance(backoff, bool)
    if not number or not 0 <= backoff <= MAX_BACKOFF_SEC:
        problems.append(
            ('backoff_sec', f'backoff_sec must be a number in [0, {MAX_BACKOFF_SEC:.0f}], got {backoff!r}')
        )
    if problems:
        return None, problems
    return RestartSpec(RestartPolicy(policy), max_restarts, float(backoff)), []


def restart_params(spec: RestartSpec | None) -> dict[str, Any]:
    """The reserved wiring parameters of a policy (none without one)."""
    if spec is None:
        return {}
    return {
        f'{PARAM_PREFIX}policy': str(spec.policy),
        f'{PARAM_PREFIX}max_restarts': spec.max_restarts,
        f'{PARAM_PREFIX}backoff_sec': spec.backoff_sec,
    }


def restart_from_params(params: Mapping[str, Any]) -> RestartSpec | None:
    """Inverse of restart_params (container side); ValueError names the bad parameter."""
    given = {k[len(PARAM_PREFIX):]: v for k, v in params.items() if k.startswith(PARAM_PREFIX)}
    if not given:
        return None
    spec, problems = parse_restart(given)
    if problems:
        key, problem = problems[0]
        raise ValueError(f'wiring parameter {PARAM_PREFIX}{key}: {problem}')
    return spec
