"""Exact all-pairs mining: blocked inner products over the upper triangle.

The N x N similarity matrix is never held: it is computed one
`block_size x block_size` tile at a time with a BLAS sgemm (numpy's matmul),
thresholded, and dropped. Only tiles on or above the diagonal are computed, so
the work is N^2 / 2 dot products; memory is the input plus one tile
(`4 * block_size^2` bytes, 64 MiB at the default 4096) plus the pairs found;
`iter_exact_pairs` hands the pairs over in bounded chunks as they are found,
so a caller that writes them out never holds them all. Nothing is capped:
every pair with a score at or above the threshold is returned, which is what
makes the result equal to a brute-force reference.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from transforms.mine.pairs import Pairs, concat_pairs, empty_pairs, index_dtype


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array, got shape {x.shape}")
    return x


def _tile_hits(
    a: np.ndarray, b: np.ndarray, threshold: float, buf: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (row in a, row in b) and scores of `a @ b.T >= threshold`."""
    scores = buf[: a.shape[0] * b.shape[0]].reshape(a.shape[0], b.shape[0])
    np.matmul(a, b.T, out=scores)
    # flatnonzero is ~6x faster than 2-d nonzero on a sparse mask.
    flat = np.flatnonzero(scores >= threshold)
    rows, cols = np.divmod(flat, b.shape[0])
    return rows, cols, scores.reshape(-1)[flat]


def iter_exact_pairs(embeddings: np.ndarray, threshold: float, block_size: int = 4096,
                     max_pairs: int = 1 << 20) -> Iterator[Pairs]:
    """Every pair `i < j` with score >= threshold, in chunks, as the tiles find them.

    The upper-triangle tiles never find a pair twice, so each chunk can go
    out as soon as it is found and nothing is held across tiles: memory is
    one tile plus one chunk, even for a cluster of a million pairs per row
    block. A tile's hits are cut into strips of whole rows of at most
    `max_pairs` pairs (a strip is at least one row, so at most `block_size`
    pairs when `max_pairs` is smaller).

    Chunks come in tile order (row block, then column block) and each is
    sorted by `(i, j)`; indexes are `index_dtype(N)` (int32 below 2^31 rows).
    """
    x = _as_matrix(embeddings)
    if block_size < 1:
        raise ValueError("block_size must be positive")
    n = x.shape[0]
    dtype = index_dtype(n)
    bs = min(block_size, max(n, 1))
    buf = np.empty(bs * bs, dtype=np.float32)
    upper = np.triu(np.ones((bs, bs), dtype=bool), k=1) if n else None
    limit = max(1, int(max_pairs))
    for r0 in range(0, n, bs):
        rows_x = x[r0 : r0 + bs]
        for c0 in range(r0, n, bs):
            b = x[c0 : c0 + bs]
            scores = buf[: rows_x.shape[0] * b.shape[0]].reshape(rows_x.shape[0], b.shape[0])
            np.matmul(rows_x, b.T, out=scores)
            hit = scores >= threshold
            if c0 == r0:  # diagonal tile: keep the strict upper triangle only
                hit &= upper[: hit.shape[0], : hit.shape[1]]
            per_row = np.count_nonzero(hit, axis=1)
            if not per_row.any():
                continue
            for s0, s1 in _strips(per_row, limit):
                flat = np.flatnonzero(hit[s0:s1])
                if not flat.size:
                    continue
                rows, cols = np.divmod(flat, b.shape[0])
                yield Pairs((rows + (r0 + s0)).astype(dtype), (cols + c0).astype(dtype),
                            scores[s0:s1].reshape(-1)[flat])


def _strips(per_row: np.ndarray, limit: int) -> Iterator[tuple[int, int]]:
    """Row ranges `[s0, s1)` whose hit counts sum to at most `limit` (or are one row)."""
    ends = np.cumsum(per_row)
    s0, base = 0, 0
    while s0 < per_row.size:
        s1 = int(np.searchsorted(ends, base + limit, side="right"))
        s1 = max(s1, s0 + 1)
        yield s0, s1
        base = int(ends[s1 - 1])
        s0 = s1


def mine_exact(embeddings: np.ndarray, threshold: float, block_size: int = 4096) -> Pairs:
    """Every pair `i < j` with `embeddings[i] . embeddings[j] >= threshold`.

    Args:
        embeddings: `[N, d]` float32, L2-normalised (so dot = cosine).
        threshold: smallest score returned.
        block_size: rows per tile; memory for scores is `4 * block_size^2` bytes.

    Returns:
        All such pairs, sorted by `(i, j)`, with float32 scores and int64
        indexes. `iter_exact_pairs` gives the same pairs without holding them.
    """
    parts = list(iter_exact_pairs(embeddings, threshold, block_size))
    if not parts:
        return empty_pairs()
    out = concat_pairs(parts)
    del parts
    order = np.lexsort((out.j, out.i))  # tiles of one row block interleave in i
    return Pairs(out.i[order], out.j[order], out.score[order])


def mine_exact_cross(
    a: np.ndarray, b: np.ndarray, threshold: float, block_size: int = 4096
) -> Pairs:
    """Every `(i, j)` with `a[i] . b[j] >= threshold` (i indexes a, j indexes b).

    No ordering between i and j is implied; used for partitions against their
    neighbours and for measuring recall against all N.
    """
    a = _as_matrix(a)
    b = _as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
    bs = max(1, block_size)
    ra = min(bs, max(a.shape[0], 1))
    rb = min(bs, max(b.shape[0], 1))
    buf = np.empty(ra * rb, dtype=np.float32)
    parts: list[Pairs] = []
    for r0 in range(0, a.shape[0], ra):
        for c0 in range(0, b.shape[0], rb):
            rows, cols, scores = _tile_hits(a[r0 : r0 + ra], b[c0 : c0 + rb], threshold, buf)
            if rows.size:
                parts.append(Pairs(rows + r0, cols + c0, scores.copy()))
    out = concat_pairs(parts)
    order = np.lexsort((out.j, out.i))
    return Pairs(out.i[order], out.j[order], out.score[order])
