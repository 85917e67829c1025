"""The approximate search's recall: the share of a sample's exact pairs it found.

A random sample of query rows is searched exactly against all N rows; recall
is the share of those pairs that the search found, with a Wilson lower bound
so that a small sample cannot look better than it is.

That exact search is a fixed cost of every approximate run, a night's
included, so when the partitions are known it skips, without losing a pair,
the rows that cannot reach the threshold (`angle_bound.py`): a row whose angle
to its own centroid differs from the query's angle to that centroid by more
than the threshold's angle cannot pair with the query. With each partition's
rows sorted by their angle to its centroid, the rows a query may reach form one
run; the queries that reach a partition are multiplied against the union of
their runs. The pairs are those of the unpruned search, scored by the same
float32 products. Data whose partitions do not separate (nothing would be
skipped) take the unpruned search.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from transforms.mine.angle_bound import angles, probe_scores, reach
from transforms.mine.exact import mine_exact_cross
from transforms.mine.pairs import Pairs, canonical_pairs, concat_pairs, empty_pairs
from transforms.mine.threads import map_in_threads

# Above this share of the unpruned products, sorting and gathering by partition
# costs more than it saves.
MAX_PRUNED_SHARE = 0.5


def measure_recall(
    x: np.ndarray, found: Pairs, threshold: float, sample_size: int, *, seed: int = 0,
    block_size: int = 4096, centroids: np.ndarray | None = None,
    labels: np.ndarray | None = None, label_scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Recall of `found` on the exact pairs of a random sample of query rows.

    Args:
        x: `[N, d]` float32, L2-normalised.
        found: the pairs the approximate search found.
        threshold: the search's threshold.
        sample_size: query rows searched exactly against all N.
        seed: sampling seed; same seed, same sample.
        block_size: most rows multiplied at once.
        centroids, labels: the partitions (`[nlist, d]` unit centroids and each row's
            own partition), which let the exact search skip rows it cannot pair.
        label_scores: each row's score against its own centroid, where known
            (`PartitionIndex.scores[:, 0]`); computed otherwise.
    """
    return sampled_recall(x, found.keys(x.shape[0]), threshold, sample_size, seed=seed,
                          block_size=block_size, centroids=centroids, labels=labels,
                          label_scores=label_scores)


def sampled_recall(x: np.ndarray, found_keys: np.ndarray, threshold: float, sample_size: int,
                   *, seed: int, block_size: int, rows: np.ndarray | None = None,
                   centroids: np.ndarray | None = None, labels: np.ndarray | None = None,
                   label_scores: np.ndarray | None = None) -> dict[str, Any]:
    """`measure_recall` on the pairs' keys (`i * N + j`, sorted, unique); the queries
    are sampled from `rows` (default: every row)."""
    n = x.shape[0]
    pool = n if rows is None else rows.size
    sample_size = min(sample_size, pool)
    if sample_size <= 0:
        return {"recall_sampled": None, "recall_sample_size": 0, "recall_exact_pairs": 0,
                "recall_found_pairs": 0, "recall_ci95_low": None}
    rng = np.random.default_rng(seed + 1)
    queries = np.sort(rng.choice(pool, sample_size, replace=False))
    if rows is not None:
        queries = rows[queries]
    hits, share = exact_hits(x, queries, threshold, block_size, centroids, labels,
                             label_scores)
    exact = canonical_pairs(queries[hits.i], hits.j, hits.score, n)
    exact_keys = exact.keys(n)
    pos = np.searchsorted(found_keys, exact_keys)
    pos[pos >= found_keys.size] = 0
    present = found_keys.size > 0
    hit = (found_keys[pos] == exact_keys) if present else np.zeros(exact_keys.size, bool)
    total = int(exact_keys.size)
    got = int(hit.sum())
    return {"recall_sampled": got / total if total else None,
            "recall_sample_size": int(sample_size), "recall_exact_pairs": total,
            "recall_found_pairs": got, "recall_ci95_low": wilson_low(got, total),
            "recall_search_share": share}


