"""Where zones come from: inline config, a YAML/JSON file, or an HTTP API.

The one rule all three share: `current()` never blocks the packet path. An event must not wait for
a zone server — a slow or dead API would otherwise stall detection for every camera. So:
- inline zones never change;
- files and HTTP answers are hostile input: bounded by ZONE_LIMITS (size before reading, depth,
  values, aliases while parsing; see document_limits), refused with one line like any other error;
- a file is re-checked (mtime/size) at most every `ttl_sec`, and a broken edit keeps the last good
  zones (the error is logged once per change);
- the HTTP API is polled by a background thread every `ttl_sec`; a failed fetch (connection error,
  non-200, bad JSON, bad zone) keeps the last good zones and is retried after `retry_sec`, backing
  off to `error_backoff_sec` after `max_failures` failures in a row (upstream's api_cfg keys).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from schnitzel_stream_ros.delivery.redact import mask_url
from schnitzel_stream_ros.document_limits import (
    ZONE_LIMITS,
    DocumentError,
    DocumentLimits,
    decode_text,
    load_json,
    load_yaml,
    read_file,
    read_stream,
)
from schnitzel_stream_ros.nodes.policy.zones import Zone, ZoneError, parse_zones

_LOG = logging.getLogger(__name__)


class ZoneProvider(Protocol):
    def current(self) -> tuple[Zone, ...]: ...

    def close(self) -> None: ...


@dataclass
class RefreshStats:
    """Counters a provider keeps for the node's metrics (read from the packet thread)."""

    ok_total: int = 0
    failed_total: int = 0
    generation: int = 0  # increments whenever the zone set changes
    last_error: str = ''


class StaticZones:
    """Inline zones from the node config."""

    def __init__(self, zones: tuple[Zone, ...]) -> None:
        self._zones = zones
        self.stats = RefreshStats(ok_total=1, generation=1)

    def current(self) -> tuple[Zone, ...]:
        return self._zones

    def close(self) -> None:
        pass


def load_zone_file(path: Path, limits: DocumentLimits = ZONE_LIMITS) -> tuple[Zone, ...]:
    """Zones from a YAML or JSON file (YAML is a superset of JSON), bounded by `limits` before and
    while it is parsed; errors name file:line."""
    try:
        data = load_yaml(decode_text(read_file(path, limits)), limits)
    except OSError as exc:
        raise ZoneError(f'{path}: cannot read zone file: {exc.strerror or exc}') from None
    except DocumentError as exc:
        problem = str(exc).removeprefix('not valid YAML: ')
        raise ZoneError(f'{path}:{exc.line or 1}: not valid YAML/JSON: {problem}') from None
    return parse_zones(data, str(path))


class FileZones:
    """Zones from a file, re-read when it changes (checked at most every `ttl_sec`)."""

    def __init__(self, path: str | Path, ttl_sec: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = Path(path)
        self._ttl = ttl_sec
        self._clock = clock
        self.stats = RefreshStats()
        self._signature = self._stat()
        self._zones = load_zone_file(self._path)  # fail closed at start: a missing file is an error
        self.stats.ok_total = self.stats.generation = 1
        self._checked_at = clock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> tuple[Zone, ...]:
        now = self._clock()
        if now - self._checked_at >= self._ttl:
            self._checked_at = now
            signature = self._stat()
            if signature != self._signature:
                self._signature = signature
                try:
                    zones = load_zone_file(self._path)
                except ZoneError as exc:
                    self.stats.failed_total += 1
                    self.stats.last_error = str(exc)
                    _LOG.warning('zone file changed but is not usable, keeping %d zones: %s',
                                 len(self._zones), exc)
                else:
                    self.stats.ok_total += 1
                    if zones != self._zones:
                        self._zones = zones
                        self.stats.generation += 1
        return self._zones

    def close(self) -> None:
        pass


@dataclass
class ApiSettings:
    """Upstream `api_cfg` plus our additions (retry_sec, initial_wait_sec, headers_env)."""

    url: str
    timeout_sec: float = 3.0
    ttl_sec: float = 30.0
    retry_sec: float = 1.0
    error_backoff_sec: float = 5.0
    max_failures: int = 3
    initial_wait_sec: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, api_cfg: Mapping[str, Any], *, site_id: str, camera_id: str, ttl_sec: float, where: str
    ) -> ApiSettings:
        known = {'url', 'base_url', 'get_path_template', 'timeout_sec', 'retry_sec', 'error_backoff_sec',
                 'max_failures', 'initial_wait_sec', 'bearer_token_env', 'cache_ttl_sec'}
        unknown = sorted(set(api_cfg) - known)
        if unknown:
            raise ZoneError(f'{where}.{unknown[0]}: unknown key (known: {sorted(known)})')
        url = api_cfg.get('url')
        if not url:
            base = str(api_cfg.get('base_url') or '')
            if not base:
                raise ZoneError(f'{where}.base_url: required (or give url)')
            template = str(api_cfg.get('get_path_template') or '')
            if '{camera_id}' in template and not camera_id:
                raise ZoneError(f'{where}.get_path_template: uses {{camera_id}} but camera_id is not set')
            if '{site_id}' in template and not site_id:
                raise ZoneError(f'{where}.get_path_template: uses {{site_id}} but site_id is not set')
            try:
                url = base.rstrip('/') + template.format(site_id=site_id, camera_id=camera_id)
            except (KeyError, IndexError, ValueError) as exc:
                raise ZoneError(f'{where}.get_path_template: bad placeholder {exc}') from None
        if urllib.parse.urlsplit(str(url)).scheme not in ('http', 'https'):
            raise ZoneError(f'{where}.url: expected an http(s) URL, got {mask_url(str(url))!r}')
        headers: dict[str, str] = {}
        token_env = api_cfg.get('bearer_token_env')
        if token_env:  # the token itself never sits in a graph file
            token = os.environ.get(str(token_env), '')
            if not token:
                raise ZoneError(f'{where}.bearer_token_env: environment variable {token_env} is not set')
            headers['Authorization'] = f'Bearer {token}'

        def number(key: str, default: float, minimum: float) -> float:
            value = api_cfg.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                raise ZoneError(f'{where}.{key}: expected a number >= {minimum}, got {value!r}')
            return float(value)

        return cls(
            url=str(url),
            timeout_sec=number('timeout_sec', 3.0, 0.001),
            ttl_sec=number('cache_ttl_sec', ttl_sec, 0.05),  # upstream's `zones.api` block has it here
            retry_sec=number('retry_sec', 1.0, 0.0),
            error_backoff_sec=number('error_backoff_sec', 5.0, 0.0),
            max_failures=int(number('max_failures', 3, 1)),
            initial_wait_sec=number('initial_wait_sec', 0.0, 0.0),
            headers=headers,
        )


