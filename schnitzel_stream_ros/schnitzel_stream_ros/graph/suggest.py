""""Did you mean" hints for misspelt keys, parameters, ports and plugin names."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

#: choices compared at most (after dropping those whose length alone rules them out): difflib costs
#: a few microseconds per choice, and a hostile graph can name thousands of nodes
MAX_CHOICES = 500
_CUTOFF = 0.6


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or ''."""
    size = len(word)
    # difflib's ratio is at most 2*min(a, b)/(a + b): choices failing that bound can never match
    possible = [c for c in map(str, choices) if 2 * min(len(c), size) >= _CUTOFF * (len(c) + size)]
    if len(possible) > MAX_CHOICES:
        return ''
    close = difflib.get_close_matches(word, possible, n=1, cutoff=_CUTOFF)
    return f' (did you mean {close[0]!r}?)' if close else ''
