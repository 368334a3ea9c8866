"""StaticSource: a finite list of packets from the graph file (upstream dev node, same keys)."""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket, parse_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

_ITEM_KEYS = ('kind', 'source_id', 'payload', 'ts', 'meta')
#: packets one StaticSource may list: it is a test and demo source, and every packet is held in
#: memory and checked at validation time (docs/graph-format.md, "Limits")
MAX_PACKETS = 10_000


class StaticSource(Plugin):
    """Emit the packets listed in config, in order, then end."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out'),)
    PARAMS = (
        Param('packets', list, [], 'packets to emit: {kind, source_id, payload, ts, meta} each'),
        Param('kind', str, 'raw', 'kind of packets that name none'),
        Param('source_id', str, '', 'source_id of packets that name none (default: the node id)'),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        """Each packet item must be a mapping of known keys with usable values."""
        if len(params['packets']) > MAX_PACKETS:
            return [f"parameter 'packets': {len(params['packets']):,} packets: over the limit of "
                    f'{MAX_PACKETS:,} packets of a StaticSource']
        problems = []
        for index, item in enumerate(params['packets']):
            where = f'parameter \'packets\'[{index}]'
            if not isinstance(item, dict):
                problems.append(f'{where}: expected a mapping, got {type(item).__name__}')
                continue
            unknown = sorted(set(item) - set(_ITEM_KEYS))
            if unknown:
                problems.append(f'{where}: unknown key {unknown[0]!r} (known: {", ".join(_ITEM_KEYS)})')
            for key in ('kind', 'source_id'):
                if key in item and (not isinstance(item[key], str) or not item[key]):
                    problems.append(f'{where}.{key}: expected a non-empty string')
            if item.get('ts') is not None:
                try:
                    parse_ts(item['ts'])
                except ValueError as exc:
                    problems.append(f'{where}.{exc}')
            if 'meta' in item and not isinstance(item['meta'], dict):
                problems.append(f'{where}.meta: expected a mapping')
        return problems

    @classmethod
    def ports_for(cls, params: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """The output carries exactly the kinds listed; JSON-portable when every payload is JSON."""
        items = [i for i in params.get('packets') or [] if isinstance(i, dict)]
        default_kind = params.get('kind') or 'raw'
        kinds = {str(i.get('kind') or default_kind) for i in items} or {default_kind}
        try:
            json.dumps([[i.get('payload'), i.get('meta')] for i in items], allow_nan=False)
            profile = PayloadProfile.JSON_PORTABLE
        except (TypeError, ValueError):
            profile = PayloadProfile.INPROC_ANY
        return (), (Port('out', frozenset(kinds), profile),)

    def produce(self) -> Iterator[StreamPacket]:
        default_kind = self.params.get('kind') or 'raw'
        default_source = self.params.get('source_id') or self.node_id
        for item in self.params.get('packets') or []:
            ts = item.get('ts')
            yield StreamPacket.new(
                kind=str(item.get('kind') or default_kind),
                source_id=str(item.get('source_id') or default_source),
                payload=item.get('payload'),
                meta=dict(item.get('meta') or {}),
                ts=ts if isinstance(ts, str) and ts.strip() else None,
            )
