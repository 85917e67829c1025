"""The `Pairs` container every mining mode returns, and small helpers on it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Pairs(NamedTuple):
    """Pairs of row indices into one embeddings matrix, `i < j`, with their score.

    Sorted by `(i, j)` and free of repeats, so two runs over the same input
    compare equal element for element. Indexes are int32 where the matrix has
    fewer than 2^31 rows (`index_dtype`), else int64: 12 bytes a pair held.
    """

    i: np.ndarray  # int32 or int64
    j: np.ndarray  # int32 or int64
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


def index_dtype(n: int) -> type:
    """The narrowest index type for rows of an `n`-row matrix (int32 below 2^31 rows)."""
    return np.int32 if n < 2**31 else np.int64


def unique_keys(keys: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique `keys` and, for each, the score of its first occurrence.

    Leaner than `np.unique(return_index=True)`, which sorts a copy and keeps
    several index arrays: one stable argsort (8 bytes a pair, freed before
    the repeats are dropped), so the peak is about 28 bytes per input pair
    (12 held, the order, the 12 gathered through it).
    """
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    score = score[order]
    del order
    if keys.size < 2:
        return keys, score
    first = np.empty(keys.size, dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    if first.all():
        return keys, score
    return keys[first], score[first]


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
    keep = i != j
    lo = np.minimum(i[keep], j[keep])
    hi = np.maximum(i[keep], j[keep])
    keys, score = unique_keys(lo * np.int64(n) + hi, score[keep])
    dtype = index_dtype(n)
    return Pairs((keys // n).astype(dtype), (keys % n).astype(dtype), score)


def concat_pairs(parts: list[Pairs]) -> Pairs:
    if not parts:
        return empty_pairs()
    return Pairs(
        np.concatenate([p.i for p in parts]).astype(np.int64, copy=False),
        np.concatenate([p.j for p in parts]).astype(np.int64, copy=False),
        np.concatenate([p.score for p in parts]).astype(np.float32, copy=False),
    )
