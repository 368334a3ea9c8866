"""The graph's blackboard (`config.blackboard`, state/blackboard.py) and how nodes learn of it.

    config:
      blackboard: {path: out/site/blackboard.db, max_versions: 100000, persist: true}

Every node of a graph with a blackboard gets the reserved wiring parameters `blackboard.path`,
`blackboard.max_versions` and `blackboard.scope` (the graph namespace: keys of two graphs sharing
a file never meet). `persist: false` clears the file when the graph starts (runner, deterministic
engine); a container restarted by the supervisor finds the values of the running graph either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PARAM_PREFIX = 'blackboard.'
KEYS = ('path', 'max_versions', 'persist')


@dataclass(frozen=True)
class BlackboardSpec:
    path: str
    max_versions: int = 100_000
    persist: bool = True


def parse_blackboard(raw: Any) -> tuple[BlackboardSpec | None, list[tuple[str, str]]]:
    """`config.blackboard` -> (spec, [(key, problem), ...]); None when absent or broken."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, [('', f'blackboard must be a mapping with keys {list(KEYS)}, got {raw!r}')]
    problems = [(str(k), f'unknown blackboard key {k!r} (expected one of {list(KEYS)})')
                for k in raw if k not in KEYS]
    path = raw.get('path')
    if not isinstance(path, str) or not path.strip():
        problems.append(('path', f'blackboard needs a path: its SQLite file, got {path!r}'))
    versions = raw.get('max_versions', 100_000)
    if isinstance(versions, bool) or not isinstance(versions, int) or not 1 <= versions <= 100_000_000:
        problems.append(('max_versions', f'blackboard max_versions must be an integer in [1, 100000000], '
                         f'got {versions!r}'))
    persist = raw.get('persist', True)
    if not isinstance(persist, bool):
        problems.append(('persist', f'blackboard persist must be true or false, got {persist!r}'))
    if problems:
        return None, problems
    return BlackboardSpec(str(path).strip(), versions, persist), []


def blackboard_params(spec: BlackboardSpec | None, scope: str) -> dict[str, Any]:
    if spec is None:
        return {}
    return {f'{PARAM_PREFIX}path': spec.path, f'{PARAM_PREFIX}max_versions': spec.max_versions,
            f'{PARAM_PREFIX}scope': scope}


def blackboard_from_params(params: Mapping[str, Any]) -> tuple[BlackboardSpec, str] | None:
    """Inverse of blackboard_params (container side); ValueError names the bad parameter."""
    given = {k[len(PARAM_PREFIX):]: v for k, v in params.items() if k.startswith(PARAM_PREFIX)}
    if not given:
        return None
    scope = given.pop('scope', '/')
    if not isinstance(scope, str) or not scope.startswith('/'):
        raise ValueError(f'wiring parameter {PARAM_PREFIX}scope: expected a namespace, got {scope!r}')
    spec, problems = parse_blackboard(given)
    if problems:
        key, problem = problems[0]
        raise ValueError(f'wiring parameter {PARAM_PREFIX}{key or "path"}: {problem}')
    assert spec is not None
    return spec, scope
