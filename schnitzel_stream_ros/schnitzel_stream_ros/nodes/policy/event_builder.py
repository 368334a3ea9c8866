"""ProtocolV02EventBuilderNode: detections -> backend events (protocol v0.2), one per detection.

Same config keys as upstream `schnitzel_stream.packs.vision.nodes:ProtocolV02EventBuilderNode`
(`site_id` required, `camera_id` default = the packet's source_id) and the same input: a detection
packet whose payload is one detection dict, a list of them, or None. What we add:
- the class taxonomy fills `event_type` and `severity` from `object_type` when a detection does not
  carry them (our detector emits `{bbox, confidence, object_type, class_id[, track_id]}`);
  `taxonomy` overrides or extends it, `apply_taxonomy: false` restores upstream's strictness;
- every skipped detection is counted by reason (`skipped_missing_<field>_total`,
  `skipped_invalid_total`) besides `skipped_total`, and logged at debug level with the field.
The event dict, its validation and its deterministic event_id / idempotency_key come from
codec/event_protocol.py — one derivation for the whole suite.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import (
    CLASS_TAXONOMY,
    TRACKED_OBJECT_TYPES,
    Severity,
    TaxonomyRule,
    build_event,
    event_to_packet,
)
from schnitzel_stream_ros.packet import Kind, MetaKey, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port

#: Parent meta keys that describe the parent's own storage or identity and must not be inherited.
_NOT_INHERITED = frozenset({MetaKey.IDEMPOTENCY_KEY, MetaKey.DURABLE, MetaKey.SOURCE_PACKET_ID})


def _plain(value: Any) -> Any:
    """numpy scalars (a detector's float32 confidence) -> Python numbers; the rest unchanged."""
    item = getattr(value, 'item', None)
    if item is not None and type(value).__module__ == 'numpy':
        return item()
    return value


def parse_taxonomy(raw: Mapping[str, Any] | None, where: str) -> dict[str, TaxonomyRule]:
    """The contract taxonomy, overridden/extended by `{OBJECT: {event_type, severity}}`."""
    taxonomy = dict(CLASS_TAXONOMY)
    for object_type, rule in (raw or {}).items():
        if not isinstance(rule, Mapping) or not rule.get('event_type') or not rule.get('severity'):
            raise ValueError(f'{where}.{object_type}: expected {{event_type, severity}}, got {rule!r}')
        if rule['severity'] not in Severity.__members__:
            raise ValueError(
                f'{where}.{object_type}.severity: {rule["severity"]!r} is not one of {list(Severity)}'
            )
        taxonomy[str(object_type)] = TaxonomyRule(str(rule['event_type']), str(rule['severity']))
    return taxonomy


class ProtocolV02EventBuilderNode(Plugin):
    """Turn detections into event protocol v0.2 events with deterministic event_id (skips are counted)."""

    INPUTS = (
        Port('in', frozenset({Kind.DETECTION}), description='payload: detection dict, list of them, or null'),
    )
    OUTPUTS = (Port('out', frozenset({Kind.EVENT}), description='one event packet per valid detection'),)
    PARAMS = (
        Param('site_id', str, description='site of the events (required)'),
        Param('camera_id', str, '', 'camera of the events (default: the packet source_id)'),
        Param('apply_taxonomy', bool, True, 'fill missing event_type/severity from the class taxonomy'),
        Param('taxonomy', dict, None, 'extra/overriding classes: {OBJECT: {event_type, severity}}'),
    )

    def setup(self) -> None:
        site_id = (self.params.get('site_id') or '').strip()
        if not site_id:
            raise ValueError(f'{self.node_id}: parameter site_id: required, must not be empty')
        self.site_id = site_id
        self.camera_id = (self.params.get('camera_id') or '').strip()
        self.apply_taxonomy = self.params.get('apply_taxonomy', True)
        self.taxonomy = parse_taxonomy(self.params.get('taxonomy'), f'{self.node_id}: parameter taxonomy')

    def _skip(self, reason: str, detail: str, packet: StreamPacket) -> None:
        self.count('skipped_total')
        self.count(f'skipped_{reason}_total')
        self.log.debug(f'{self.node_id}: skipped a detection of packet {packet.packet_id}: {detail}')

    def _missing_field(self, det: Mapping[str, Any]) -> str | None:
        for key in ('bbox', 'confidence', 'object_type'):
            if det.get(key) is None or det.get(key) == '':
                return key
        known = self.apply_taxonomy and det['object_type'] in self.taxonomy
        for key in ('event_type', 'severity'):
            if not det.get(key) and not known:
                return key
        if det['object_type'] in TRACKED_OBJECT_TYPES and det.get('track_id') is None:
            return 'track_id'
        return None

    def _event(self, det: Mapping[str, Any], packet: StreamPacket, camera_id: str) -> dict[str, Any]:
        bbox = det['bbox']
        if isinstance(bbox, Mapping):
            bbox = {k: _plain(v) for k, v in bbox.items()}
        track_id = _plain(det.get('track_id'))
        return build_event(
            site_id=self.site_id, camera_id=camera_id, ts=packet.ts,
            object_type=det['object_type'], bbox=bbox, confidence=_plain(det['confidence']),
            track_id=track_id, zone=det.get('zone'), event_type=det.get('event_type') or None,
            severity=det.get('severity') or None, snapshot_path=det.get('snapshot_path'),
            sensor=det.get('sensor'), taxonomy=self.taxonomy,
        )

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        payload = packet.payload
        if payload is None:
            return None
        if isinstance(payload, Mapping):
            detections: list[Any] = [payload]
        elif isinstance(payload, list):
            detections = payload
        else:
            raise ValueError(
                f'{self.node_id}: packet {packet.packet_id} (source_id {packet.source_id}): detection '
                f'payload must be a dict, a list of dicts or null, got {type(payload).__name__}'
            )
        camera_id = self.camera_id or packet.source_id
        inherited = {k: v for k, v in packet.meta.items() if k not in _NOT_INHERITED}
        out: list[StreamPacket] = []
        for index, det in enumerate(detections):
            if not isinstance(det, Mapping):
                self._skip('invalid', f'detection [{index}] is a {type(det).__name__}, not a dict', packet)
                continue
            missing = self._missing_field(det)
            if missing is not None:
                detail = f'detection [{index}].{missing}: required field missing'
                self._skip(f'missing_{missing}', detail, packet)
                continue
            try:
                event = self._event(det, packet, camera_id)
            except (ValueError, TypeError, KeyError) as exc:
                self._skip('invalid', f'detection [{index}]: {exc}', packet)
                continue
            child = event_to_packet(event, parent=packet, check_identity=False)
            out.append(child.derive(source_id=camera_id, meta={**inherited, **child.meta}))
            self.count('emitted_total')
        return out
