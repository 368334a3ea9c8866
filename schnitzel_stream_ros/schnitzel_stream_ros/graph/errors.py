"""Graph errors: one line each, naming the place (`file:line: node 'x': ...`).

The loader and the validator collect these instead of raising on the first problem, so a user sees
every mistake of a graph file in one run. `code` is a stable short name for tools and tests; the
message is for people.
"""
from __future__ import annotations

from dataclasses import dataclass

from schnitzel_stream_ros.graph.model import Position


@dataclass(frozen=True)
class GraphError:
    position: Position
    message: str
    subject: str = ''  # "node 'x'", "edge a->b", "" for file-level problems
    code: str = 'invalid'

    def __str__(self) -> str:
        where = f'{self.subject}: ' if self.subject else ''
        return f'{self.position}: {where}{self.message}'

    def to_json(self) -> dict[str, object]:
        return {
            'file': self.position.file,
            'line': self.position.line,
            'subject': self.subject,
            'code': self.code,
            'message': self.message,
            'text': str(self),
        }


@dataclass(frozen=True)
class GraphWarning(GraphError):
    """Something the graph says that is ignored rather than refused; the graph still runs.

    Today: a config key that a node naming its plugin by an upstream path does not use (upstream
    ignored such keys). Printed as `file:line: warning: node 'x': ...`.
    """

    def __str__(self) -> str:
        where = f'{self.subject}: ' if self.subject else ''
        return f'{self.position}: warning: {where}{self.message}'


def node_subject(node_id: str) -> str:
    return f'node {node_id!r}'


class GraphInvalid(ValueError):
    """Raised by the strict entry points (`load_and_validate`) when a graph has errors."""

    def __init__(self, errors: list[GraphError]) -> None:
        self.errors = list(errors)
        super().__init__('\n'.join(str(e) for e in self.errors))
