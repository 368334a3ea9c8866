"""Strict JSON for packets: what leaves a process as JSON comes back exactly, or is refused.

Python's `json` module is lenient in ways that lose data silently: it writes NaN/Infinity (not
JSON, and most other parsers refuse them), turns int/float/bool/None dict keys into strings, and
reads duplicate keys by keeping the last one. Lanes that carry JSON (topics, the durable queue, HTTP)
must instead refuse such values with an error that names the offending field, so the mistake is
found where it was made (e.g. a numpy float32 confidence in a detector) and not at the backend.

Accepted: dict (str keys), list, tuple (sent as an array, read back as a list), str, int, float
(finite), bool, None, and subclasses of those (str enums, numpy.float64).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.document_limits import (
    PAYLOAD_JSON_LIMITS,
    DocumentError,
    DocumentLimits,
    check_json_data,
    json_text_limits,
    load_json,
)

#: Default upper bound of a packet's meta as UTF-8 JSON text (contract: meta stays small).
DEFAULT_META_LIMIT_BYTES = 64 * 1024

# Largest bit length that always converts to text under the interpreter's digit limit
# (sys.int_info.default_max_str_digits = 4300 digits ~ 14284 bits); bigger ints are checked exactly.
_SAFE_INT_BITS = 14_000

# One encoder for all calls: json.dumps(**options) builds a new JSONEncoder every time (~3 µs).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(',', ':'))
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(',', ':'))


def child_field(field: str, key: object) -> str:
    """`meta` + `frame_idx` -> `meta.frame_idx`; keys that are not identifiers are quoted."""
    if isinstance(key, int):
        return f'{field}[{key}]'
    if isinstance(key, str) and key.isidentifier():
        return f'{field}.{key}'
    return f'{field}[{key!r}]'


def _plainly_strict(value: Any) -> bool:
    """Fast check: True when `value` is strict JSON built from the exact built-in types only.

    Loops instead of recursing and keeps no field paths: this runs on every JSON payload. False
    means "look closer" (the path-tracking check decides and names the field), not "refuse".
    """
    pending = [value]
    while pending:
        container = pending.pop()
        kind = type(container)
        if kind is dict or isinstance(container, dict):
            for key in container:
                if type(key) is not str:
                    return False
            items = container.values()
        elif kind is list or kind is tuple:
            items = container
        else:
            pending.append(container)  # a scalar at the top: checked below
            items = pending
            pending = []
        for item in items:
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is int:
                if item.bit_length() > _SAFE_INT_BITS:
                    return False
            elif kind is float:
                if item - item != 0.0:  # NaN or infinity
                    return False
            elif kind is dict or kind is list or kind is tuple:
                pending.append(item)
            else:
                return False
    return True


def check_json_value(value: Any, field: str) -> None:
    """Raise TypeError/ValueError naming the first part of `value` that is not strict JSON."""
    if _plainly_strict(value):
        return
    _check_json_value(value, field)


def _check_json_value(value: Any, field: str) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f'{field}: {value!r} is not a JSON number (NaN and Infinity are refused)')
        return
    if kind is int:
        if value.bit_length() > _SAFE_INT_BITS:
            _check_big_int(value, field)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f'{child_field(field, key)}: JSON object keys must be str, got {type(key).__name__}'
                )
            _check_json_value(item, child_field(field, key))
        return
    if kind is list or kind is tuple:
        for index, item in enumerate(value):
            _check_json_value(item, child_field(field, index))
        return
    # subclasses of the scalar types (StrEnum, IntEnum, numpy.float64) serialise as their base type
    if isinstance(value, str):
        return
    if isinstance(value, float):
        _check_json_value(float(value), field)
        return
    if isinstance(value, int):
        _check_json_value(int(value), field)
        return
    if isinstance(value, (list, tuple)):
        _check_json_value(list(value), field)
        return
    hint = ''
    if type(value).__module__ == 'numpy':
        hint = ' (convert numpy values with .item() or .tolist())'
    raise TypeError(f'{field}: {type(value).__name__} is not a JSON type{hint}')


def _check_big_int(value: int, field: str) -> None:
    try:
        str(value)
    except ValueError as exc:
        raise ValueError(
            f'{field}: integer with more than {sys.get_int_max_str_digits()} digits cannot be written as JSON'
        ) from exc


def dumps_json(value: Any, field: str) -> str:
    """Strict JSON text of `value` (compact, UTF-8 characters kept as is).

    Strings holding lone surrogates cannot be sent as UTF-8; for those (only) the text is written
    with \\u escapes, which read back to the same Python string.
    """
    try:
        check_json_value(value, field)
        text = _ENCODER.encode(value)
    except RecursionError:
        raise ValueError(f'{field}: nested too deeply to write as JSON') from None
    if not text.isascii():
        try:
            text.encode('utf-8')
        except UnicodeEncodeError:
            text = _ASCII_ENCODER.encode(value)
    return text


class _StrictJsonError(ValueError):
    """Raised by the parser hooks; loads_json adds the field name."""


def _refuse_constant(name: str) -> Any:
    raise _StrictJsonError(f'{name} is not JSON')


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _StrictJsonError(f'number {text} does not fit a float (64-bit)')
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _StrictJsonError(f'duplicate key {key!r} in a JSON object')
            seen.add(key)
    return result


_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
)


def loads_json(text: str, field: str, limits: DocumentLimits = PAYLOAD_JSON_LIMITS) -> Any:
    """Parse strict JSON: NaN/Infinity, overflowing numbers and duplicate keys are refused, and so is
    text over `limits` (size, nesting depth; see document_limits)."""
    if not isinstance(text, str):
        raise TypeError(f'{field}: expected JSON text (str), got {type(text).__name__}')
    try:
        return load_json(text, limits, _DECODER)
    except _StrictJsonError as exc:
        raise ValueError(f'{field}: {exc}') from None
    except json.JSONDecodeError as exc:
        raise ValueError(f'{field}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})') from None
    except DocumentError as exc:
        raise ValueError(f'{field}: {exc}') from None


def check_json_text(text: str, field: str, limits: DocumentLimits = PAYLOAD_JSON_LIMITS) -> str:
    """The size of JSON text about to be sent, within the receiver's `limits`: refused here, where it
    was made, not by every receiver."""
    if not utf8_size_at_most(text, limits.max_bytes):
        raise ValueError(f'{field}: {len(text.encode("utf-8", "surrogatepass")):,} bytes as JSON: over the '
                         f'limit of {limits.max_bytes:,} bytes (send bulk data as bytes or a blob ref)')
    return text


def check_json_depth(value: Any, text: str, field: str, limits: DocumentLimits = PAYLOAD_JSON_LIMITS) -> str:
    """`text` (the JSON of `value`) within the size and depth of `limits`, checked before sending."""
    check_json_text(text, field, limits)
    try:
        check_json_data(value, limits, len(text), text.count('[') + text.count('{'))
    except DocumentError as exc:
        raise ValueError(f'{field}: {exc}') from None
    return text


def check_ros_string(value: str, field: str) -> str:
    """Text for a ROS `string` field: it is sent as NUL-terminated UTF-8, so a NUL would cut it
    short silently and a lone surrogate would fail at publish time; both are refused here."""
    if '\x00' in value:
        raise ValueError(f'{field}: contains a NUL character, which ROS string fields cannot carry')
    if not value.isascii():
        try:
            value.encode('utf-8')
        except UnicodeEncodeError:
            raise ValueError(f'{field}: is not valid UTF-8 text (lone surrogate)') from None
    return value


def utf8_size_at_most(text: str, limit: int) -> bool:
    """len(text.encode()) <= limit, without encoding when the character count already decides."""
    if len(text) > limit:
        return False
    if len(text) * 4 <= limit or text.isascii():
        return True
    return len(text.encode('utf-8', 'surrogatepass')) <= limit


def encode_meta(meta: Mapping[str, Any], limit_bytes: int = DEFAULT_META_LIMIT_BYTES) -> str:
    """Packet meta -> JSON object text, refused when not strict JSON or larger than `limit_bytes`."""
    if not isinstance(meta, dict):
        if not isinstance(meta, Mapping):
            raise TypeError(f'meta: expected a mapping, got {type(meta).__name__}')
        meta = dict(meta)
    if not meta:
        return '{}'
    text = dumps_json(meta, 'meta')
    if not utf8_size_at_most(text, limit_bytes):
        raise ValueError(
            f'meta: {len(text.encode("utf-8"))} bytes as JSON, over the limit of {limit_bytes} bytes '
            '(meta is for small facts; put bulk data in the payload or a blob ref)'
        )
    return check_json_depth(meta, text, 'meta', json_text_limits(limit_bytes))


def decode_meta(text: str, limit_bytes: int = DEFAULT_META_LIMIT_BYTES, field: str = 'meta_json') -> dict:
    """JSON object text -> meta dict; empty text is an empty meta. Same limit as on the way out."""
    if text in ('', '{}'):
        return {}
    if not utf8_size_at_most(text, limit_bytes):
        raise ValueError(f'{field}: larger than the meta limit of {limit_bytes} bytes')
    meta = loads_json(text, field, json_text_limits(limit_bytes))
    if not isinstance(meta, dict):
        raise ValueError(f'{field}: expected a JSON object, got {type(meta).__name__}')
    return meta
