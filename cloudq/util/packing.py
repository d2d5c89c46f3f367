"""Batch boundaries for services that bill by payload chunk (SQS: each 64 KiB of a request's
messages is one billed request): where to cut a sequence of sized items into requests so that
the billed units are fewest, then the requests.

Filling each request to its entry cap is not that: ten 20 KB messages (200 KB) bill 4 units, nine
(180 KB) bill 3, so sending by nines costs 0.33 units per message instead of 0.40. Order is kept
(a FIFO group's messages stay in sequence, and no request reaches past a later one): the cuts
are the cheapest among order-keeping splits, found by dynamic programming over at most
``max_entries`` candidates per item (O(n * max_entries)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def billed_units(payload: int, chunk_bytes: int) -> int:
    """Units one request with ``payload`` bytes bills: one per started chunk, at least one."""
    return max(1, -(-payload // chunk_bytes))


def billed_batches(
    items: Sequence[T], max_entries: int, max_bytes: int, chunk_bytes: int, weigh: Callable[[T], int]
) -> list[list[T]]:
    """Consecutive groups of at most ``max_entries`` items weighing at most ``max_bytes`` together
    whose billed units (``billed_units`` of each group's weight) add up to the fewest, and among
    those the fewest groups. An item heavier than ``max_bytes`` goes alone (the service then
    rejects it, not a batch of others)."""
    n = len(items)
    if n == 0:
        return []
    max_entries = max(1, max_entries)
    weights = [weigh(item) for item in items]
    # best[i]: (units, requests) of the cheapest split of items[:i]; cut[i]: where its last group starts
    best: list[tuple[int, int]] = [(0, 0)] + [(0, 0)] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        total = 0
        chosen: tuple[int, int] | None = None
        for start in range(end - 1, max(0, end - max_entries) - 1, -1):
            total += weights[start]
            if total > max_bytes and start < end - 1:
                break
            units, requests = best[start]
            cost = (units + billed_units(total, chunk_bytes), requests + 1)
            if chosen is None or cost < chosen:
                chosen, cut[end] = cost, start
        assert chosen is not None
        best[end] = chosen
    groups: list[list[T]] = []
    end = n
    while end > 0:
        groups.append(list(items[cut[end] : end]))
        end = cut[end]
    groups.reverse()
    return groups
