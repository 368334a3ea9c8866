"""A detector's class map: model class id -> object type, event type and severity.

Detectors put `event_type` and `severity` on every detection (not only `object_type`), because
upstream's protocol v0.2 event builder requires all three and upstream detectors supplied them.
The defaults per object type are the contract's taxonomy (codec/event_protocol.CLASS_TAXONOMY,
the one table of the suite); a graph's `class_map` may override them per model class.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schnitzel_stream_ros.codec.event_protocol import CLASS_TAXONOMY, Severity

SEVERITIES = tuple(s.value for s in Severity)


@dataclass(frozen=True)
class EventClass:
    object_type: str
    event_type: str
    severity: str


def parse_class_map(raw: Mapping[Any, Any], where: str) -> dict[int, EventClass]:
    """`{class_id: OBJECT_TYPE | {object_type, event_type?, severity?}}` -> {id: EventClass}.

    Keys may be ints or digit strings (JSON object keys are strings). `where` names the parameter
    in errors, e.g. "node 'det': parameter 'class_map'".
    """
    out: dict[int, EventClass] = {}
    for key, value in raw.items():
        try:
            class_id = int(key)
        except (TypeError, ValueError):
            raise ValueError(f'{where}: key {key!r} is not a class id (integer)') from None
        entry = {'object_type': value} if isinstance(value, str) else value
        if not isinstance(entry, Mapping) or not isinstance(entry.get('object_type'), str):
            raise ValueError(f'{where}[{key}]: expected an object type name or '
                             f'{{object_type, event_type, severity}}, got {value!r}')
        object_type = entry['object_type'].strip().upper()
        rule = CLASS_TAXONOMY.get(object_type)
        event_type = entry.get('event_type') or (rule.event_type if rule else None)
        severity = entry.get('severity') or (rule.severity if rule else None)
        if event_type is None or severity is None:
            raise ValueError(f'{where}[{key}]: object type {object_type!r} is not in the taxonomy '
                             f'({sorted(CLASS_TAXONOMY)}); give event_type and severity explicitly')
        if severity not in SEVERITIES:
            raise ValueError(f'{where}[{key}]: severity {severity!r} is not one of {list(SEVERITIES)}')
        out[class_id] = EventClass(object_type, str(event_type), str(severity))
    return out
