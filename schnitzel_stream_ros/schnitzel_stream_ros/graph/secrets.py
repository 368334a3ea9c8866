"""Secret references in graph parameters: `${secret:ENV_NAME}` and `${secret_file:PATH}`.

Every plugin parameter becomes a ROS parameter of its node (readable by anyone on the domain with
`ros2 param get`) and is written into compiled launch files. A password in a graph value would
therefore leak twice. So a credential is written as a reference, e.g.

    url: rtsp://admin:${secret:CAM1_PASSWORD}@10.0.0.5/stream
    url: https://ingest:${secret_file:/etc/site/ingest.pass}@backend.example/events

The reference text is what the ROS parameter and the launch file hold; the runtime resolves it in
the container process when the node is set up (environment variable, or the file's content with
surrounding whitespace stripped), and only the plugin sees the value. A URL with a literal password
is refused at validation, naming the parameter. Logs show URLs masked (delivery/redact.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SECRET_REF = re.compile(r'\$\{secret(?P<file>_file)?:(?P<name>[^}]+)\}')
#: scheme://user:password@ -- the password part, as any URL in a text may carry it
_URL_PASSWORD = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:(?P<password>[^@\s/]*)@')
_MAX_SECRET_FILE = 64 * 1024


class SecretError(ValueError):
    """A secret reference cannot be resolved (variable unset, file missing); names the reference."""


def is_secret_ref(expr: str) -> bool:
    """True for the inside of `${...}` that is a secret reference (the loader leaves these alone)."""
    return SECRET_REF.fullmatch('${' + expr + '}') is not None


def literal_credential(value: Any) -> str | None:
    """Where `value` (str, or nested list/dict) holds a URL with a literal password: a short
    description with the password masked; None when every password is a secret reference."""
    if isinstance(value, str):
        for match in _URL_PASSWORD.finditer(value):
            password = match.group('password')
            if password and not SECRET_REF.fullmatch(password):
                start, end = match.span('password')
                return value[match.start() : start] + '***' + value[end : match.end()]
        return None
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = literal_credential(item)
            if found:
                return found
    return None


def _resolve_text(text: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group('name').strip()
        if match.group('file'):
            path = Path(name)
            try:
                if path.stat().st_size > _MAX_SECRET_FILE:
                    raise SecretError(f'${{secret_file:{name}}}: file larger than {_MAX_SECRET_FILE} bytes')
                return path.read_text(encoding='utf-8').strip()
            except OSError as exc:
                raise SecretError(f'${{secret_file:{name}}}: cannot read: {exc.strerror or exc}') from None
        value = env.get(name)
        if not value:
            raise SecretError(f'${{secret:{name}}}: environment variable {name} is not set or empty')
        return value

    return SECRET_REF.sub(one, text)


def resolve_secrets(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """`value` with every secret reference replaced by its secret (str, list and dict, nested)."""
    env = os.environ if env is None else env
    if isinstance(value, str):
        return _resolve_text(value, env) if '${secret' in value else value
    if isinstance(value, list):
        return [resolve_secrets(v, env) for v in value]
    if isinstance(value, dict):
        return {k: resolve_secrets(v, env) for k, v in value.items()}
    return value
