"""The `Pairs` container every mining mode returns, and small helpers on it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Pairs(NamedTuple):
    """Pairs of row indices into one embeddings matrix, `i < j`, with their score.

    Sorted by `(i, j)` and free of repeats, so two runs over the same input
    compare equal element for element.
    """

    i: np.ndarray  # int64
    j: np.ndarray  # int64
    score: np.ndarray  # float32

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.i.shape[0])

    def keys(self, n: int) -> np.ndarray:
        """One int64 per pair (`i * n + j`), for set operations."""
        return self.i * np.int64(n) + self.j

    def above(self, threshold: float) -> Pairs:
        """The pairs whose score is at least `threshold`."""
        keep = self.score >= threshold
        return Pairs(self.i[keep], self.j[keep], self.score[keep])


def empty_pairs() -> Pairs:
    return Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))


def canonical_pairs(i: np.ndarray, j: np.ndarray, score: np.ndarray, n: int) -> Pairs:
    """Orders each pair as `i < j`, drops self pairs and repeats, sorts by `(i, j)`.

    When one pair was scored twice (found from both ends), the first score
    is kept; both come from the same float32 vectors, so they agree to
    rounding.
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    score = np.asarray(score, dtype=np.float32)
    lo = np.minimum(i, j)
    hi = np.maximum(i, j)
    keep = lo != hi
    lo, hi, score = lo[keep], hi[keep], score[keep]
    keys, first = np.unique(lo * np.int64(n) + hi, return_index=True)
    return Pairs(keys // n, keys % n, score[first])


def concat_pairs(parts: list[Pairs]) -> Pairs:
    if not parts:
        return empty_pairs()
    return Pairs(
        np.concatenate([p.i for p in parts]).astype(np.int64, copy=False),
        np.concatenate([p.j for p in parts]).astype(np.int64, copy=False),
        np.concatenate([p.score for p in parts]).astype(np.float32, copy=False),
    )
