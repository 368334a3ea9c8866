"""Where and how often stateful nodes checkpoint: the graph's `config.state` and a node's `state`.

    config:
      state: {path: out/site/state.db, checkpoint_sec: 5.0, max_bytes: 16777216, max_keys: 100000}
    nodes:
      - {id: dedup, plugin: DedupPolicyNode, state: {max_keys: 20000}}   # per-node bound (optional)

Without `config.state` nothing is checkpointed (state lives in memory; a hot-replace still hands it
over). With it, every node whose plugin declares STATE_VERSION >= 1 (plugin.py) gets the reserved
wiring parameters `state.path`, `state.checkpoint_sec`, `state.max_bytes`, `state.max_keys`: one
SQLite file for the graph (all its containers write to it, one row per node), a checkpoint at most
every `checkpoint_sec` while packets flow plus one at every clean stop and whenever the plugin asks
(write-ahead, Plugin.checkpoint), a checkpoint over `max_bytes` refused (counted, the previous one
kept), keyed state bounded to `max_keys` entries by the plugin (evictions counted). A relative path
is relative to the working directory of the run, like every other file a graph names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

PARAM_PREFIX = 'state.'
GRAPH_KEYS = ('path', 'checkpoint_sec', 'max_bytes', 'max_keys')
NODE_KEYS = ('checkpoint_sec', 'max_bytes', 'max_keys')
DEFAULT_CHECKPOINT_SEC = 5.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_KEYS = 100_000
_BOUNDS = {
    'checkpoint_sec': (0.05, 3600.0),
    'max_bytes': (1024, 1024 * 1024 * 1024),
    'max_keys': (1, 100_000_000),
}


@dataclass(frozen=True)
class StateSpec:
    """Checkpoint settings of one node (or the graph's defaults)."""

    path: str
    checkpoint_sec: float = DEFAULT_CHECKPOINT_SEC
    max_bytes: int = DEFAULT_MAX_BYTES
    max_keys: int = DEFAULT_MAX_KEYS


def _check_value(key: str, value: Any) -> str | None:
    low, high = _BOUNDS[key]
    integer = key != 'checkpoint_sec'
    number = isinstance(value, int if integer else int | float) and not isinstance(value, bool)
    if not number or not low <= value <= high:
        kind, bounds = ('an integer', f'[{low}, {high}]') if integer else ('a number', f'[{low:g}, {high:g}]')
        return f'state {key} must be {kind} in {bounds}, got {value!r}'
    return None


def parse_overrides(raw: Any, allowed: tuple[str, ...]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A `state` mapping -> (checked values, [(key, problem), ...])."""
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [('', f'state must be a mapping with keys {list(allowed)}, got {raw!r}')]
    problems = [(str(k), f'unknown state key {k!r} (expected one of {list(allowed)})')
                for k in raw if k not in allowed]
    values: dict[str, Any] = {}
    for key in allowed:
        if key not in raw:
            continue
        value = raw[key]
        if key == 'path':
            if not isinstance(value, str) or not value.strip():
                problems.append(('path', f'state path must be a non-empty file name, got {value!r}'))
            else:
                values['path'] = value.strip()
            continue
        problem = _check_value(key, value)
        if problem:
            problems.append((key, problem))
        else:
            values[key] = float(value) if key == 'checkpoint_sec' else value
    return values, problems


def parse_graph_state(raw: Any) -> tuple[StateSpec | None, list[tuple[str, str]]]:
    """The graph's `config.state` -> (spec, problems); None when absent or broken."""
    if raw is None:
        return None, []
    values, problems = parse_overrides(raw, GRAPH_KEYS)
    if 'path' not in values and not any(key == 'path' for key, _ in problems):
        problems.append(('', 'state needs a path: the SQLite file of the checkpoints'))
    if problems:
        return None, problems
    return StateSpec(**values), []


def node_state(graph_spec: StateSpec | None, overrides: Mapping[str, Any] | None) -> StateSpec | None:
    """The settings of one node: the graph's, with the node's own `state` keys over them."""
    if graph_spec is None:
        return None
    return replace(graph_spec, **dict(overrides or {}))


def state_params(spec: StateSpec | None) -> dict[str, Any]:
    """The reserved wiring parameters of a stateful node (none without configured state)."""
    if spec is None:
        return {}
    return {f'{PARAM_PREFIX}{key}': getattr(spec, key) for key in GRAPH_KEYS}


def state_from_params(params: Mapping[str, Any]) -> StateSpec | None:
    """Inverse of state_params (container side); ValueError names the bad parameter."""
    given = {k[len(PARAM_PREFIX):]: v for k, v in params.items() if k.startswith(PARAM_PREFIX)}
    if not given:
        return None
    if isinstance(given.get('checkpoint_sec'), int) and not isinstance(given['checkpoint_sec'], bool):
        given['checkpoint_sec'] = float(given['checkpoint_sec'])  # `-p state.checkpoint_sec:=2`
    spec, problems = parse_graph_state(given)
    if problems:
        key, problem = problems[0]
        raise ValueError(f'wiring parameter {PARAM_PREFIX}{key or "path"}: {problem}')
    return spec