class HttpZones:
    """Zones from an HTTP API (GET returns a zone list or `{zones: [...]}`), refreshed in the background."""

    def __init__(self, settings: ApiSettings, name: str = 'zones',
                 limits: DocumentLimits = ZONE_LIMITS) -> None:
        self.settings = settings
        self.limits = limits
        self.stats = RefreshStats()
        self._zones: tuple[Zone, ...] = ()
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f'zone-refresh-{name}', daemon=True)
        self._thread.start()
        if settings.initial_wait_sec > 0:
            self._first_attempt.wait(settings.initial_wait_sec)

    def current(self) -> tuple[Zone, ...]:
        return self._zones  # one attribute read: atomic, never waits for the refresh thread

    def fetch_once(self) -> tuple[Zone, ...]:
        """One GET; raises ZoneError naming the URL on any failure."""
        # urllib.request on first use: it brings http.client, ssl and OpenSSL (~5 MB resident), which
        # a process whose zones come from a file or the graph (every camera container) never needs
        import urllib.error
        import urllib.request

        where = f'GET {mask_url(self.settings.url)}'
        request = urllib.request.Request(
            self.settings.url, headers={'Accept': 'application/json', **self.settings.headers}
        )
        limits = self.limits
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_sec) as response:
                declared = response.headers.get('Content-Length', '')
                if declared.isdigit() and int(declared) > limits.max_bytes:
                    raise ZoneError(f'{where}: response of {int(declared):,} bytes: over the limit '
                                    f'max_bytes = {limits.max_bytes:,}')
                body = read_stream(response, limits, 'response')
        except urllib.error.HTTPError as exc:
            raise ZoneError(f'{where}: HTTP {exc.code}') from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, 'reason', exc)
            raise ZoneError(f'{where}: {reason}') from None
        except DocumentError as exc:
            raise ZoneError(f'{where}: {exc}') from None
        try:
            data = load_json(decode_text(body), limits)
        except json.JSONDecodeError as exc:
            raise ZoneError(f'{where}: response is not JSON: {exc}') from None
        except DocumentError as exc:
            raise ZoneError(f'{where}: line {exc.line or 1} of the response: {exc}') from None
        return parse_zones(data, where)

    def _run(self) -> None:
        consecutive_failures = 0
        while not self._stop.is_set():
            try:
                zones = self.fetch_once()
            except ZoneError as exc:
                consecutive_failures += 1
                self.stats.failed_total += 1
                self.stats.last_error = str(exc)
                _LOG.warning('zone refresh failed (keeping %d zones): %s', len(self._zones), exc)
                if consecutive_failures >= self.settings.max_failures:
                    consecutive_failures = 0
                    delay = self.settings.error_backoff_sec
                else:
                    delay = min(self.settings.retry_sec, self.settings.ttl_sec)
            except Exception as exc:  # never let the refresher die: stale zones beat no refresh at all
                self.stats.failed_total += 1
                self.stats.last_error = f'{type(exc).__name__}: {exc}'
                _LOG.exception('zone refresh crashed (keeping %d zones)', len(self._zones))
                delay = self.settings.error_backoff_sec
            else:
                consecutive_failures = 0
                self.stats.ok_total += 1
                if zones != self._zones:
                    self._zones = zones
                    self.stats.generation += 1
                delay = self.settings.ttl_sec
            self._first_attempt.set()
            self._stop.wait(delay)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.timeout_sec + 1.0)
