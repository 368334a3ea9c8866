"""Plugin registry: graph `plugin:` references -> Plugin classes, safely.

A reference is one of
- a registered name (entry point in the `schnitzel_stream_ros.plugins` group, e.g. `StaticSource`),
- an upstream path (`schnitzel_stream.nodes.dev:StaticSource`, see aliases.py),
- a `module.path:ClassName`, imported only when the allowlist admits the module (checked on the
  name, before import) or when it is exactly the target of a registered entry point (installing a
  package that registers plugins is an explicit act of trust).

The registry also refuses classes that are not Plugins, plugins written for another major plugin
API version, and plugins whose declarations are inconsistent — all before a graph starts.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from schnitzel_stream_ros.graph.aliases import UPSTREAM_ALIASES, is_upstream_reference
from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.names import is_identifier
from schnitzel_stream_ros.graph.suggest import did_you_mean
from schnitzel_stream_ros.plugin import API_VERSION, Plugin, Role

ENTRY_POINT_GROUP = 'schnitzel_stream_ros.plugins'


class PluginError(ValueError):
    """A plugin reference cannot be used; the message says why (one line)."""

    code = 'plugin'


class PluginNotAllowed(PluginError):
    code = 'plugin-not-allowed'


class PluginNotAvailable(PluginError):
    code = 'plugin-not-available'


class PluginIncompatible(PluginError):
    code = 'plugin-api'


@dataclass(frozen=True)
class PluginInfo:
    """A resolved plugin: how it was named, its canonical `module:Class`, and the class."""

    ref: str
    canonical: str
    cls: type[Plugin]
    name: str | None = None  # registered (entry-point) name, when it has one

    @property
    def display_name(self) -> str:
        return self.name or self.canonical


def api_major(version: str) -> int | None:
    try:
        return int(str(version).split('.', 1)[0])
    except ValueError:
        return None


def declaration_problems(cls: type[Plugin]) -> list[str]:
    """Inconsistencies in a plugin's declarations (ports, params, role)."""
    problems: list[str] = []
    try:
        role = Role(cls.ROLE)
    except ValueError:
        return [f'ROLE {cls.ROLE!r} is not one of {[str(r) for r in Role]}']
    inputs = () if role is Role.SOURCE else cls.INPUTS
    seen: dict[str, str] = {}
    for direction, ports in (('input', inputs), ('output', cls.OUTPUTS)):
        for port in ports:
            if not is_identifier(port.name):
                problems.append(f'{direction} port name {port.name!r} is not an identifier')
            if port.name in seen:
                problems.append(f'port name {port.name!r} is used twice ({seen[port.name]} and {direction})')
            seen[port.name] = direction
    names: set[str] = set()
    for param in cls.PARAMS:
        if not is_identifier(param.name):
            problems.append(f'parameter name {param.name!r} is not an identifier')
        if param.name in names:
            problems.append(f'parameter {param.name!r} is declared twice')
        names.add(param.name)
    return problems


