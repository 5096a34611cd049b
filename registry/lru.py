"""Which entries of a size-bounded cache go: the worker's blob cache (registry/services/staging.py)
and its base-model cache (registry/base_models.py) evict by this one rule."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

Entry = TypeVar("Entry")


def to_evict(entries: Iterable[tuple[float, int, Entry]], budget: int, *, keep: Callable[[Entry], bool]) -> list[Entry]:
    """From (last used, size, entry) triples, the entries to remove, least recently used first, until
    the rest fit in `budget` bytes; entries `keep` accepts stay even when the rest cannot fit."""
    ordered = sorted(entries, key=lambda e: e[0])
    total = sum(size for _, size, _ in ordered)
    chosen: list[Entry] = []
    for _, size, entry in ordered:
        if total <= budget:
            break
        if keep(entry):
            continue
        chosen.append(entry)
        total -= size
    return chosen
