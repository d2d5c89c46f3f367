"""Splitting a batch for services that cap entries per call: written once so every adapter splits
the same way (by bytes too, and by billed chunk: ``cloudq.util.packing``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (``size`` below 1 counts as 1), in order."""
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]
