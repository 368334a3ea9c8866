"""Text lines from a device -> reading fields: the one place that knows serial line formats.

Cheap distance sensors, Arduinos and industrial transmitters print one reading per line in one of
four shapes, and each shape is a parser here, chosen by configuration rather than code:
- `number`: the line is a number (`123.4`)                 -> {value_field: 123.4}
- `regex`:  named groups pick the fields (`D=(?P<distance_cm>[0-9.]+)cm`)
- `json`:   the line is a JSON object; `field_map` {name: "dotted.path"} picks fields (else all)
- `csv`:    `fields` names the columns in order (empty name = skip the column), `delimiter`
Text that reads as a number becomes an int or float, so fusion can interpolate it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from schnitzel_stream_ros.document_limits import DocumentError, json_text_limits, load_json

FORMATS = ('number', 'regex', 'json', 'csv')


#: one line as JSON: lines are short (serial sources cap them), nesting is what needs a bound
_LINE_LIMITS = json_text_limits(1024 * 1024)


class LineParseError(ValueError):
    """One line could not be parsed (the source counts it and goes on)."""


class ParserConfigError(ValueError):
    """The parser configuration is wrong (refused at setup; names the parameter)."""


def to_number(text: str) -> int | float | str:
    """'12' -> 12, '1.5' -> 1.5, anything else (also 'nan', 'inf') stays text."""
    stripped = text.strip()
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        number = float(stripped)
    except ValueError:
        return stripped
    return number if math.isfinite(number) else stripped


class LineParser:
    """Parses one line into a dict of fields; raises LineParseError for a line that does not fit."""

    def __init__(
        self,
        kind: str = 'number',
        *,
        value_field: str = 'value',
        pattern: str = '',
        fields: Sequence[str] = (),
        delimiter: str = ',',
        field_map: Mapping[str, str] | None = None,
    ) -> None:
        if kind not in FORMATS:
            raise ParserConfigError(f'parameter parser: {kind!r} is not one of {list(FORMATS)}')
        self.kind = kind
        self.value_field = value_field
        self.field_map = dict(field_map or {})
        self.fields = list(fields)
        self.delimiter = delimiter
        self._regex: re.Pattern[str] | None = None
        if kind == 'number' and not value_field:
            raise ParserConfigError('parameter value_field: must not be empty with parser: number')
        if kind == 'regex':
            if not pattern:
                raise ParserConfigError('parameter pattern: required with parser: regex')
            try:
                self._regex = re.compile(pattern)
            except re.error as exc:
                raise ParserConfigError(f'parameter pattern: not a regular expression: {exc}') from None
            if not self._regex.groupindex:
                raise ParserConfigError(
                    'parameter pattern: needs named groups, e.g. (?P<distance_cm>[0-9.]+)'
                )
        if kind == 'csv':
            if not any(self.fields):
                raise ParserConfigError('parameter fields: required with parser: csv (column names in order)')
            if not delimiter:
                raise ParserConfigError('parameter delimiter: must not be empty')
        for name, path in self.field_map.items():
            if not isinstance(path, str) or not path:
                raise ParserConfigError(f'parameter field_map.{name}: expected a dotted path, got {path!r}')

    def parse(self, line: str) -> dict[str, Any]:
        text = line.strip()
        if not text:
            raise LineParseError('empty line')
        if self.kind == 'number':
            value = to_number(text)
            if isinstance(value, str):
                raise LineParseError(f'not a number: {text[:80]!r}')
            return {self.value_field: value}
        if self.kind == 'regex':
            assert self._regex is not None
            match = self._regex.search(text)
            if match is None:
                raise LineParseError(f'does not match the pattern: {text[:80]!r}')
            return {k: to_number(v) for k, v in match.groupdict().items() if v is not None}
        if self.kind == 'json':
            return self._parse_json(text)
        return self._parse_csv(text)

    def _parse_json(self, text: str) -> dict[str, Any]:
        try:
            data = load_json(text, _LINE_LIMITS)
        except DocumentError as exc:  # a device (or whoever holds the line) sent a hostile document
            raise LineParseError(f'refused: {exc}: {text[:80]!r}') from None
        except ValueError:
            raise LineParseError(f'not JSON: {text[:80]!r}') from None
        if not isinstance(data, dict):
            raise LineParseError(f'not a JSON object: {text[:80]!r}')
        if not self.field_map:
            return data
        out: dict[str, Any] = {}
        for name, path in self.field_map.items():
            value: Any = data
            for part in path.split('.'):
                if not isinstance(value, dict) or part not in value:
                    raise LineParseError(f'field {path!r} missing in {text[:80]!r}')
                value = value[part]
            out[name] = to_number(value) if isinstance(value, str) else value
        return out

    def _parse_csv(self, text: str) -> dict[str, Any]:
        columns = text.split(self.delimiter)
        if len(columns) < len(self.fields):
            raise LineParseError(f'{len(columns)} columns, expected {len(self.fields)}: {text[:80]!r}')
        return {name: to_number(col) for name, col in zip(self.fields, columns, strict=False) if name}
