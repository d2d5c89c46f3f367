"""Batch boundaries by billed chunk (cloudq.util.packing): fewest billed units, then fewest requests,
order kept, within the entry and byte caps."""

from __future__ import annotations

import itertools
import random

from cloudq.util.packing import billed_batches, billed_units

CHUNK = 64


def cost(groups: list[list[int]]) -> tuple[int, int]:
    return sum(billed_units(sum(g), CHUNK) for g in groups), len(groups)


def brute_force(weights: list[int], max_entries: int, max_bytes: int) -> tuple[int, int]:
    """The cheapest order-keeping split, by trying every set of cut points."""
    best = None
    n = len(weights)
    for cuts in itertools.product((False, True), repeat=n - 1):
        groups, group = [], [weights[0]]
        for w, cut in zip(weights[1:], cuts, strict=True):
            if cut:
                groups.append(group)
                group = []
            group.append(w)
        groups.append(group)
        if any(len(g) > max_entries or (len(g) > 1 and sum(g) > max_bytes) for g in groups):
            continue
        c = cost(groups)
        best = c if best is None or c < best else best
    assert best is not None
    return best


def test_units_are_started_chunks_and_at_least_one() -> None:
    assert [billed_units(p, 64) for p in (0, 1, 64, 65, 128, 129)] == [1, 1, 1, 2, 2, 3]


def test_twenty_kb_messages_go_by_nines_not_tens() -> None:
    weights = [20_000] * 30
    groups = billed_batches(weights, 10, 1_048_576, 65_536, lambda w: w)
    assert [len(g) for g in groups] == [9, 9, 9, 3]
    assert sum(billed_units(sum(g), 65_536) for g in groups) == 10  # tens would bill 12


def test_small_messages_fill_each_request_to_ten() -> None:
    groups = billed_batches(list(range(25)), 10, 1_048_576, 65_536, lambda _: 1_000)
    assert groups == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


def test_caps_hold_and_a_heavy_item_goes_alone() -> None:
    weights = [30, 30, 200, 10, 10, 10]
    groups = billed_batches(weights, 2, 100, CHUNK, lambda w: w)
    assert [w for g in groups for w in g] == weights
    assert [200] in groups
    assert all(len(g) <= 2 and (len(g) == 1 or sum(g) <= 100) for g in groups)
    assert billed_batches([], 10, 100, CHUNK, lambda w: w) == []


def test_matches_the_cheapest_split_of_random_sequences() -> None:
    rng = random.Random(15)
    for _ in range(300):
        weights = [rng.choice((1, 5, 20, 33, 40, 64, 70, 130)) for _ in range(rng.randint(1, 9))]
        max_entries, max_bytes = rng.randint(1, 5), rng.choice((64, 150, 400))
        groups = billed_batches(weights, max_entries, max_bytes, CHUNK, lambda w: w)
        assert [w for g in groups for w in g] == weights
        assert cost(groups) == brute_force(weights, max_entries, max_bytes), weights
