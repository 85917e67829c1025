"""All-pairs mining of an embeddings matrix: exact, approximate, or on Beam.

    from transforms.mine import mine_pairs, stream_pairs
    pairs, stats = mine_pairs(embeddings, 0.90, mode="auto", block_size=4096)
    chunks, stats = stream_pairs(embeddings, 0.90, mode="auto")  # in bounded chunks

- `exact` (`exact.py`): blocked sgemm over the upper triangle; the pair set
  equals brute force; cost grows as N^2.
- `approximate` (`approximate.py`): k-means partitions, each mined against the
  vectors that probe it; cost ~ N^1.5; recall measured on a sample and
  returned in `stats`.
- `distributed` (`distributed.py`): the Beam transform `MineDistributed`, for
  when one machine is not enough; used by the pipeline, not by `mine_pairs`.
- `auto`: exact below `approximate_min_n` rows, approximate from there on.

`phash_pairs.py` is the model-free signal beside them: pairs within a Hamming
distance of the decode stage's perceptual hashes (`MinePhashPairs`).
`transform.py` is the stage itself (`MinePairs`: the embeddings table in,
pair tables out); groups, keepers and the keep/drop manifest are the next
stage, `transforms/manifest/`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from transforms.mine.exact import iter_exact_pairs, mine_exact, mine_exact_cross
from transforms.mine.pairs import Pairs, canonical_pairs, empty_pairs, index_dtype

LOCAL_MODES = ("auto", "exact", "approximate")
APPROXIMATE_OPTIONS = {"nlist", "nprobe", "recall_sample_size", "recall_target", "seed",
                       "kmeans_iterations"}

__all__ = ["Pairs", "canonical_pairs", "empty_pairs", "index_dtype", "iter_exact_pairs",
           "mine_exact", "mine_exact_cross", "mine_pairs", "resolve_mode", "stream_pairs"]


def resolve_mode(mode: str, n: int, approximate_min_n: int) -> str:
    """The mode `auto` stands for at `n` rows; other modes are returned as-is."""
    if mode == "auto":
        return "approximate" if n >= approximate_min_n else "exact"
    return mode


def mine_pairs(
    embeddings: np.ndarray,
    threshold: float,
    *,
    mode: str = "auto",
    block_size: int = 4096,
    approximate_min_n: int = 200_000,
    nlist: int = 0,
    nprobe: int = 8,
    recall_sample_size: int = 1000,
    recall_target: float = 0.99,
    seed: int = 0,
) -> tuple[Pairs, dict[str, Any]]:
    """All pairs `i < j` with score >= threshold, and a stats dict for summary.json.

    Args:
        embeddings: `[N, d]` float32, L2-normalised.
        threshold: smallest score returned (the near-duplicate threshold).
        mode: `exact`, `approximate` or `auto` (exact below `approximate_min_n`).
        block_size: tile rows (exact) / query rows per matmul (approximate).
        approximate_min_n: where `auto` switches to approximate.
        nlist, nprobe, recall_sample_size, recall_target, seed: approximate
            mode settings, see `approximate.mine_approximate`.

    Returns:
        `(pairs, stats)`. Exact runs report `recall_sampled: 1.0` by
        construction (`recall_exact: true`); approximate runs report what
        they measured.
    """
    _check_mode(mode)
    n = int(embeddings.shape[0])
    chosen = resolve_mode(mode, n, approximate_min_n)
    if chosen == "approximate":
        from transforms.mine.approximate import mine_approximate

        pairs, stats = mine_approximate(
            embeddings, threshold, nlist=nlist, nprobe=nprobe, block_size=block_size,
            recall_sample_size=recall_sample_size, recall_target=recall_target, seed=seed)
    else:
        t = time.perf_counter()
        pairs = mine_exact(embeddings, threshold, block_size)
        stats = _exact_stats(n, threshold, block_size, len(pairs), time.perf_counter() - t)
    stats["mode_requested"] = mode
    return pairs, stats


def stream_pairs(
    embeddings: np.ndarray,
    threshold: float,
    *,
    mode: str = "auto",
    block_size: int = 4096,
    max_pairs: int = 1 << 20,
    approximate_min_n: int = 200_000,
    index_out: list | None = None,
    **approximate_options: Any,
) -> tuple[Iterator[Pairs], dict[str, Any]]:
    """`mine_pairs` in chunks of at most `max_pairs` pairs, for writing out as found.

    Exact mode hands over each tile's pairs as the tiles find them
    (`iter_exact_pairs`), so the pairs are never all held; chunks are in
    tile order, not sorted across chunks. Approximate mode must hold its
    pairs to drop repeats (12 bytes each, see `approximate.py`), then hands
    them over sorted. Every chunk has `i < j` and no pair is in two chunks.

    Args:
        index_out: approximate mode appends its `PartitionIndex` here (the
            partitions a next night reuses) once `chunks` is spent.

    Returns:
        `(chunks, stats)`: an iterator of `Pairs` and the stats dict of
        `mine_pairs`, complete (pairs_found, mine_s) once `chunks` is spent.
    """
    _check_mode(mode)
    unknown = set(approximate_options) - APPROXIMATE_OPTIONS
    if unknown:
        raise TypeError(f"stream_pairs got unknown options {sorted(unknown)}")
    n = int(embeddings.shape[0])
    stats: dict[str, Any] = {}
    if resolve_mode(mode, n, approximate_min_n) == "approximate":
        return _approximate_chunks(embeddings, threshold, block_size, max_pairs, mode, stats,
                                   approximate_options, index_out), stats
    return _exact_chunks(embeddings, threshold, block_size, max_pairs, mode, stats), stats


def _check_mode(mode: str) -> None:
    if mode not in LOCAL_MODES:
        raise ValueError(f"mine_pairs mode must be one of {LOCAL_MODES}, got {mode!r} "
                         "(distributed mining runs as the Beam transform MineDistributed)")


def _exact_stats(n: int, threshold: float, block_size: int, found: int,
                 seconds: float) -> dict[str, Any]:
    return {"mode": "exact", "n": n, "threshold": float(threshold),
            "block_size": int(block_size), "pairs_found": found,
            "recall_sampled": 1.0, "recall_exact": True, "mine_s": seconds}


def _exact_chunks(x, threshold, block_size, max_pairs, mode, stats) -> Iterator[Pairs]:
    t = time.perf_counter()
    found = 0
    for chunk in iter_exact_pairs(x, threshold, block_size, max_pairs):
        found += len(chunk)
        yield chunk
    stats.update(_exact_stats(int(x.shape[0]), threshold, block_size, found,
                              time.perf_counter() - t), mode_requested=mode)


def _approximate_chunks(x, threshold, block_size, max_pairs, mode, stats,
                        options, index_out) -> Iterator[Pairs]:
    from transforms.mine.approximate import mine_approximate_indexed

    pairs, found, index = mine_approximate_indexed(x, threshold, block_size=block_size,
                                                   **options)
    if index_out is not None:
        index_out.append(index)
    del index
    stats.update(found, mode_requested=mode)
    step = max(1, int(max_pairs))
    for s in range(0, len(pairs), step):
        yield Pairs(pairs.i[s : s + step], pairs.j[s : s + step], pairs.score[s : s + step])
