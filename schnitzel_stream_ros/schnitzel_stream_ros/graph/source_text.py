"""Parse graph file text (YAML or JSON) into plain data plus the line of every element.

The bounded composer of `document_limits` keeps a mark on every node; we walk that node tree once to
record the line of each mapping key and sequence item by path (`('nodes', 3, 'config', 'prefix')`)
and the expanded size of each collection, and construct the data from the same tree — one parse,
refused early when the text breaks a DocumentLimits bound (alias bombs, deep nesting, huge
scalars). JSON is read by the json module (its number and string rules differ from YAML 1.1) and
its lines come from composing the same text as YAML, which is a superset for positions' sake.
Duplicate keys, which YAML and JSON both accept silently, are refused: in a graph file they are
always a mistake.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from schnitzel_stream_ros.document_limits import (
    GRAPH_DOCUMENT_LIMITS,
    DocumentError,
    DocumentLimits,
    LimitExceeded,
    compose_yaml,
    load_json,
)
from schnitzel_stream_ros.document_limits import parse_yaml as parse_bounded_yaml

#: Deep enough for nodes[i].config.<param> and edges[i].qos.<field>; deeper values use their parent's line.
_MAX_DEPTH = 5

Path = tuple[str | int, ...]


class SyntaxProblem(ValueError):
    """The text is not YAML/JSON (code 'syntax') or over a limit ('limit'); `line` 1-based, 0 unknown."""

    def __init__(self, message: str, line: int = 0, code: str = 'syntax') -> None:
        super().__init__(message)
        self.line = line
        self.code = code

    @classmethod
    def of(cls, exc: DocumentError) -> SyntaxProblem:
        return cls(str(exc), exc.line, 'limit' if isinstance(exc, LimitExceeded) else 'syntax')


@dataclass
class ParsedText:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    #: expanded size of each walked collection: (values, characters of scalar text), aliases included
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)
    duplicate_keys: list[tuple[Path, int]] = field(default_factory=list)

    def line_of(self, path: Path) -> int:
        """Line of `path`, or of its closest recorded ancestor (0 when none is known)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line:
                return line
        return 0

    def size_of(self, path: Path, value: Any) -> tuple[int, int]:
        """(values, characters) of the element at `path` whose data is `value`."""
        if path in self.sizes:
            return self.sizes[path]
        if isinstance(value, dict | list):  # not composed (JSON whose text is no YAML): count the data
            return _data_size(value)
        return 1, len(value) if isinstance(value, str) else 1


def _data_size(value: Any) -> tuple[int, int]:
    values = chars = 0
    pending = [value]
    while pending:
        item = pending.pop()
        values += 1
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        else:
            chars += len(item) if isinstance(item, str) else 1
    return values, chars


def _walk(node: yaml.Node, path: Path, parsed: ParsedText, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        return
    if not isinstance(node, yaml.ScalarNode):
        parsed.sizes[path] = (node.values, node.chars)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key == '<<':  # merge key: its entries are constructed into this mapping
                continue
            key_path = (*path, key)
            line = key_node.start_mark.line + 1
            if key in seen:
                parsed.duplicate_keys.append((key_path, line))
            seen.add(key)
            parsed.lines[key_path] = line
            _walk(value_node, key_path, parsed, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            parsed.lines[item_path] = item.start_mark.line + 1
            _walk(item, item_path, parsed, depth + 1)


def parse_yaml(text: str, limits: DocumentLimits = GRAPH_DOCUMENT_LIMITS) -> ParsedText:
    try:
        node, data = parse_bounded_yaml(text, limits)
    except DocumentError as exc:
        raise SyntaxProblem.of(exc) from exc
    parsed = ParsedText(data)
    if node is not None:
        _walk(node, (), parsed, 0)
    return parsed


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SyntaxProblem(f'duplicate key {key!r}')
        out[key] = value
    return out


_JSON_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def parse_json(text: str, limits: DocumentLimits = GRAPH_DOCUMENT_LIMITS) -> ParsedText:
    try:  # first as YAML (valid JSON has tabs only as whitespace, which YAML refuses in indentation):
        node = compose_yaml(text.replace('\t', ' '), limits)  # lines, sizes, and limits with a line
    except LimitExceeded as exc:
        raise SyntaxProblem.of(exc) from exc
    except DocumentError:
        node = None  # not YAML as well: positions unknown, errors then name line 1
    try:
        data = load_json(text, limits, _JSON_DECODER)
    except json.JSONDecodeError as exc:
        raise SyntaxProblem(f'not valid JSON: {exc.msg}', exc.lineno) from exc
    except DocumentError as exc:
        raise SyntaxProblem.of(exc) from exc
    parsed = ParsedText(data)
    if node is not None:
        _walk(node, (), parsed, 0)
    return parsed


def parse_text(text: str, *, json_format: bool, limits: DocumentLimits = GRAPH_DOCUMENT_LIMITS) -> ParsedText:
    return parse_json(text, limits) if json_format else parse_yaml(text, limits)


def iter_strings(value: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every string value inside `value` with its path (keys are not visited)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_strings(item, (*path, index))