class PluginRegistry:
    """Resolves references; caches results per reference."""

    def __init__(self, allowlist: Allowlist | None = None, *,
                 entry_points: dict[str, str] | None = None) -> None:
        self.allowlist = allowlist if allowlist is not None else Allowlist.from_env()
        self._entry_points = entry_points  # name -> 'module:Class'; None: read installed metadata
        self._cache: dict[str, PluginInfo | PluginError] = {}

    # -- what is installed ------------------------------------------------------------------
    @property
    def entry_points(self) -> dict[str, str]:
        if self._entry_points is None:
            # imported here: importlib.metadata brings the email package (~2 MB resident), which a
            # container whose load requests name 'module:Class' (what the runner sends) never needs
            import importlib.metadata

            found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            self._entry_points = {
                ep.name: ep.value.replace(' ', '') for ep in sorted(found, key=lambda e: e.name)
            }
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(self.entry_points)

    # -- resolution ---------------------------------------------------------------------------
    def resolve(self, ref: str) -> PluginInfo:
        """The plugin for `ref`, or PluginError (cached either way)."""
        cached = self._cache.get(ref)
        if cached is None:
            try:
                cached = self._resolve(ref)
            except PluginError as exc:
                cached = exc
            self._cache[ref] = cached
        if isinstance(cached, PluginError):
            raise cached
        return cached

    def _resolve(self, ref: str) -> PluginInfo:
        ref = ref.strip()
        if not ref:
            raise PluginError('empty plugin reference')
        if ref in UPSTREAM_ALIASES:
            name = UPSTREAM_ALIASES[ref]
            if name not in self.entry_points:
                raise PluginNotAvailable(
                    f'plugin {ref!r} (upstream) is not available in this version of schnitzel_stream_ros '
                    f'(no plugin named {name!r} is installed)'
                )
            return self._load(ref, self.entry_points[name], name)
        if is_upstream_reference(ref):
            raise PluginNotAvailable(f'upstream plugin {ref!r} has no equivalent in schnitzel_stream_ros')
        if ':' not in ref:
            if ref in self.entry_points:
                return self._load(ref, self.entry_points[ref], ref)
            raise PluginNotAvailable(
                f'unknown plugin {ref!r}{did_you_mean(ref, self.names())}: use a registered name or '
                f'module.path:ClassName'
            )
        module, _, attr = ref.partition(':')
        parts = (*module.split('.'), *attr.split('.'))
        if not module or not attr or not all(part.isidentifier() for part in parts):
            raise PluginError(f'plugin reference {ref!r} is not of the form module.path:ClassName')
        name = next((n for n, target in self.entry_points.items() if target == ref), None)
        return self._load(ref, ref, name)

    def _load(self, ref: str, target: str, name: str | None) -> PluginInfo:
        module_name, _, attr = target.partition(':')
        if not self.allowlist.allows(module_name):  # installed is not trusted: a graph can come from a peer
            registered = f' (registered as {name!r})' if name is not None and name != ref else ''
            raise PluginNotAllowed(
                f'plugin module {module_name!r}{registered} is outside the plugin allowlist '
                f'({self.allowlist.describe()}); refused before import'
            )
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name) and name is not None:
                raise PluginNotAvailable(
                    f'plugin {ref!r} is registered as {target!r} but module {exc.name!r} is not installed'
                ) from exc
            raise PluginError(f'cannot import plugin module {module_name!r}: {exc}') from exc
        except Exception as exc:
            raise PluginError(
                f'importing plugin module {module_name!r} failed: {type(exc).__name__}: {exc}'
            ) from exc
        obj: Any = module
        for part in attr.split('.'):
            obj = getattr(obj, part, None)
            if obj is None:
                raise PluginError(f'module {module_name!r} has no attribute {attr!r}')
        if not isinstance(obj, type) or not issubclass(obj, Plugin):
            raise PluginError(
                f'{target!r} is not a plugin class (subclass schnitzel_stream_ros.plugin.Plugin)'
            )
        major, ours = api_major(obj.API_VERSION), api_major(API_VERSION)
        if major != ours:
            raise PluginIncompatible(
                f'plugin {target!r} targets plugin API {obj.API_VERSION}, '
                f'this runtime provides {API_VERSION} (major version differs)'
            )
        problems = declaration_problems(obj)
        if problems:
            raise PluginError(f'plugin {target!r} declares inconsistent ports/parameters: {problems[0]}')
        return PluginInfo(ref, target, obj, name)

    def installed(self) -> tuple[list[PluginInfo], list[tuple[str, PluginError]]]:
        """Every registered plugin that loads, and the ones that do not (name, error)."""
        good: list[PluginInfo] = []
        bad: list[tuple[str, PluginError]] = []
        for name in self.names():
            try:
                good.append(self.resolve(name))
            except PluginError as exc:
                bad.append((name, exc))
        return good, bad
