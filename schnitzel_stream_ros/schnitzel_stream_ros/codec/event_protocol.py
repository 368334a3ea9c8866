"""Event protocol v0.2: the backend event dict <-> StreamPacket(kind=event) <-> schnitzel_stream_msgs/Event.

Backends written for schnitzel-stream-platform receive this dict as JSON and deduplicate on
`event_id`. The id is derived, never random: the same detection (site, camera, type, class, track,
time, box) always gives the same id, so a replay after a crash or a retry deduplicates at the
backend. The derivation is upstream's, to the character, including its quirks:
- the key formats values with Python's str(): bbox 2 gives "2" but 2.0 gives "2.0", and an absent
  object_type gives "None";
- `track_id or 'na'`: track 0 is written "na", like no track.
Changing any of that would give every existing deployment new ids, so it is kept and pinned by tests.

Routes and what they preserve:
- dict <-> StreamPacket: the dict is the payload as is (exact); meta.idempotency_key = the key.
- dict <-> Event.msg: typed fields for robots and buses. The dict comes back in canonical form:
  every standard field present (absent optional ones as None; zone_id "" for no zone, also when
  it was null), ts canonical (`format_ts`), bbox
  integral values as int, confidence as float, fields beyond the standard ones via extra_json.
  event_id and idempotency_key travel as fields, so identity never depends on that normalisation.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from std_msgs.msg import Header

from schnitzel_stream_msgs.msg import BoundingBox
from schnitzel_stream_msgs.msg import Event as EventMsg
from schnitzel_stream_ros.codec.json_values import check_json_value, check_ros_string, dumps_json, loads_json
from schnitzel_stream_ros.codec.timestamps import stamp_to_ts, ts_to_stamp
from schnitzel_stream_ros.packet import Kind, MetaKey, StreamPacket, parse_ts

EVENT_PROTOCOL_VERSION = '0.2'
#: uuid5 namespace of event ids: uuid5(NAMESPACE_DNS, "schnitzel_stream:event_protocol_v0.2"), written
#: out (a unit test recomputes it): computing it at import would load hashlib and OpenSSL's libcrypto
#: (~3.5 MB resident) into every process that imports the protocol, also those that never make an id.
EVENT_ID_NAMESPACE = uuid.UUID('c5b2d7c1-3170-585c-90de-e92b07e756de')


class Severity(StrEnum):
    INFO = 'INFO'
    LOW = 'LOW'
    MEDIUM = 'MEDIUM'
    HIGH = 'HIGH'
    CRITICAL = 'CRITICAL'


class EventType(StrEnum):
    ZONE_INTRUSION = 'ZONE_INTRUSION'
    FIRE_DETECTED = 'FIRE_DETECTED'
    SMOKE_DETECTED = 'SMOKE_DETECTED'
    PPE_COMPLIANCE = 'PPE_COMPLIANCE'
    PPE_VIOLATION = 'PPE_VIOLATION'
    FALL_DETECTED = 'FALL_DETECTED'
    SENSOR_EVENT = 'SENSOR_EVENT'
    FUSED_EVENT = 'FUSED_EVENT'
    HEARTBEAT = 'HEARTBEAT'
    METRICS = 'METRICS'
    # robot telemetry lane (nodes/robot/): object_type ROBOT, camera_id = the robot, zero bbox
    GEOFENCE_ENTER = 'GEOFENCE_ENTER'
    GEOFENCE_EXIT = 'GEOFENCE_EXIT'
    BATTERY_LOW = 'BATTERY_LOW'
    BATTERY_CRITICAL = 'BATTERY_CRITICAL'
    BATTERY_OK = 'BATTERY_OK'
    ROBOT_STALLED = 'ROBOT_STALLED'
    ROBOT_DIAGNOSTIC_ERROR = 'ROBOT_DIAGNOSTIC_ERROR'
    # audio lane (nodes/audio/): object_type AUDIO, camera_id = the microphone, zero bbox
    LOUD_NOISE = 'LOUD_NOISE'
    VOICE = 'VOICE'


@dataclass(frozen=True, slots=True)
class TaxonomyRule:
    """What a detected class becomes as an event."""

    event_type: str
    severity: str


#: Class taxonomy of the contract: detected object class -> event type and severity.
#: FORKLIFT: the contract names the event type only; MEDIUM is our choice (as for PERSON).
CLASS_TAXONOMY: Mapping[str, TaxonomyRule] = MappingProxyType(
    {
        'PERSON': TaxonomyRule(EventType.ZONE_INTRUSION, Severity.MEDIUM),
        'FIRE': TaxonomyRule(EventType.FIRE_DETECTED, Severity.CRITICAL),
        'SMOKE': TaxonomyRule(EventType.SMOKE_DETECTED, Severity.HIGH),
        'FORKLIFT': TaxonomyRule(EventType.ZONE_INTRUSION, Severity.MEDIUM),
        'HELMET': TaxonomyRule(EventType.PPE_COMPLIANCE, Severity.INFO),
        'VEST': TaxonomyRule(EventType.PPE_COMPLIANCE, Severity.INFO),
        'NO_HELMET': TaxonomyRule(EventType.PPE_VIOLATION, Severity.MEDIUM),
        'NO_VEST': TaxonomyRule(EventType.PPE_VIOLATION, Severity.LOW),
        'FALLEN_PERSON': TaxonomyRule(EventType.FALL_DETECTED, Severity.HIGH),
    }
)

#: Object classes whose events must carry a track id.
TRACKED_OBJECT_TYPES = frozenset({'PERSON'})
REQUIRED_FIELDS = (
    'event_id',
    'ts',
    'site_id',
    'camera_id',
    'event_type',
    'severity',
    'bbox',
    'confidence',
    'zone',
)
#: Every field of the v0.2 payload, in the order the canonical dict has them.
STANDARD_FIELDS = (
    'event_id',
    'ts',
    'site_id',
    'camera_id',
    'event_type',
    'object_type',
    'severity',
    'track_id',
    'bbox',
    'confidence',
    'zone',
    'snapshot_path',
    'sensor',
)
BBOX_KEYS = ('x1', 'y1', 'x2', 'y2')
_STANDARD = frozenset(STANDARD_FIELDS)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXACT_FLOAT_INT = 2**53
_NIL_EVENT_ID = str(uuid.UUID(int=0))


# ---------------------------------------------------------------------------------------- identity
def event_idempotency_key(
    site_id: Any, camera_id: Any, event_type: Any, object_type: Any, track_id: Any, ts: Any, bbox: Mapping
) -> str:
    """The contract's dedup key, character for character (see the module doc for its quirks)."""
    x1, y1, x2, y2 = (bbox[k] for k in BBOX_KEYS)
    return (
        f'event:{site_id}:{camera_id}:{event_type}:{object_type}:{track_id or "na"}:{ts}:{x1}:{y1}:{x2}:{y2}'
    )


