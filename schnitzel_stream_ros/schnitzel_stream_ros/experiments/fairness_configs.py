"""Upstream's backpressure-fairness experiment files -> one graph file per run, composed as upstream does.

The files load unchanged (configs/experiments/backpressure_fairness/ of schnitzel-stream-platform,
branch exp/backpressure-paper-submission, Apache-2.0): a base file holding the graph
(`graph:`, `node_ids:`, `seed_base`, `repeats`, `latency_budget_ms`), policy files (`policy_id`,
`node_overrides`) and workload files (`workload_id`, `node_overrides`, `source_config`,
`burst_config`, `processor_config`, `sink_config`, `latency_budget_ms`). Composition, in upstream's
order: the workload's node_overrides, the policy's node_overrides, the workload's per-role configs
(each deep-merged into that node's `config`), then the seeds — source `seed`, processor `seed + 977`
— and the sink's `output_path`. Run seeds: seed_base + repeat x 1,000,000 + policy index x 10,000 +
workload index. The composed graph is written next to the run's results, so what ran can be read,
validated and run again on its own (`schnitzel-stream run`).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schnitzel_stream_ros.nodes.experiments.event_plan import event_plan

#: node roles of the benchmark graph and upstream's default ids for them
DEFAULT_NODE_IDS = {'source': 'src', 'burst': 'burst', 'processor': 'processor', 'sink': 'sink'}
PROCESSOR_SEED_OFFSET = 977
#: an experiment file is a small hand-written document
MAX_CONFIG_BYTES = 1024 * 1024


class ExperimentConfigError(ValueError):
    """An experiment file is unusable; the message names the file and the key."""


def load_config(path: Path) -> dict[str, Any]:
    """One experiment YAML file as a mapping (bounded, one-line errors naming the file)."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ExperimentConfigError(f'{path}: {size:,} bytes, over the limit of {MAX_CONFIG_BYTES:,}')
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except OSError as exc:
        raise ExperimentConfigError(f'{path}: {exc.strerror or exc}') from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        line = f':{mark.line + 1}' if mark is not None else ''
        raise ExperimentConfigError(f'{path}{line}: not valid YAML: {getattr(exc, "problem", exc)}') from None
    if not isinstance(data, dict):
        raise ExperimentConfigError(f'{path}: expected a mapping, got {type(data).__name__}')
    return data


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Experiment:
    """The base file, the policies and the workloads of one matrix, in run order."""

    base: dict[str, Any]
    policies: tuple[dict[str, Any], ...]
    workloads: tuple[dict[str, Any], ...]
    base_path: Path

    @classmethod
    def load(cls, base: Path, policies: list[Path], workloads: list[Path]) -> Experiment:
        base_cfg = load_config(base)
        if not isinstance(base_cfg.get('graph'), Mapping):
            raise ExperimentConfigError(f'{base}: needs a mapping `graph`')
        loaded = []
        for paths, key in ((policies, 'policy_id'), (workloads, 'workload_id')):
            docs = []
            for path in paths:
                doc = load_config(path)
                if not isinstance(doc.get(key), str) or not doc[key].strip():
                    raise ExperimentConfigError(f'{path}: needs a non-empty `{key}`')
                docs.append(doc)
            loaded.append(tuple(docs))
        return cls(base_cfg, loaded[0], loaded[1], base)

    @property
    def node_ids(self) -> dict[str, str]:
        return {**DEFAULT_NODE_IDS, **{k: str(v) for k, v in _mapping(self.base.get('node_ids')).items()}}

    def seed(self, seed_base: int, repeat: int, policy_index: int, workload_index: int) -> int:
        return seed_base + repeat * 1_000_000 + policy_index * 10_000 + workload_index


