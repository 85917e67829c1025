"""Stage 5, mine (incremental nights, approximate): the previous run's partitions reused.

    embeddings table + ids new to mining + the previous run's centroids and
    partitions -> MineNewApproximate -> duplicates / near_duplicates (new pairs
    and the carried pairs of old records), centroids / partitions, stats

An approximate run finds a pair when one end probes the other's partition
(`approximate.search_partitions`). With the previous run's centroids and its
records' probes, the pairs that have a new record are found by searching only
the partitions new records probe or belong to; the pairs of two old records
are the previous run's (same vectors, same probes). So a night's tables equal
what one approximate run over all records would find with those centroids,
and its cost is the load, the new rows' assignment and a few partitions, not
the training and the whole search. Recall is measured as in a full run, on a
sample of the new records.

The centroids are kept while they fit. The night trains new centroids and
mines everything (`remined_in_full`, with the reason, in the stats) when
- the recall measured on the new records is below `recall_target` while the
  previous run's met it;
- at least `MIN_FIT_ROWS` new records are, on average, more than
  `MAX_DISTANCE_GROWTH` times as far (1 - cosine) from their nearest centroid
  as the rows the centroids were trained on;
- or the previous tables do not cover the old records. The launcher makes the
other checks before the job starts (`pipelines.previous_run.remine_reason`:
same nprobe and nlist, no lowered threshold, the table at most
`MAX_GROWTH` times the size the centroids were trained on).
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.metrics import counter
from transforms.mine.angle_bound import probe_scores
from transforms.mine.approximate import (
    PartitionIndex,
    assign,
    keys_to_pairs,
    mine_approximate_indexed,
    partition_stats,
    recall_flag,
    search_partitions,
)
from transforms.mine.incremental import carry_previous_pairs, load_with_new, read_ids
from transforms.mine.partition_tables import read_centroids, read_probes
from transforms.mine.recall import sampled_recall
from transforms.mine.transform import (
    CENTROIDS,
    DUPLICATES,
    NEAR_DUPLICATES,
    PARTITIONS,
    ROWS_PER_TABLE,
    STATS,
    PairTables,
    index_outputs,
)

log = logging.getLogger(__name__)

MAX_DISTANCE_GROWTH = 1.25
MIN_FIT_ROWS = 1000  # a mean over fewer new rows is too noisy to judge by; recall still is


def reuse_index(previous: str, ids, vectors: np.ndarray, is_new: np.ndarray, nprobe: int,
                trained_n: int, trained_fit: float) -> tuple[PartitionIndex | None, str | None,
                                                            float | None]:
    """The previous run's partitions extended to tonight's rows (`extend_index`):
    `(index, None, new rows' fit)`, or `(None, why they do not serve, fit)`."""
    centroids = read_centroids(FileSystems.join(previous, f"{CENTROIDS}.parquet"))
    if centroids.shape[1:] != vectors.shape[1:]:
        return None, (f"the previous centroids are {centroids.shape[1:]} wide, tonight's "
                      f"vectors {vectors.shape[1:]}"), None
    probes, scores, found = read_probes(FileSystems.join(previous, f"{PARTITIONS}.parquet"),
                                        ids, nprobe)
    lost = int((~found & ~is_new).sum())
    if lost:
        return None, f"{lost} old records have no partition in the previous run", None
    if scores is None or not _scores_hold(vectors, centroids, probes, scores, ~is_new):
        log.info("the previous partitions table has no scores against the probes that hold "
                 "for tonight's vectors (an older run): computing them for %d records", len(ids))
        scores = probe_scores(vectors, centroids, probes)
    index, fit_new = extend_index(
        PartitionIndex(centroids, probes, trained_n, trained_fit, scores), vectors, is_new)
    if is_new.sum() >= MIN_FIT_ROWS and 1.0 - fit_new > MAX_DISTANCE_GROWTH * (1.0 - trained_fit):
        return None, (f"the new records fit the previous centroids less well (mean score "
                      f"{fit_new:.4f} against their nearest, {trained_fit:.4f} when trained)"
                      ), fit_new
    return index, None, fit_new


def _scores_hold(vectors: np.ndarray, centroids: np.ndarray, probes: np.ndarray,
                 scores: np.ndarray, old: np.ndarray, sample: int = 1000) -> bool:
    """Whether the kept scores are tonight's vectors' against their probes, checked on a
    sample of the old rows: a night skips rows by them, so a stale or damaged table must
    not be trusted (it would lose pairs without a word)."""
    if not np.isfinite(scores).all():
        return False
    rows = np.flatnonzero(old)
    if rows.size > sample:
        rows = np.sort(np.random.default_rng(0).choice(rows, sample, replace=False))
    return bool(np.allclose(scores[rows], probe_scores(vectors[rows], centroids, probes[rows]),
                            rtol=0, atol=1e-4))


def extend_index(index: PartitionIndex, vectors: np.ndarray, is_new: np.ndarray
                 ) -> tuple[PartitionIndex, float | None]:
    """`index` with the new rows' probes (and scores) filled in (its rows for a new row
    are replaced), and the new rows' mean score against their nearest centroid."""
    new_rows = np.flatnonzero(is_new)
    if not new_rows.size:
        return index, None
    index.probes[new_rows], scores = assign(vectors[new_rows], index.centroids, index.nprobe)
    if index.scores is not None:
        index.scores[new_rows] = scores
    return index, float(scores[:, 0].mean())


