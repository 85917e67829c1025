"""Distributed all-pairs mining as Beam transforms, for when one machine is not enough.

`MineDistributed`: `(record_id, vector)` -> `{record_id_a, record_id_b, score}`

  TrainCentroids (CountVectors / SampleForCentroids -> k-means; a side input),
      or given: an incremental night passes the previous run's centroids
  AssignPartitions: each vector to its `partitions_per_vector` nearest centroids,
      so a pair straddling a boundary still meets in a shared partition
  GroupByPartition -> MinePartitions: exact blocked mining inside each partition;
      a pair is emitted only by the smallest partition both ends share, so a
      pair found in several partitions comes out once, with no extra shuffle.
  (night, `new_ids`) OnlyTouchedPartitions: only partitions holding a new record
      are shuffled and mined, and only their pairs with a new record: with the
      same centroids, exactly the pairs with a new record a whole run finds.

`MeasureRecall`: `(vectors, pairs)` -> one stats dict: a deterministic sample of
query rows is searched exactly against every vector, and the share of those
pairs present in the mined pairs is the recall (what summary.json records).

Sampling is by a stable hash of record_id, not random, so reruns on the same
input train the same centroids and give the same pairs. Large partitions are
mined in `block_size` tiles and their pairs emitted chunk by chunk
(`iter_exact_pairs`), so a worker's memory is bounded by its partition plus
one tile and one chunk of pairs, however dense the partition.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np

from transforms.mine.exact import iter_exact_pairs, mine_exact_cross

METRICS_NAMESPACE = "clipdedup"


def _stable_hash(record_id: str, salt: str) -> int:
    return int.from_bytes(hashlib.blake2b((salt + record_id).encode(), digest_size=8).digest(), "big")


def _centroid_sample_key(kv: tuple[str, Any]) -> int:
    return -_stable_hash(kv[0], "centroids")  # Top.Of keeps the largest: negate


def _recall_sample_key(kv: tuple[str, Any]) -> int:
    return -_stable_hash(kv[0], "recall")


def _ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _train_centroids(sample: list[tuple[str, Any]], count: int, nlist: int, partition_size: int,
                     seed: int, kmeans_iterations: int) -> np.ndarray:
    from transforms.mine.approximate import train_centroids

    if not sample:
        return np.zeros((0, 0), dtype=np.float32)
    x = np.stack([np.asarray(v, dtype=np.float32) for _, v in sorted(sample, key=lambda kv: kv[0])])
    k = nlist or max(1, math.ceil(count / max(1, partition_size)))
    k = max(1, min(k, x.shape[0]))
    if k == 1:
        return np.ascontiguousarray(x.mean(axis=0, keepdims=True), dtype=np.float32)
    return train_centroids(x, k, seed=seed, niter=kmeans_iterations,
                           points_per_centroid=max(1, x.shape[0] // k))


class _AssignFn(beam.DoFn):
    """`(record_id, vector)` -> `(partition, (record_id, vector, partitions, is_new))`, once
    per partition of the vector's `partitions_per_vector` nearest.

    With `new_ids` (the pattern of an incremental night's id table, read once per
    worker), `is_new` says whether the record is new to mining; else it is True."""

    def __init__(self, partitions_per_vector: int, new_ids: str | None = None):
        self._k = partitions_per_vector
        self._new_ids = new_ids
        self._new = None

    def setup(self):
        if self._new_ids:
            from transforms.mine.incremental import read_ids

            self._new = set(read_ids(self._new_ids).to_pylist())

    def process(self, element: tuple[str, Any], centroids: np.ndarray):
        record_id, vector = element
        v = np.asarray(vector, dtype=np.float32)
        scores = centroids @ v
        k = min(self._k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(k)
        parts = tuple(sorted(int(p) for p in top))
        is_new = self._new is None or record_id in self._new
        for p in parts:
            yield p, (record_id, v, parts, is_new)


class _MinePartitionFn(beam.DoFn):
    def __init__(self, threshold: float, block_size: int):
        self._threshold = threshold
        self._block_size = block_size
        self._pairs = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "partition_pairs_emitted")
        self._sizes = beam.metrics.Metrics.distribution(METRICS_NAMESPACE, "partition_size")

    def process(self, element: tuple[int, Iterable[tuple]]):
        from transforms.mine.incremental import iter_new_pairs

        pid, rows = element
        rows = sorted(rows, key=lambda r: r[0])
        self._sizes.update(len(rows))
        if len(rows) < 2:
            return
        x = np.stack([r[1] for r in rows])
        is_new = np.array([r[3] for r in rows])
        # Pairs go out chunk by chunk as the tiles find them: a worker holds its
        # partition's rows and one chunk, not every pair of a dense partition.
        # A night (some rows old) mines only the pairs with a new row.
        chunks = (iter_exact_pairs(x, self._threshold, self._block_size) if is_new.all()
                  else iter_new_pairs(x, is_new, self._threshold, self._block_size))
        for chunk in chunks:
            for i, j, s in zip(chunk[0].tolist(), chunk[1].tolist(), chunk[2].tolist()):
                a, b = rows[i], rows[j]
                if a[0] == b[0]:
                    continue
                if min(set(a[2]) & set(b[2])) != pid:
                    continue  # the smallest shared partition emits this pair
                ra, rb = _ordered(a[0], b[0])
                self._pairs.inc()
                yield {"record_id_a": ra, "record_id_b": rb, "score": float(s)}


class MineDistributed(beam.PTransform):
    """Pairs of vectors with inner product >= threshold, mined partition by partition.

    Input: `(record_id, vector)` with L2-normalised float vectors, ids unique.
    Output: dicts `{record_id_a, record_id_b, score}` (PAIRS_SCHEMA rows),
    `record_id_a < record_id_b`, each pair once. Pairs whose ends share none
    of their `partitions_per_vector` nearest partitions are missed; measure
    how many with `MeasureRecall`. With one partition the result is exact.
    """

    def __init__(self, threshold: float, *, nlist: int = 0, partition_size: int = 20_000,
                 partitions_per_vector: int = 2, train_sample_size: int = 50_000,
                 block_size: int = 4096, seed: int = 0, kmeans_iterations: int = 10,
                 centroids: beam.PCollection | None = None, new_ids: str | None = None):
        """`centroids`: a one-element PCollection of `[nlist, d]` centroids to use instead
        of training them (`TrainCentroids`). `new_ids`: an incremental night's id table
        of the records new to mining: only pairs with a new record are mined, in the
        partitions a new record is in (the others are not shuffled)."""
        super().__init__()
        self._threshold = float(threshold)
        self._train = TrainCentroids(nlist=nlist, partition_size=partition_size,
                                     train_sample_size=train_sample_size, seed=seed,
                                     kmeans_iterations=kmeans_iterations)
        self._k = int(partitions_per_vector)
        self._block_size = int(block_size)
        self._centroids = centroids
        self._new_ids = new_ids

    def expand(self, pcoll: beam.PCollection[tuple[str, Any]]) -> beam.PCollection[dict]:
        centroids = self._centroids
        if centroids is None:
            centroids = pcoll | "TrainCentroids" >> self._train
        assigned = pcoll | "AssignPartitions" >> beam.ParDo(
            _AssignFn(self._k, self._new_ids), beam.pvalue.AsSingleton(centroids))
        if self._new_ids:
            touched = (assigned
                       | "NewRowsPartitions" >> beam.FlatMap(
                           lambda kv: [kv[0]] if kv[1][3] else [])
                       | "TouchedPartitions" >> beam.combiners.ToSet())
            assigned = assigned | "OnlyTouchedPartitions" >> beam.Filter(
                lambda kv, touched: kv[0] in touched, touched=beam.pvalue.AsSingleton(touched))
        return (
            assigned
            | "GroupByPartition" >> beam.GroupByKey()
            | "MinePartitions" >> beam.ParDo(_MinePartitionFn(self._threshold, self._block_size))
        )


class TrainCentroids(beam.PTransform):
    """`(record_id, vector)` -> one `[nlist, d]` array: k-means on a deterministic sample
    (`nlist` 0: one partition per `partition_size` vectors)."""

    def __init__(self, *, nlist: int = 0, partition_size: int = 20_000,
                 train_sample_size: int = 50_000, seed: int = 0, kmeans_iterations: int = 10):
        super().__init__()
        self._nlist = int(nlist)
        self._partition_size = int(partition_size)
        self._sample = int(train_sample_size)
        self._seed = int(seed)
        self._iters = int(kmeans_iterations)

    def expand(self, pcoll):
        count = pcoll | "CountVectors" >> beam.combiners.Count.Globally()
        sample = pcoll | "SampleForCentroids" >> beam.combiners.Top.Of(
            self._sample, key=_centroid_sample_key)
        return sample | "Train" >> beam.Map(
            _train_centroids, count=beam.pvalue.AsSingleton(count), nlist=self._nlist,
            partition_size=self._partition_size, seed=self._seed,
            kmeans_iterations=self._iters)


class _NewRecordsFn(beam.DoFn):
    def __init__(self, new_ids: str):
        self._pattern = new_ids
        self._new = None

    def setup(self):
        from transforms.mine.incremental import read_ids

        self._new = set(read_ids(self._pattern).to_pylist())

    def process(self, element: tuple[str, Any]):
        if element[0] in self._new:
            yield element


class NewRecords(beam.PTransform):
    """`(record_id, vector)` -> the rows whose id is in the id table `new_ids`."""

    def __init__(self, new_ids: str):
        super().__init__()
        self._fn = _NewRecordsFn(new_ids)

    def expand(self, pcoll):
        return pcoll | "OnlyNew" >> beam.ParDo(self._fn)


def _exact_pairs_of_sample(batch: list[tuple[str, Any]], sample: list[tuple[str, Any]],
                           threshold: float):
    if not sample or not batch:
        return
    q_ids = [r for r, _ in sample]
    q = np.stack([np.asarray(v, dtype=np.float32) for _, v in sample])
    x = np.stack([np.asarray(v, dtype=np.float32) for _, v in batch])
    hits = mine_exact_cross(q, x, threshold, 4096)
    for qi, xi in zip(hits.i.tolist(), hits.j.tolist()):
        a, b = q_ids[qi], batch[xi][0]
        if a != b:
            yield _ordered(a, b), "exact"


def _found_pairs_of_sample(pair: dict, sample_ids: set):
    if pair["record_id_a"] in sample_ids or pair["record_id_b"] in sample_ids:
        yield (pair["record_id_a"], pair["record_id_b"]), "found"


def _recall_stats(counts: dict[str, int], sample_size: int) -> dict[str, Any]:
    total, got = counts.get("exact", 0), counts.get("found", 0)
    return {"recall_sampled": (got / total) if total else None,
            "recall_sample_size": sample_size, "recall_exact_pairs": total,
            "recall_found_pairs": got}


class MeasureRecall(beam.PTransform):
    """Recall of mined pairs on the exact pairs of a deterministic sample of rows.

    Input: a tuple `(vectors, pairs)`: the `(record_id, vector)` PCollection
    and `MineDistributed`'s output; or `(vectors, pairs, pool)`, the sample drawn
    from the `(record_id, vector)` rows of `pool` (a night's new records).
    Output: one dict with `recall_sampled` (None when the sample has no pairs),
    `recall_sample_size`,
    `recall_exact_pairs`, `recall_found_pairs`.
    """

    def __init__(self, threshold: float, sample_size: int = 1000, batch_size: int = 4096):
        super().__init__()
        self._threshold = float(threshold)
        self._sample_size = int(sample_size)
        self._batch_size = int(batch_size)

    def expand(self, pvals) -> beam.PCollection[dict]:
        vectors, pairs, *pool = pvals
        sample = (pool[0] if pool else vectors) | "SampleQueries" >> beam.combiners.Top.Of(
            self._sample_size, key=_recall_sample_key)
        sample_ids = sample | "SampleIds" >> beam.Map(lambda rows: {r for r, _ in rows})
        exact = (
            vectors
            | "BatchVectors" >> beam.BatchElements(min_batch_size=self._batch_size,
                                                   max_batch_size=self._batch_size)
            | "ExactSamplePairs" >> beam.FlatMap(
                _exact_pairs_of_sample, sample=beam.pvalue.AsSingleton(sample),
                threshold=self._threshold)
            | "DistinctExact" >> beam.Distinct()
        )
        found = pairs | "FoundSamplePairs" >> beam.FlatMap(
            _found_pairs_of_sample, sample_ids=beam.pvalue.AsSingleton(sample_ids))
        # A found pair counts only if it is one of the exact pairs.
        matched = (
            (exact, found)
            | "MergeExactFound" >> beam.Flatten()
            | "GroupPairKey" >> beam.GroupByKey()
            | "TagPairs" >> beam.FlatMap(
                lambda kv: (["exact"] + (["found"] if "found" in kv[1] else []))
                if "exact" in kv[1] else [])
            | "CountTags" >> beam.combiners.Count.PerElement()
            | "ToDict" >> beam.combiners.ToDict()
        )
        return matched | "RecallStats" >> beam.Map(_recall_stats, sample_size=self._sample_size)