def wilson_low(got: int, total: int, z: float = 1.96) -> float | None:
    """The lower end of the Wilson score interval of `got / total`."""
    if not total:
        return None
    p = got / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre - margin) / (1 + z * z / total)


def exact_hits(x: np.ndarray, queries: np.ndarray, threshold: float, block_size: int,
               centroids: np.ndarray | None = None, labels: np.ndarray | None = None,
               label_scores: np.ndarray | None = None) -> tuple[Pairs, float]:
    """`(hits, share)`: every `(i, j)` with `x[queries[i]] . x[j] >= threshold`, as
    `mine_exact_cross(x[queries], x)` finds them, and the share of its products
    computed (1.0 unpruned). Pruned through the partitions when they are given and
    skip at least half the products."""
    xq = np.ascontiguousarray(x[queries], dtype=np.float32)
    if centroids is None or labels is None or threshold <= 0 or not len(x):
        return mine_exact_cross(xq, x, threshold, block_size), 1.0
    gap = reach(threshold, x.shape[1])
    nlist = centroids.shape[0]
    order, offsets, row_angles = _rows_by_angle(x, centroids, labels, label_scores)
    if not np.isfinite(row_angles).all():  # a NaN row would hide its partition's rows
        return mine_exact_cross(xq, x, threshold, block_size), 1.0
    phi = angles(centroids @ xq.T)  # [nlist, queries]
    first = row_angles[offsets[:-1].clip(max=len(x) - 1)]
    last = row_angles[(offsets[1:] - 1).clip(0)]
    sizes = np.diff(offsets)
    meets = (phi >= (first - gap)[:, None]) & (phi <= (last + gap)[:, None])
    meets &= (sizes > 0)[:, None]
    share = float((meets.sum(axis=1) * sizes).sum() / (len(queries) * len(x)))
    if share > MAX_PRUNED_SHARE:
        return mine_exact_cross(xq, x, threshold, block_size), 1.0

    def search(partitions) -> tuple[list[Pairs], int]:
        parts, products = [], 0
        for p in partitions:
            q = np.flatnonzero(meets[p])
            if not q.size:
                continue
            seg = row_angles[offsets[p]:offsets[p + 1]]
            lo = np.searchsorted(seg, phi[p, q].min() - gap, "left")
            hi = np.searchsorted(seg, phi[p, q].max() + gap, "right")
            if lo >= hi:
                continue
            cols = order[offsets[p] + lo:offsets[p] + hi]
            hits = mine_exact_cross(xq[q], x[cols], threshold, block_size)
            products += q.size * cols.size
            if len(hits):
                parts.append(Pairs(q[hits.i], cols[hits.j], hits.score))
        return parts, products

    found = map_in_threads(search, range(nlist))
    parts = [part for pairs, _ in found for part in pairs]
    share = sum(products for _, products in found) / (len(queries) * len(x))
    return (concat_pairs(parts) if parts else empty_pairs()), share


def _rows_by_angle(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray,
                   label_scores: np.ndarray | None = None, chunk: int = 1024
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(order, offsets, angles)`: rows grouped by partition and, within one, by their
    angle to its centroid; partition p's rows are `order[offsets[p]:offsets[p + 1]]`,
    their angles `angles[offsets[p]:offsets[p + 1]]`, ascending."""
    nlist = centroids.shape[0]
    if label_scores is None:
        label_scores = probe_scores(x, centroids, labels[:, None], chunk)[:, 0]
    angle = angles(label_scores)
    # One integer sort: a non-negative float32's bits order as the float does.
    key = (labels.astype(np.int64) << 32) | angle.view(np.int32).astype(np.int64)
    order = np.argsort(key)
    del key
    offsets = np.zeros(nlist + 1, np.int64)
    np.cumsum(np.bincount(labels, minlength=nlist), out=offsets[1:])
    return order, offsets, angle[order]
