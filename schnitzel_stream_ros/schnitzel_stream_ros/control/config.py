"""Where the control plane listens and how it authenticates: parsed and checked before anything starts.

- `--control HOST:PORT` (PORT 0: any free port). Loopback by default; any other address needs TLS
  (`--control-tls-cert/--control-tls-key`) — the token would otherwise cross the network in clear.
- The token: `SCHNITZEL_CONTROL_TOKEN` if set, else the file `--control-token-file` (default
  `<control dir>/token`), created with a random token (mode 0600) when absent. Every mutating call
  needs it as `Authorization: Bearer <token>`. It is never printed, logged or put in a page: the
  runner prints where the file is.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = 'SCHNITZEL_CONTROL_TOKEN'
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 512


class ControlConfigError(ValueError):
    """A one-line reason why the control plane cannot start as asked."""


@dataclass(frozen=True)
class ControlConfig:
    host: str
    port: int
    token: str
    token_source: str  # where the token came from (env variable or file path), for the start line
    audit_path: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    report_path: Path | None = None  # where "snapshot the run report" writes (beside --report-json)

    @property
    def scheme(self) -> str:
        return 'https' if self.tls_cert else 'http'

    def __repr__(self) -> str:  # the token must not end up in a log through a repr
        return f'ControlConfig(host={self.host!r}, port={self.port}, token=<{len(self.token)} chars>)'


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(':')
    if not sep or not host:
        raise ControlConfigError(f'--control {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8765')
    host = host.strip('[]')
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != 'localhost':
            raise ControlConfigError(f'--control {text!r}: HOST must be an IP address or localhost') from None
    try:
        port = int(port_text)
    except ValueError:
        raise ControlConfigError(f'--control {text!r}: PORT must be a number') from None
    if not 0 <= port <= 65535:
        raise ControlConfigError(f'--control {text!r}: PORT must be 0..65535')
    return host, port


def is_loopback(host: str) -> bool:
    return host == 'localhost' or ipaddress.ip_address(host).is_loopback


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS or not token.isprintable() or ' ' in token:
        raise ControlConfigError(
            f'{where}: the control token must be {MIN_TOKEN_CHARS}..{MAX_TOKEN_CHARS} printable characters '
            'without spaces'
        )
    return token


def load_token(token_file: Path) -> tuple[str, str]:
    """(token, where it came from); creates the file with a random token when there is none."""
    if os.environ.get(TOKEN_ENV):
        return _check_token(os.environ[TOKEN_ENV], TOKEN_ENV), TOKEN_ENV
    if token_file.is_file():
        try:
            return _check_token(token_file.read_text(encoding='utf-8'), str(token_file)), str(token_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ControlConfigError(f'{token_file}: cannot read the control token: {exc}') from None
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as out:
        out.write(token + '\n')
    return token, str(token_file)


def build_config(bind: str, *, control_dir: Path, token_file: Path | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, report_path: str | None = None) -> ControlConfig:
    host, port = parse_bind(bind)
    if bool(tls_cert) != bool(tls_key):
        raise ControlConfigError('--control-tls-cert and --control-tls-key go together')
    for option, value in (('--control-tls-cert', tls_cert), ('--control-tls-key', tls_key)):
        if value and not Path(value).is_file():
            raise ControlConfigError(f'{option} {value}: no such file')
    if not is_loopback(host) and not tls_cert:
        raise ControlConfigError(
            f'--control {bind}: a non-loopback address needs TLS (--control-tls-cert/--control-tls-key); '
            'the token would otherwise cross the network in clear'
        )
    token, source = load_token(token_file or control_dir / 'token')
    return ControlConfig(
        host=host, port=port, token=token, token_source=source, audit_path=control_dir / 'audit.jsonl',
        tls_cert=Path(tls_cert) if tls_cert else None, tls_key=Path(tls_key) if tls_key else None,
        report_path=Path(report_path) if report_path else None,
    )
