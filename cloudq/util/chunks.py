"""Splitting a batch for services that cap entries (and bytes) per call: written once so every
adapter splits the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (``size`` below 1 counts as 1), in order."""
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def sized_chunks(items: Iterable[T], size: int, max_bytes: int, weigh: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive groups of at most ``size`` items whose weights add up to at most ``max_bytes``;
    an item heavier than ``max_bytes`` goes alone (the service then rejects it, not its batch)."""
    size = max(1, size)
    group: list[T] = []
    total = 0
    for item in items:
        n = weigh(item)
        if group and (len(group) == size or total + n > max_bytes):
            yield group
            group, total = [], 0
        group.append(item)
        total += n
    if group:
        yield group
