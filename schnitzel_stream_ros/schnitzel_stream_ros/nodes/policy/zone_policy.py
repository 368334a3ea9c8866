"""ZonePolicyNode: sets `zone {zone_id, inside}` on events (or on detections, before the event builder).

Same config keys as upstream `schnitzel_stream.packs.vision.nodes:ZonePolicyNode`: inline `zones`,
or `source: file` + `file_path`, or `source: api` + `api_cfg {base_url, get_path_template,
timeout_sec, error_backoff_sec, max_failures}`, with `cache_ttl_sec`, `site_id`, `camera_id` and
`rule_map`. Unlike upstream, a broken zone definition is refused at start (naming the zone), and an
API-backed node never fetches on the packet path (see zone_sources.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.nodes.policy.zone_sources import (
    ApiSettings,
    FileZones,
    HttpZones,
    StaticZones,
    ZoneProvider,
)
from schnitzel_stream_ros.nodes.policy.zones import RULE_POINTS, Zone, ZoneError, evaluate, parse_zones
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

_KINDS = frozenset({Kind.EVENT, Kind.DETECTION})


class ZonePolicyNode(Plugin):
    """Set payload.zone from the box's rule point and the configured zones (inline, file or HTTP API)."""

    PASSTHROUGH = True  # events stay events, detections stay detections
    INPUTS = (Port('in', _KINDS, description='events (dict payload) or detections (dict or list)'),)
    OUTPUTS = (Port('out', _KINDS, description='the same packets with zone set'),)
    PARAMS = (
        Param('zones', list, None, 'inline zones: [{zone_id, polygon: [[x, y], ...], enabled, camera_id}]'),
        Param('source', str, '', 'where zones come from when not inline',
              choices=('', 'none', 'inline', 'file', 'api')),
        Param('file_path', str, '', 'YAML/JSON zone file (source: file)'),
        Param('api_cfg', dict, None, 'zone API (source: api): base_url, get_path_template, timeout_sec, ...'),
        Param('cache_ttl_sec', float, 30.0, 'how often a file is re-checked / the API re-fetched', min=0.05),
        Param('site_id', str, '', 'site of the zones (API path template)'),
        Param('camera_id', str, '', 'camera of the zones (API path template)'),
        Param('rule_map', dict, None, 'event_type or object_type -> bottom_center | bbox_center'),
    )

    def setup(self) -> None:
        self._rule_map: dict[str, str] = dict(self.params.get('rule_map') or {})
        for key, rule in self._rule_map.items():
            if rule not in RULE_POINTS:
                raise ZoneError(
                    f'{self.node_id}: parameter rule_map.{key}: {rule!r} is not one of {list(RULE_POINTS)}'
                )
        self.provider = self._make_provider()
        self._reported_failures = 0
        self._generation = 0

    def _make_provider(self) -> ZoneProvider:
        p = self.params
        source = p.get('source') or ''
        inline = p.get('zones')
        where = f'{self.node_id}: parameter'
        if inline is not None and source not in ('', 'inline'):
            raise ZoneError(f'{where} zones: given together with source {source!r}; choose one')
        if inline is not None or source == 'inline':
            return StaticZones(parse_zones(inline or [], f'{where} zones'))
        if source == 'file':
            if not p.get('file_path'):
                raise ZoneError(f'{where} file_path: required with source: file')
            return FileZones(p['file_path'], p.get('cache_ttl_sec', 30.0))
        if source == 'api':
            api_cfg = p.get('api_cfg')
            if not api_cfg:
                raise ZoneError(f'{where} api_cfg: required with source: api')
            settings = ApiSettings.from_config(
                api_cfg, site_id=p.get('site_id', ''), camera_id=p.get('camera_id', ''),
                ttl_sec=p.get('cache_ttl_sec', 30.0), where=f'{where} api_cfg',
            )
            return HttpZones(settings, name=self.node_id)
        self.log.warning(f'{self.node_id}: no zones configured; every object is outside')
        return StaticZones(())

    def _zone_for(self, item: Mapping[str, Any], zones: tuple[Zone, ...], camera_id: str) -> dict[str, Any]:
        return evaluate(
            item.get('bbox'), zones,
            event_type=str(item.get('event_type') or ''), object_type=str(item.get('object_type') or ''),
            camera_id=str(item.get('camera_id') or camera_id), rule_map=self._rule_map,
        )

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        zones = self.provider.current()
        self._report_refresh()
        payload = packet.payload
        if isinstance(payload, Mapping):
            out = dict(payload)
            out['zone'] = self._zone_for(payload, zones, packet.source_id)
            self.count('processed_total')
            if out['zone']['inside']:
                self.count('inside_total')
            return packet.derive(payload=out)
        if isinstance(payload, list) and packet.kind == Kind.DETECTION:
            items = []
            for item in payload:
                if isinstance(item, Mapping):
                    item = {**item, 'zone': self._zone_for(item, zones, packet.source_id)}
                    self.count('processed_total')
                    if item['zone']['inside']:
                        self.count('inside_total')
                items.append(item)
            return packet.derive(payload=items)
        raise ValueError(
            f'{self.node_id}: packet {packet.packet_id} (kind {packet.kind}, source_id {packet.source_id}): '
            f'payload must be a mapping (event) or a list (detections), got {type(payload).__name__}'
        )

    def _report_refresh(self) -> None:
        stats = getattr(self.provider, 'stats', None)
        if stats is None:
            return
        if stats.failed_total > self._reported_failures:
            self.count('zone_refresh_failed_total', stats.failed_total - self._reported_failures)
            self._reported_failures = stats.failed_total
        if stats.generation != self._generation:
            self._generation = stats.generation
            self.gauge('zones_loaded', len(self.provider.current()))
            self.gauge('zones_generation', stats.generation)

    def close(self) -> None:
        provider = getattr(self, 'provider', None)
        if provider is not None:
            provider.close()
