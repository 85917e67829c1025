"""Synthetic embeddings that look like a dedup workload, for tests and benchmarks.

Uniform random unit vectors have no pairs above 0.9 at all, so they test
nothing. These are clustered like real image embeddings (topics whose members
sit at cosine ~0.35-0.55 to each other) with planted variants: each planted row
is a copy of another row plus noise, at a cosine drawn from a range around the
near-duplicate threshold (some fall just below it) or above 0.999 (duplicates).
"""

from __future__ import annotations

import io
import tarfile

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered_embeddings(
    n: int,
    dim: int = 512,
    *,
    near_fraction: float = 0.08,
    duplicate_fraction: float = 0.02,
    near_cosine: tuple[float, float] = (0.86, 0.995),
    duplicate_cosine: tuple[float, float] = (0.9992, 0.99999),
    topic_size: int = 1000,
    seed: int = 0,
    chunk: int = 65536,
) -> np.ndarray:
    """`[n, dim]` float32 L2-normalised vectors with planted (near-)duplicates.

    Args:
        n: rows.
        dim: dimension.
        near_fraction: share of rows that are noisy variants of another row,
            at a cosine drawn uniformly from `near_cosine`.
        duplicate_fraction: share of rows that are near-identical variants, at
            a cosine from `duplicate_cosine`.
        topic_size: mean rows per topic cluster.
        seed: same seed, same array.
        chunk: rows generated at a time (bounds temporary memory).
    """
    rng = np.random.default_rng(seed)
    n_topics = max(1, n // topic_size)
    centers = _normalise(rng.standard_normal((n_topics, dim), dtype=np.float32))
    spread = rng.uniform(0.9, 1.4, n_topics).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(dim))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        topic = rng.integers(0, n_topics, e - s)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32)
        noise *= (spread[topic] * scale)[:, None]
        noise += centers[topic]
        x[s:e] = _normalise(noise)

    n_near = int(n * near_fraction)
    n_dup = int(n * duplicate_fraction)
    planted = rng.permutation(n)[: n_near + n_dup]
    is_planted = np.zeros(n, dtype=bool)
    is_planted[planted] = True
    originals = np.flatnonzero(~is_planted)
    if planted.size and originals.size:
        source = originals[rng.integers(0, originals.size, planted.size)]
        lo = np.r_[np.full(n_near, near_cosine[0]), np.full(n_dup, duplicate_cosine[0])]
        hi = np.r_[np.full(n_near, near_cosine[1]), np.full(n_dup, duplicate_cosine[1])]
        cosine = rng.uniform(lo, hi)
        # |noise| = eps gives cos(x, x + noise) ~= 1 / sqrt(1 + eps^2) in high dim.
        eps = np.sqrt(1.0 / cosine**2 - 1.0).astype(np.float32)
        for s in range(0, planted.size, chunk):
            e = min(planted.size, s + chunk)
            noise = rng.standard_normal((e - s, dim), dtype=np.float32)
            noise *= (eps[s:e] * scale)[:, None]
            noise += x[source[s:e]]
            x[planted[s:e]] = _normalise(noise)
    return x


def write_tar(path: str, members: list[tuple[str, bytes]]) -> str:
    """A tar shard with `members` (name, data) in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
