"""`${oc.env:VAR,default}` interpolation, as upstream graph files (OmegaConf) use it.

Only the environment resolver is supported: a graph file is configuration, and resolving other
interpolations (node references, custom resolvers) would make its meaning depend on code. The
result of an interpolation is text (OmegaConf's oc.env returns strings); it is an `EnvText` so the
validator may convert it to the declared type of a parameter (`port: ${oc.env:PORT,8080}`).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.graph.secrets import is_secret_ref

_INTERPOLATION = re.compile(r'(\\)?\$\{([^}]*)\}')
_ENV = re.compile(r'^\s*oc\.env\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:,(.*))?$', re.DOTALL)


class EnvText(str):
    """Text that came (wholly) from an environment interpolation."""

    __slots__ = ()


class InterpolationError(ValueError):
    pass


def _default_text(raw: str) -> str | None:
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        return text[1:-1]
    if text == 'null':
        return None
    return text


def _resolve_one(expr: str, env: Mapping[str, str]) -> str | None:
    if is_secret_ref(expr):  # resolved in the container process only (graph/secrets.py)
        return '${' + expr + '}'
    match = _ENV.match(expr)
    if match is None:
        raise InterpolationError(
            f'unsupported interpolation ${{{expr}}}: only ${{oc.env:VAR,default}} is supported'
        )
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is None:
        raise InterpolationError(
            f'environment variable {name} is not set and ${{oc.env:{name}}} has no default'
        )
    return _default_text(default)


def interpolate_text(text: str, env: Mapping[str, str] | None = None) -> Any:
    """Resolve interpolations in one string. A string that is one interpolation may become None."""
    if '${' not in text:
        return text
    env = os.environ if env is None else env
    whole = _INTERPOLATION.fullmatch(text)
    if whole is not None and not whole.group(1) and not is_secret_ref(whole.group(2)):
        value = _resolve_one(whole.group(2), env)
        return None if value is None else EnvText(value)

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):  # escaped: \${...} stays literal (without the backslash)
            return match.group(0)[1:]
        value = _resolve_one(match.group(2), env)
        return '' if value is None else value

    return _INTERPOLATION.sub(substitute, text)