def mine_new(vectors: np.ndarray, is_new: np.ndarray, index: PartitionIndex, threshold: float,
             *, block_size: int = 4096, recall_sample_size: int = 1000,
             recall_target: float = 0.99, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """`(keys, scores, stats)` of every pair with a new row the partitions find (keys
    `i * N + j`, sorted), and the recall measured on a sample of the new rows."""
    t = time.perf_counter()
    keys, scores, raw = search_partitions(vectors, index.probes, index.nlist, threshold,
                                          block_size, is_new, scores=index.scores)
    mine_s = time.perf_counter() - t
    t = time.perf_counter()
    recall = sampled_recall(vectors, keys, threshold, recall_sample_size, seed=seed,
                            block_size=block_size, rows=np.flatnonzero(is_new),
                            centroids=index.centroids, labels=index.probes[:, 0],
                            label_scores=None if index.scores is None else index.scores[:, 0])
    stats = {**partition_stats(index, threshold, raw), "centroids_reused": True,
             "recall_scope": "new records", **recall, "mine_s": mine_s,
             "recall_s": time.perf_counter() - t}
    return keys, scores, recall_flag(stats, recall_target)


class _MineNewApproximateFn(beam.DoFn):
    def __init__(self, previous: str, new_ids: str, not_carried: str,
                 duplicate_threshold: float, near_duplicate_threshold: float,
                 mining_options: dict, trained_n: int, trained_fit: float,
                 previous_recall_ok: bool, block_size: int, id_column: str,
                 embedding_column: str, rows_per_table: int):
        self._previous = previous
        self._previous_recall_ok = previous_recall_ok
        self._new_ids, self._not_carried = new_ids, not_carried
        self._dup, self._near = duplicate_threshold, near_duplicate_threshold
        self._options = dict(mining_options)
        self._trained = (trained_n, trained_fit)
        self._block_size = block_size
        self._columns = (id_column, embedding_column)
        self._rows = rows_per_table

    def process(self, patterns):
        started = time.monotonic()
        ids, vectors, is_new = load_with_new(patterns, self._columns, self._new_ids)
        loaded = time.monotonic()
        index, reason, fit_new = reuse_index(self._previous, ids, vectors, is_new,
                                             self._options["nprobe"], *self._trained)
        stats = None
        if not reason:
            keys, scores, stats = mine_new(
                vectors, is_new, index, self._near, block_size=self._block_size,
                **{k: self._options[k] for k in ("recall_sample_size", "recall_target", "seed")})
            log.info("approximate night: %d new rows against %d through %d partitions: "
                     "%d pairs", int(is_new.sum()), len(vectors), index.nlist, keys.size)
            if stats["recall_below_target"] and self._previous_recall_ok:
                reason = (f"recall on the new records {stats['recall_sampled']:.4f} is below "
                          f"the target {stats['recall_target']} with the previous centroids")
        out = PairTables(ids, self._rows, self._dup)
        if reason:
            log.warning("approximate night: %s: centroids trained again, every pair mined",
                        reason)
            keys = scores = None  # tonight's partial search, freed before the full one
            pairs, stats, index = mine_approximate_indexed(
                vectors, self._near, block_size=self._block_size, **self._options)
            stats.update(remined_in_full=True, remine_reason=reason, centroids_reused=False)
        else:
            pairs = keys_to_pairs(keys, scores, len(ids))
            del keys, scores
        yield from out.add(pairs.i, pairs.j, pairs.score)
        stats["pairs_new"] = len(pairs)
        counter("pairs_found").inc(len(pairs))
        del pairs
        yield from out.flush()
        if not reason:
            gone = read_ids(self._not_carried)
            yield from carry_previous_pairs(self._previous, gone, self._dup, self._near)
        yield from index_outputs(ids, index, self._rows)
        yield beam.pvalue.TaggedOutput(STATS, dict(
            stats, mode="approximate", incremental=True, embeddings=len(ids),
            embeddings_new=int(is_new.sum()), new_rows_fit=fit_new,
            load_seconds=round(loaded - started, 3),
            mine_seconds=round(time.monotonic() - loaded, 3)))


class MineNewApproximate(beam.PTransform):
    """Pattern(s) of tonight's embeddings table (one element) -> {duplicates,
    near_duplicates: Arrow tables of all tonight's pairs (new and carried), centroids,
    partitions: the index for the next night, stats: one dict}.

    Args:
        previous: the published run folder whose centroids, partitions and pairs are reused.
        new_ids / not_carried: patterns of the id tables the incremental embed job wrote.
        mining_options: `nprobe`, `recall_sample_size`, `recall_target`, `seed` (and
            `nlist`, `kmeans_iterations` for a re-mine), as `mine_approximate_indexed`.
        trained_n / trained_fit: the previous run's `centroids_trained_*` stats.
        previous_recall_ok: the previous run's recall met the target, so a night below
            it means the centroids no longer serve: they are trained again.
    """

    def __init__(self, previous: str, new_ids: str, not_carried: str,
                 duplicate_threshold: float, near_duplicate_threshold: float,
                 mining_options: dict, trained_n: int, trained_fit: float,
                 previous_recall_ok: bool = True, block_size: int = 4096,
                 id_column: str = "record_id", embedding_column: str = "embedding",
                 rows_per_table: int = ROWS_PER_TABLE):
        super().__init__()
        self._fn = _MineNewApproximateFn(previous, new_ids, not_carried, duplicate_threshold,
                                         near_duplicate_threshold, mining_options, trained_n,
                                         trained_fit, previous_recall_ok, block_size, id_column,
                                         embedding_column, rows_per_table)

    def expand(self, patterns: beam.PCollection):
        return patterns | "MineNewApproximate" >> beam.ParDo(self._fn).with_outputs(
            DUPLICATES, NEAR_DUPLICATES, STATS, CENTROIDS, PARTITIONS)
