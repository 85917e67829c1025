"""Approximate all-pairs mining for large N: IVF-style partitions, block matmuls.

Stages:
  1. train `nlist` spherical k-means centroids (faiss) on a sample;
  2. find each vector's `nprobe` nearest centroids; the first is its partition;
  3. for each partition q, gather its members M_q and every vector that probes
     q (Q_q), and compute `Q_q @ M_q.T` with one sgemm, thresholded;
  4. order pairs `i < j`, drop repeats (a pair is usually found from both ends);
  5. measure recall: exact search of a random sample of queries against all N,
     skipping through the partitions the rows that cannot pair (`recall.py`).

Step 3 is IVF search turned inside out: instead of scanning lists one query at
a time (which runs far below the machine's matmul speed), all queries that
probe a list are multiplied against it at once. A pair is found when either
end probes the other's partition, so recall is at least IVF's at the same
nprobe. Memory: the input is read in place (no sorted copy); the extra is the
probe table (`N * nprobe * 4` bytes), one list's gathered rows and the pairs,
held at 12 bytes each (an int64 key and a float32 score) and deduplicated with
one sort (`pairs.unique_keys`); the result has int32 indexes below 2^31 rows.

Scores of found pairs are exact float32 inner products; only pairs whose ends
never meet in a partition can be missed, and the sampled recall says how many.

The centroids and every row's probes (`PartitionIndex`) are returned beside
the pairs: a run publishes them (`partition_tables.py`) so that the next night
assigns only its new rows and searches only the partitions they touch
(`search_partitions(is_new=...)`, `incremental_approximate.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from typing import Any

import numpy as np

from transforms.mine.angle_bound import angles, reach
from transforms.mine.pairs import Pairs, index_dtype, unique_keys
from transforms.mine.recall import sampled_recall
from transforms.mine.threads import THREADS, map_in_threads

log = logging.getLogger(__name__)


def auto_nlist(n: int, nprobe: int) -> int:
    """Balances assignment (N * nlist) against mining (N * nprobe * N / nlist)."""
    return int(max(1, min(n // 64, round(math.sqrt(nprobe * n)))))


def train_centroids(
    x: np.ndarray, nlist: int, *, seed: int = 0, niter: int = 8,
    points_per_centroid: int = 16,
) -> np.ndarray:
    """`[nlist, d]` unit-norm k-means centroids trained on a sample of `x`."""
    import faiss

    n, d = x.shape
    sample_size = min(n, nlist * points_per_centroid)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, sample_size, replace=False)) if sample_size < n else None
    train = np.ascontiguousarray(x[sample] if sample is not None else x, dtype=np.float32)
    km = faiss.Kmeans(d, nlist, niter=niter, spherical=True, seed=seed, verbose=False,
                      max_points_per_centroid=points_per_centroid + 1, min_points_per_centroid=1)
    km.train(train)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def assign(x: np.ndarray, centroids: np.ndarray, k: int,
           chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """`([N, k] int32, [N, k] float32)`: each row's k nearest centroids by inner product,
    nearest first, and its scores against them (the first: how well the partitions
    fit it)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    k = min(k, centroids.shape[0])
    out = np.empty((x.shape[0], k), dtype=np.int32)
    scores = np.empty((x.shape[0], k), dtype=np.float32)
    for s in range(0, x.shape[0], chunk):
        scores[s : s + chunk], out[s : s + chunk] = index.search(
            np.ascontiguousarray(x[s : s + chunk], dtype=np.float32), k)
    return out, scores