@dataclass(frozen=True)
class RunPlan:
    """One cell of the matrix, one repeat: the composed graph and what the metrics need."""

    run_id: str
    policy_id: str
    workload_id: str
    repeat: int
    seed: int
    graph: dict[str, Any]
    node_ids: dict[str, str]
    latency_budget_ms: float
    expected_total: int
    expected_by_group: dict[str, int]
    group_weights: dict[str, float]

    def node_config(self, role: str) -> dict[str, Any]:
        return _node(self.graph, self.node_ids[role])['config']

    def write_graph(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.graph, sort_keys=False), encoding='utf-8')
        return path


def _node(graph: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    for node in graph.get('nodes') or ():
        if isinstance(node, dict) and str(node.get('id', node.get('node_id', ''))).strip() == node_id:
            node['config'] = _mapping(node.get('config'))
            return node
    raise ExperimentConfigError(f'graph: no node {node_id!r}')


def _patch(graph: dict[str, Any], node_id: str, patch: Mapping[str, Any]) -> None:
    node = _node(graph, node_id)
    node['config'] = deep_merge(node['config'], patch)


def _int(value: Any, default: int, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = default
    return number if minimum is None else max(minimum, number)


def _float(value: Any, default: float, minimum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = default
    return number if minimum is None else max(minimum, number)


def expected_counts(
    source: Mapping[str, Any], burst: Mapping[str, Any], seed: int
) -> tuple[int, dict[str, int]]:
    """Packets the sink would see without any drop: planned events x burst copies, per group.

    The source config is read with upstream's lenient defaults (the run itself validates it)."""
    groups = source.get('groups')
    plan = event_plan(
        seed=seed,
        total_events=_int(source.get('total_events'), 600, 0),
        event_interval_ms=_float(source.get('event_interval_ms'), 10.0, 0.0),
        burst_every=_int(source.get('burst_every'), 0, 0),
        burst_size=_int(source.get('burst_size'), 1, 1),
        recovery_marker_seq=_int(source.get('recovery_marker_seq'), -1),
        groups=[str(g) for g in groups] if isinstance(groups, list) else [],
        group_probs=_mapping(source.get('group_probs')),
    )
    copies = _int(burst.get('count'), 1, 1)
    by_group: dict[str, int] = {}
    for item in plan:
        by_group[item.group_id] = by_group.get(item.group_id, 0) + copies
    return len(plan) * copies, by_group


def compose(experiment: Experiment, policy_index: int, workload_index: int, repeat: int, seed: int,
            events_path: Path) -> RunPlan:
    """The graph of one run, composed exactly in upstream's order (see the module docstring)."""
    policy = experiment.policies[policy_index]
    workload = experiment.workloads[workload_index]
    ids = experiment.node_ids
    graph = copy.deepcopy(dict(experiment.base['graph']))
    for doc in (workload, policy):
        for node_id, patch in _mapping(doc.get('node_overrides')).items():
            _patch(graph, str(node_id), _mapping(patch))
    for role in ('source', 'burst', 'processor', 'sink'):
        patch = _mapping(workload.get(f'{role}_config'))
        if patch:
            _patch(graph, ids[role], patch)
    _patch(graph, ids['source'], {'seed': seed})
    _patch(graph, ids['processor'], {'seed': seed + PROCESSOR_SEED_OFFSET})
    _patch(graph, ids['sink'], {'output_path': str(events_path)})
    policy_id, workload_id = policy['policy_id'], workload['workload_id']
    expected_total, by_group = expected_counts(_node(graph, ids['source'])['config'],
                                               _node(graph, ids['burst'])['config'], seed)
    sink_weights = _mapping(_node(graph, ids['sink'])['config'].get('group_weights'))
    weights = {str(k): float(v) for k, v in sink_weights.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    budget = workload.get('latency_budget_ms', experiment.base.get('latency_budget_ms', 100.0))
    return RunPlan(f'run_{policy_id}_{workload_id}_r{repeat:02d}_s{seed}', policy_id, workload_id, repeat,
                   seed, graph, ids, _float(budget, 100.0, 1.0), expected_total, by_group, weights)