def event_id_from_key(idempotency_key: str) -> str:
    """event_id = str(uuid5(EVENT_ID_NAMESPACE, idempotency_key))."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, idempotency_key))


def event_key_of(event: Mapping[str, Any]) -> str:
    """The idempotency key of an event dict, from its own fields."""
    return event_idempotency_key(
        event.get('site_id'),
        event.get('camera_id'),
        event.get('event_type'),
        event.get('object_type'),
        event.get('track_id'),
        event.get('ts'),
        event['bbox'],
    )


# ---------------------------------------------------------------------------------------- build
def build_event(
    *,
    site_id: str,
    camera_id: str,
    ts: str,
    object_type: str | None,
    bbox: Mapping[str, float],
    confidence: float,
    track_id: int | None = None,
    zone: Mapping[str, Any] | None = None,
    event_type: str | None = None,
    severity: str | None = None,
    snapshot_path: str | None = None,
    sensor: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    taxonomy: Mapping[str, TaxonomyRule] = CLASS_TAXONOMY,
) -> dict[str, Any]:
    """A complete, validated v0.2 event with its deterministic event_id.

    event_type and severity default from the taxonomy of `object_type`. A detection that cannot
    become an event (unknown class without explicit type, missing bbox, PERSON without track, ...)
    raises ValueError/TypeError naming the field: the event builder node counts and skips it.
    """
    rule = taxonomy.get(object_type) if isinstance(object_type, str) else None
    if event_type is None:
        if rule is None:
            raise ValueError(
                f'object_type: {object_type!r} is not in the class taxonomy and no event_type was given'
            )
        event_type = rule.event_type
    if severity is None:
        if rule is None:
            raise ValueError(f'severity: none given and object_type {object_type!r} has no taxonomy rule')
        severity = rule.severity
    if not isinstance(bbox, Mapping):
        raise TypeError(f'bbox: expected an object with {", ".join(BBOX_KEYS)}, got {type(bbox).__name__}')
    event: dict[str, Any] = {
        'event_id': _NIL_EVENT_ID,  # replaced below, once the fields are known to be valid
        'ts': ts,
        'site_id': site_id,
        'camera_id': camera_id,
        'event_type': str(event_type),
        'object_type': object_type,
        'severity': str(severity),
        'track_id': track_id,
        'bbox': {k: bbox[k] for k in BBOX_KEYS if k in bbox},
        'confidence': confidence,
        'zone': dict(zone) if isinstance(zone, Mapping) else zone if zone is not None else _no_zone(),
        'snapshot_path': snapshot_path,
        'sensor': dict(sensor) if isinstance(sensor, Mapping) else sensor,
    }
    for key, value in (extra or {}).items():
        if key in _STANDARD:
            raise ValueError(f'extra.{key}: is a standard field, pass it by name')
        event[key] = value
    validate_event(event, check_identity=False)
    event['event_id'] = event_id_from_key(event_key_of(event))
    return event


def _no_zone() -> dict[str, Any]:
    """The zone of an event outside every zone, or not looked at yet (zones are not identity).

    zone_id "" (not null) is the suite's spelling of "no zone", as ZonePolicyNode writes it.
    """
    return {'zone_id': '', 'inside': False}


# ---------------------------------------------------------------------------------------- validate
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require_str(event: Mapping, key: str, field: str, *, optional: bool = False) -> None:
    value = event.get(key)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f'{field}.{key}: expected a non-empty string, got {value!r}')


def validate_event(event: Any, field: str = 'event', *, check_identity: bool = True) -> None:
    """Refuse an event that does not follow v0.2, naming the field.

    With `check_identity`, event_id must be the one derived from the event's own fields.
    """
    if not isinstance(event, Mapping):
        raise TypeError(f'{field}: expected an object, got {type(event).__name__}')
    missing = [key for key in REQUIRED_FIELDS if key not in event]
    if missing:
        raise ValueError(
            f'{field}.{missing[0]}: required field missing (required: {", ".join(REQUIRED_FIELDS)})'
        )
    for key in ('site_id', 'camera_id', 'event_type'):
        _require_str(event, key, field)
    _require_str(event, 'object_type', field, optional=True)
    _require_str(event, 'snapshot_path', field, optional=True)
    try:
        parse_ts(event['ts'])
    except ValueError:
        raise ValueError(f'{field}.ts: not an ISO-8601 time: {event["ts"]!r}') from None
    if not isinstance(event['severity'], str) or event['severity'] not in Severity.__members__:
        raise ValueError(f'{field}.severity: {event["severity"]!r} is not one of {", ".join(Severity)}')
    track_id = event.get('track_id')
    if track_id is not None and (type(track_id) is not int or not _INT64_MIN <= track_id <= _INT64_MAX):
        raise TypeError(f'{field}.track_id: expected an int (64-bit) or null, got {track_id!r}')
    if track_id is None and event.get('object_type') in TRACKED_OBJECT_TYPES:
        raise ValueError(f'{field}.track_id: required when object_type is {event["object_type"]}')
    bbox = event['bbox']
    if not isinstance(bbox, Mapping):
        raise TypeError(
            f'{field}.bbox: expected an object with {", ".join(BBOX_KEYS)}, got {type(bbox).__name__}'
        )
    for key in BBOX_KEYS:
        if key not in bbox:
            raise ValueError(f'{field}.bbox.{key}: required field missing')
        if not _is_number(bbox[key]):
            raise ValueError(f'{field}.bbox.{key}: expected a finite number, got {bbox[key]!r}')
    confidence = event['confidence']
    if not _is_number(confidence) or not 0 <= confidence <= 1:
        raise ValueError(f'{field}.confidence: expected a number in [0, 1], got {confidence!r}')
    zone = event['zone']
    if not isinstance(zone, Mapping) or 'zone_id' not in zone or 'inside' not in zone:
        raise ValueError(f'{field}.zone: expected {{"zone_id": str|null, "inside": bool}}, got {zone!r}')
    if zone['zone_id'] is not None and not isinstance(zone['zone_id'], str):
        raise TypeError(f'{field}.zone.zone_id: expected str or null, got {type(zone["zone_id"]).__name__}')
    if not isinstance(zone['inside'], bool):
        raise TypeError(f'{field}.zone.inside: expected bool, got {type(zone["inside"]).__name__}')
    sensor = event.get('sensor')
    if sensor is not None and not isinstance(sensor, Mapping):
        raise TypeError(f'{field}.sensor: expected an object or null, got {type(sensor).__name__}')
    check_json_value(event, field)
    event_id = event['event_id']
    try:
        uuid.UUID(event_id)
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f'{field}.event_id: expected UUID text, got {event_id!r}') from None
    if check_identity:
        expected = event_id_from_key(event_key_of(event))
        if event_id != expected:
            raise ValueError(
                f'{field}.event_id: {event_id} is not the id derived from the event fields ({expected})'
            )


# ---------------------------------------------------------------------------------------- packets
def event_to_packet(
    event: Mapping[str, Any], *, parent: StreamPacket | None = None, check_identity: bool = True
) -> StreamPacket:
    """A validated event as StreamPacket(kind=event): payload = the dict, meta.idempotency_key = its key.

    With a `parent` (the detection packet) the event is its child: new packet_id,
    meta.source_packet_id = parent's id, parent's source_id.
    """
    validate_event(event, 'payload', check_identity=check_identity)
    payload = dict(event)
    meta = {MetaKey.IDEMPOTENCY_KEY: event_key_of(event)}
    if parent is not None:
        return parent.child(kind=Kind.EVENT, payload=payload, meta=meta, ts=event['ts'])
    return StreamPacket.new(Kind.EVENT, event['camera_id'], payload, meta, ts=event['ts'])


def packet_to_event(packet: StreamPacket, *, check_identity: bool = True) -> dict[str, Any]:
    """The v0.2 event a StreamPacket(kind=event) carries (validated; a copy)."""
    if packet.kind != Kind.EVENT:
        raise ValueError(f'kind: expected {Kind.EVENT!r}, got {packet.kind!r}')
    validate_event(packet.payload, 'payload', check_identity=check_identity)
    key = packet.meta.get(MetaKey.IDEMPOTENCY_KEY)
    if check_identity and isinstance(key, str) and key and key != event_key_of(packet.payload):
        raise ValueError(f'meta.idempotency_key: {key!r} is not the key of the payload')
    return dict(packet.payload)


# ---------------------------------------------------------------------------------------- Event.msg
def _bbox_value(value: float | int, field: str) -> float:
    if isinstance(value, int) and abs(value) > _EXACT_FLOAT_INT:
        raise ValueError(f'{field}: {value} does not fit a float64 exactly')
    return float(value)


def _json_number(value: float) -> int | float:
    """float64 from a message -> the JSON number it most likely was: integral values as int."""
    return int(value) if value.is_integer() and abs(value) <= _EXACT_FLOAT_INT else value


def event_to_msg(
    event: Mapping[str, Any], *, check_identity: bool = True, idempotency_key: str | None = None
) -> EventMsg:
    """A v0.2 event as schnitzel_stream_msgs/Event (validated first)."""
    validate_event(event, 'event', check_identity=check_identity)
    for part, keys in (('bbox', BBOX_KEYS), ('zone', ('zone_id', 'inside'))):
        extra = set(event[part]) - set(keys)
        if extra:
            unexpected, carried = ', '.join(sorted(extra)), ', '.join(keys)
            raise ValueError(f'event.{part}: unexpected key(s) {unexpected} (Event.msg has {carried})')
    bbox = event['bbox']
    track_id = event.get('track_id')
    extras = {key: value for key, value in event.items() if key not in _STANDARD}
    key = idempotency_key or event_key_of(event)
    for name, text in (
        ('event_id', event['event_id']),
        ('site_id', event['site_id']),
        ('camera_id', event['camera_id']),
        ('event_type', event['event_type']),
        ('object_type', event.get('object_type') or ''),
        ('zone.zone_id', event['zone']['zone_id'] or ''),
        ('snapshot_path', event.get('snapshot_path') or ''),
        ('idempotency_key', key),
    ):
        check_ros_string(text, f'event.{name}')
    msg = EventMsg(
        header=Header(stamp=ts_to_stamp(event['ts'], 'event.ts'), frame_id=event['camera_id']),
        event_id=event['event_id'],
        idempotency_key=key,
        site_id=event['site_id'],
        camera_id=event['camera_id'],
        event_type=event['event_type'],
        object_type=event.get('object_type') or '',
        severity=event['severity'],
        has_track_id=track_id is not None,
        track_id=track_id if track_id is not None else 0,
        bbox=BoundingBox(**{k: _bbox_value(bbox[k], f'event.bbox.{k}') for k in BBOX_KEYS}),
        confidence=float(event['confidence']),
        zone_id=event['zone']['zone_id'] or '',
        zone_inside=event['zone']['inside'],
        snapshot_path=event.get('snapshot_path') or '',
        sensor_json=dumps_json(event['sensor'], 'event.sensor') if event.get('sensor') is not None else '',
        extra_json=dumps_json(extras, 'event') if extras else '',
    )
    return msg


def msg_to_event(msg: EventMsg) -> dict[str, Any]:
    """schnitzel_stream_msgs/Event -> canonical v0.2 dict (see module doc), validated.

    Identity is checked as a pair: event_id must be uuid5 of the message's idempotency_key.
    """
    if not isinstance(msg, EventMsg):
        raise TypeError(f'msg: expected schnitzel_stream_msgs/Event, got {type(msg).__name__}')
    event: dict[str, Any] = {
        'event_id': msg.event_id,
        'ts': stamp_to_ts(msg.header.stamp, 'header.stamp'),
        'site_id': msg.site_id,
        'camera_id': msg.camera_id,
        'event_type': msg.event_type,
        'object_type': msg.object_type or None,
        'severity': msg.severity,
        'track_id': msg.track_id if msg.has_track_id else None,
        'bbox': {k: _json_number(getattr(msg.bbox, k)) for k in BBOX_KEYS},
        'confidence': msg.confidence,
        'zone': {'zone_id': msg.zone_id, 'inside': msg.zone_inside},
        'snapshot_path': msg.snapshot_path or None,
        'sensor': None,
    }
    if msg.sensor_json:
        sensor = loads_json(msg.sensor_json, 'sensor_json')
        if not isinstance(sensor, dict):
            raise ValueError(f'sensor_json: expected a JSON object, got {type(sensor).__name__}')
        event['sensor'] = sensor
    if msg.extra_json:
        extras = loads_json(msg.extra_json, 'extra_json')
        if not isinstance(extras, dict):
            raise ValueError(f'extra_json: expected a JSON object, got {type(extras).__name__}')
        for key, value in extras.items():
            if key in _STANDARD:
                raise ValueError(f'extra_json.{key}: is a standard field and has its own message field')
            event[key] = value
    validate_event(event, 'msg', check_identity=False)
    if not msg.idempotency_key:
        raise ValueError('idempotency_key: must not be empty')
    if event_id_from_key(msg.idempotency_key) != msg.event_id:
        raise ValueError(f'event_id: {msg.event_id} is not uuid5 of idempotency_key {msg.idempotency_key!r}')
    return event


def packet_to_event_msg(packet: StreamPacket, *, check_identity: bool = True) -> EventMsg:
    """StreamPacket(kind=event) -> Event.msg (the packet's idempotency key travels along)."""
    event = packet_to_event(packet, check_identity=check_identity)
    key = packet.meta.get(MetaKey.IDEMPOTENCY_KEY)
    return event_to_msg(
        event, check_identity=check_identity, idempotency_key=key if isinstance(key, str) and key else None
    )


def event_msg_to_packet(msg: EventMsg, *, parent: StreamPacket | None = None) -> StreamPacket:
    """Event.msg -> StreamPacket(kind=event) with the message's idempotency key in meta."""
    event = msg_to_event(msg)
    meta = {MetaKey.IDEMPOTENCY_KEY: msg.idempotency_key}
    if parent is not None:
        return parent.child(kind=Kind.EVENT, payload=event, meta=meta, ts=event['ts'])
    return StreamPacket.new(Kind.EVENT, event['camera_id'], event, meta, ts=event['ts'])