@dataclasses.dataclass
class PartitionIndex:
    """The partitions a mining used: kept in the run folder so a night can reuse them.

    `probes[r]` are row r's `nprobe` nearest centroids, nearest first: `probes[r, 0]`
    is its partition, and `scores[r]` its scores against them (a night's search skips
    old rows by them, `search_partitions`). `trained_n` and `trained_fit` (the rows'
    mean score against their nearest centroid) describe the table the centroids were
    trained on, so a night can tell when its new rows no longer fit them.
    """

    centroids: np.ndarray  # [nlist, d] float32, unit norm
    probes: np.ndarray  # [N, nprobe] int32
    trained_n: int
    trained_fit: float
    scores: np.ndarray | None = None  # [N, nprobe] float32

    @property
    def nlist(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def nprobe(self) -> int:
        return int(self.probes.shape[1])


def _grouped(labels: np.ndarray, nlist: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, offsets): rows of list q are order[offsets[q]:offsets[q+1]]."""
    # 16-bit labels sort stably by radix (linear time); wider ones by merge sort
    small = labels.astype(np.uint16) if nlist <= 1 << 16 else labels
    order = np.argsort(small, kind="stable")
    del small
    offsets = np.zeros(nlist + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=nlist), out=offsets[1:])
    return order, offsets


def _search_lists(x: np.ndarray, groups: tuple, threshold: float, bs: int, max_members: int,
                  is_new: np.ndarray | None, angles_to: tuple | None, partitions
                  ) -> tuple[list, list]:
    """`search_partitions`' loop over some partitions: lists of key and score arrays."""
    members, member_off, probers, probe_off = groups
    n = x.shape[0]
    buf = np.empty(bs * max(max_members, 1), dtype=np.float32)
    # A pair is held as one int64 key (lo * n + hi) and a float32 score: 12
    # bytes, the least that lets repeats be dropped with one sort.
    key_parts: list[np.ndarray] = []
    score_parts: list[np.ndarray] = []
    for q in partitions:
        m_idx = members[member_off[q] : member_off[q + 1]]
        if m_idx.size == 0:
            continue
        q_idx = probers[probe_off[q] : probe_off[q + 1]]
        if is_new is None:
            blocks = ((q_idx, m_idx),)
        else:
            new_prober = is_new[q_idx]
            new_probers, old_probers = q_idx[new_prober], q_idx[~new_prober]
            members_in_reach, new_members = m_idx, m_idx[is_new[m_idx]]
            if angles_to is not None:
                # only the rows whose angle to this centroid is within reach of one on
                # the other side's (angle_bound.py)
                own, probing, gap = angles_to
                probing_q = probing[probe_off[q] : probe_off[q + 1]]
                members_in_reach = _in_reach(m_idx, own[m_idx], probing_q[new_prober], gap)
                old_probers = _in_reach(old_probers, probing_q[~new_prober],
                                        own[new_members], gap)
            blocks = ((new_probers, members_in_reach), (old_probers, new_members))
        for queries, cols in blocks:
            if not cols.size:
                continue
            mq = x[cols]
            for s in range(0, queries.size, bs):
                qi = queries[s : s + bs]
                scores = buf[: qi.size * cols.size].reshape(qi.size, cols.size)
                np.matmul(x[qi], mq.T, out=scores)
                flat = np.flatnonzero(scores >= threshold)
                if flat.size:
                    r, c = np.divmod(flat, cols.size)
                    a, b = qi[r], cols[c]
                    keep = a != b
                    a, b = a[keep], b[keep]
                    key_parts.append(np.minimum(a, b) * np.int64(n) + np.maximum(a, b))
                    score_parts.append(scores.reshape(-1)[flat[keep]])
    return key_parts, score_parts


def _in_reach(rows: np.ndarray, row_angles: np.ndarray, other_angles: np.ndarray,
              gap: float) -> np.ndarray:
    """`rows` whose angle to a centroid is within `gap` of one of `other_angles`, those
    of the rows they could pair with (none: no row)."""
    if not other_angles.size or not rows.size:
        return rows[:0]
    keep = (row_angles >= other_angles.min() - gap) & (row_angles <= other_angles.max() + gap)
    return rows[keep]


def search_partitions(x: np.ndarray, probes: np.ndarray, nlist: int, threshold: float,
                      block_size: int = 4096, is_new: np.ndarray | None = None,
                      threads: int = THREADS, scores: np.ndarray | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """`(keys, scores, raw_count)`: every pair of rows, score >= threshold, whose one
    end probes the other's partition; keys `i * N + j` (`i < j`) sorted and unique.

    With `is_new`, only the pairs with at least one new row: in each partition that
    a new row probes or belongs to, the new probers against all members and the
    old probers against the new members. These are exactly the pairs with a new
    row that the whole search finds (`is_new=None`) with the same probes; they are
    searched in `threads` threads. With `scores` (each row's scores against its
    probes, `PartitionIndex.scores`), an old prober whose angle to the centroid is
    out of reach of every new member's (`angle_bound.py`) is not gathered: the
    pairs are the same.
    """
    n = x.shape[0]
    members, member_off = _grouped(probes[:, 0], nlist)
    flat_order, probe_off = _grouped(probes.reshape(-1), nlist)
    probers = (flat_order // probes.shape[1]).astype(np.int64)
    angles_to = None
    if is_new is not None and scores is not None:
        # (each row's angle to its own centroid, each probe entry's angle to the
        # centroid it probes, in `probers` order, and the reach)
        angles_to = (angles(scores[:, 0]), angles(scores.reshape(-1)[flat_order]),
                     reach(threshold, x.shape[1]))
    del flat_order
    if is_new is None:
        touched = range(nlist)
    else:  # a new row's own partition is its first probe
        touched = np.unique(probes[is_new].reshape(-1))
    max_members = int(np.diff(member_off).max()) if n else 0
    groups = (members, member_off, probers, probe_off)
    search = functools.partial(_search_lists, x, groups, threshold, max(1, block_size),
                               max_members, is_new, angles_to)
    # A whole search runs its large products on every BLAS thread; a night's
    # many small ones are split across threads.
    found = map_in_threads(search, touched, 1 if is_new is None else threads)
    key_parts = [part for keys, _ in found for part in keys]
    score_parts = [part for _, scores in found for part in scores]
    del found
    raw_count = int(sum(k.size for k in key_parts))
    keys = np.concatenate(key_parts) if key_parts else np.empty(0, np.int64)
    del key_parts
    found_scores = (np.concatenate(score_parts) if score_parts
                    else np.empty(0, np.float32))
    del score_parts
    keys, found_scores = unique_keys(keys, found_scores)
    return keys, found_scores, raw_count


def keys_to_pairs(keys: np.ndarray, scores: np.ndarray, n: int) -> Pairs:
    dtype = index_dtype(n)
    return Pairs((keys // n).astype(dtype), (keys % n).astype(dtype), scores)


def recall_flag(stats: dict[str, Any], recall_target: float) -> dict[str, Any]:
    """`stats` with `recall_target` and `recall_below_target`; a low recall is logged."""
    low = stats["recall_sampled"] is not None and stats["recall_sampled"] < recall_target
    stats.update(recall_target=float(recall_target), recall_below_target=bool(low))
    if low:
        log.warning("approximate mining recall %.4f is below the target %.4f "
                    "(sample of %d rows); raise nprobe or use mode: exact",
                    stats["recall_sampled"], recall_target, stats["recall_sample_size"])
    return stats


def mine_approximate(embeddings: np.ndarray, threshold: float, **options: Any
                     ) -> tuple[Pairs, dict[str, Any]]:
    """`mine_approximate_indexed` without the index."""
    pairs, stats, _ = mine_approximate_indexed(embeddings, threshold, **options)
    return pairs, stats


def mine_approximate_indexed(
    embeddings: np.ndarray,
    threshold: float,
    *,
    nlist: int = 0,
    nprobe: int = 8,
    block_size: int = 4096,
    recall_sample_size: int = 1000,
    recall_target: float = 0.99,
    seed: int = 0,
    kmeans_iterations: int = 6,
) -> tuple[Pairs, dict[str, Any], PartitionIndex]:
    """Pairs `i < j` with score >= threshold, found through partitions; stats; and
    the partitions (for the next night, `transforms.mine.incremental_approximate`).

    Args:
        embeddings: `[N, d]` float32, L2-normalised. Read in place, not copied.
        threshold: smallest score returned.
        nlist: partitions; 0 picks `sqrt(nprobe * N)`.
        nprobe: partitions each vector is compared against (its own first).
        block_size: most query rows multiplied against a partition at once.
        recall_sample_size: rows searched exactly to measure recall (0: skip).
        recall_target: recall below this is logged as a warning and flagged
            in the stats (`recall_below_target`).
        seed: k-means and sampling seed; same seed, same pairs.
        kmeans_iterations: k-means iterations.

    Returns:
        `(pairs, stats, index)`; stats holds nlist, nprobe, the sampled recall and
        per-stage timings in seconds.
    """
    x = embeddings
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    nlist = nlist or auto_nlist(n, nprobe)
    nlist = max(1, min(nlist, n))
    nprobe = max(1, min(nprobe, nlist))
    timings: dict[str, float] = {}

    t = time.perf_counter()
    centroids = train_centroids(x, nlist, seed=seed, niter=kmeans_iterations)
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    probes, scores = assign(x, centroids, nprobe)
    index = PartitionIndex(centroids, probes, int(n), float(scores[:, 0].mean()) if n else 0.0,
                           scores)
    timings["assign_s"] = time.perf_counter() - t

    t = time.perf_counter()
    keys, found_scores, raw_count = search_partitions(x, probes, nlist, threshold, block_size)
    timings["mine_s"] = time.perf_counter() - t

    t = time.perf_counter()
    recall = sampled_recall(x, keys, threshold, recall_sample_size, seed=seed,
                            block_size=block_size, centroids=centroids, labels=probes[:, 0],
                            label_scores=scores[:, 0])
    timings["recall_s"] = time.perf_counter() - t
    pairs = keys_to_pairs(keys, found_scores, n)
    del keys

    stats: dict[str, Any] = {"mode": "approximate", **partition_stats(index, threshold, raw_count),
                             "pairs_found": len(pairs), **recall, **timings}
    return pairs, recall_flag(stats, recall_target), index


def partition_stats(index: PartitionIndex, threshold: float, raw_count: int) -> dict[str, Any]:
    """What `summary.json` says of a search through `index`'s partitions."""
    n = int(index.probes.shape[0])
    sizes = np.bincount(index.probes[:, 0], minlength=index.nlist)
    return {"n": n, "threshold": float(threshold), "nlist": index.nlist, "nprobe": index.nprobe,
            "partition_size_max": int(sizes.max()) if n else 0,
            "partition_size_mean": float(sizes.mean()) if n else 0.0,
            "pairs_found_raw": raw_count, "centroids_trained_n": index.trained_n,
            "centroids_trained_fit": index.trained_fit}
