"""Parse graph file text (YAML or JSON) into plain data plus the line of every element.

PyYAML's composer keeps a mark on every node; we walk that node tree once to record the line of
each mapping key and sequence item by path (`('nodes', 3, 'config', 'prefix')`), and construct the
data from the same tree — one parse. JSON is read by the json module (its number and string rules
differ from YAML 1.1) and its lines come from composing the same text as YAML, which is a superset
for positions' sake. Duplicate keys, which YAML and JSON both accept silently, are refused: in a
graph file they are always a mistake.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

_YamlLoader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
#: Deep enough for nodes[i].config.<param> and edges[i].qos.<field>; deeper values use their parent's line.
_MAX_DEPTH = 5

Path = tuple[str | int, ...]


class SyntaxProblem(ValueError):
    """The text is not YAML/JSON; `line` is 1-based (0 when unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class ParsedText:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    duplicate_keys: list[tuple[Path, int]] = field(default_factory=list)

    def line_of(self, path: Path) -> int:
        """Line of `path`, or of its closest recorded ancestor (0 when none is known)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line:
                return line
        return 0


def _walk(node: yaml.Node, path: Path, parsed: ParsedText, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        return
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


def _compose(text: str) -> yaml.Node | None:
    loader = _YamlLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> SyntaxProblem:
    mark = getattr(exc, 'problem_mark', None)
    problem = getattr(exc, 'problem', None) or str(exc)
    return SyntaxProblem(f'not valid YAML: {problem}', mark.line + 1 if mark else 0)


def parse_yaml(text: str) -> ParsedText:
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc) from exc
    finally:
        loader.dispose()
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


def parse_json(text: str) -> ParsedText:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise SyntaxProblem(f'not valid JSON: {exc.msg}', exc.lineno) from exc
    parsed = ParsedText(data)
    try:  # valid JSON has tabs only as whitespace, which YAML would refuse in indentation
        node = _compose(text.replace('\t', ' '))
    except yaml.YAMLError:
        node = None  # positions unknown; errors then name the file only
    if node is not None:
        _walk(node, (), parsed, 0)
    return parsed


def parse_text(text: str, *, json_format: bool) -> ParsedText:
    return parse_json(text) if json_format else parse_yaml(text)


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
