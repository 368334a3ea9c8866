"""Which plugin modules may be imported: checked before any import.

A graph file names Python code to run. Importing a module runs it, so the check must happen on the
module *name*, before `importlib.import_module`. The default trusts only this package; operators
widen it with module prefixes (environment or API); opening it completely is a separate, loudly
named development switch, never a value of the list.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_PREFIXES: tuple[str, ...] = ('schnitzel_stream_ros',)
#: Comma-separated extra module prefixes, e.g. "acme_plugins,site_nodes.vision".
ENV_ALLOWLIST = 'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST'
#: Set to 1 to import any module (development only).
ENV_DEV_ALLOW_ALL = 'SCHNITZEL_STREAM_DEV_ALLOW_ALL_PLUGINS'


def _normalize(prefix: str) -> str:
    return prefix.strip().rstrip('.')


@dataclass(frozen=True)
class Allowlist:
    """Module prefixes whose modules may be imported as plugins.

    A prefix matches the module itself and its submodules: `acme` allows `acme` and `acme.nodes`,
    not `acme_evil`.
    """

    prefixes: tuple[str, ...] = DEFAULT_PREFIXES
    allow_all: bool = False

    def __post_init__(self) -> None:
        cleaned = tuple(dict.fromkeys(p for p in (_normalize(x) for x in self.prefixes) if p))
        if '*' in cleaned:
            raise ValueError(f"'*' is not an allowlist prefix: set {ENV_DEV_ALLOW_ALL}=1 to allow "
                             'every module')
        object.__setattr__(self, 'prefixes', cleaned)

    def allows(self, module: str) -> bool:
        if self.allow_all:
            return True
        return any(module == p or module.startswith(p + '.') for p in self.prefixes)

    def widened(self, prefixes: Iterable[str]) -> Allowlist:
        return Allowlist((*self.prefixes, *prefixes), self.allow_all)

    def describe(self) -> str:
        return 'every module (dev switch)' if self.allow_all else ', '.join(self.prefixes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> Allowlist:
        env = os.environ if env is None else env
        listed = [p for p in env.get(ENV_ALLOWLIST, '').split(',') if p.strip()]
        allow_all = env.get(ENV_DEV_ALLOW_ALL, '').strip().lower() in ('1', 'true', 'yes')
        return cls((*DEFAULT_PREFIXES, *listed, *extra), allow_all)
