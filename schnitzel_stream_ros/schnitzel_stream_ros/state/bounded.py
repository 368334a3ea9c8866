"""Keyed state with a bound: the oldest entries go first, and the plugin counts them.

A months-long run meets keys without end (track ids, zones x cameras, window keys); every stateful
plugin keeps its keyed state in insertion-ordered dicts and calls `evict_oldest` with its bound
(Plugin.state_max_keys, graph `config.state.max_keys`). Re-inserting a key on update (`touch`)
makes "oldest" mean "least recently updated".
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, MutableMapping
from typing import Any, TypeVar

K = TypeVar('K', bound=Hashable)


def touch(entries: MutableMapping[K, Any], key: K, value: Any) -> None:
    """Set `key` and make it the most recent entry."""
    entries.pop(key, None)
    entries[key] = value


def evict_oldest(entries: MutableMapping[K, Any], max_keys: int) -> list[K]:
    """Drop the oldest entries beyond `max_keys`; returns the keys dropped (oldest first)."""
    over = len(entries) - max(0, max_keys)
    if over <= 0:
        return []
    gone = list(itertools.islice(iter(entries), over))
    for key in gone:
        del entries[key]
    return gone
