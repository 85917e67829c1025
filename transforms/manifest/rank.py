"""Dense ranks of keys over a whole run, range-partitioned on the engine.

`DenseRank`: keys (repeats allowed) -> `(key, rank)` per distinct key, rank 0
for the smallest, as `numpy.unique(..., return_inverse=True)` numbers them. A
fixed-size sample of the distinct keys (one worker holds `num_buckets` keys)
cuts the key range into buckets; the per-bucket counts (one number each) give
each bucket its first rank, and each bucket is sorted on its own worker. No
worker holds more than one bucket of keys (about N / num_buckets), whatever N.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

import apache_beam as beam

DEFAULT_BUCKETS = 1000


def _bucket(key, boundaries: list) -> tuple[int, object]:
    return bisect.bisect_right(boundaries, key), key


def _offsets(counts: list[tuple[int, int]]) -> dict[int, int]:
    offsets, total = {}, 0
    for bucket, count in sorted(counts):
        offsets[bucket] = total
        total += count
    return offsets


def _rank_bucket(element: tuple[int, Iterable], offsets: dict[int, int]) -> Iterator[tuple]:
    bucket, keys = element
    for k, key in enumerate(sorted(keys)):
        yield key, offsets[bucket] + k


class DenseRank(beam.PTransform):
    """Keys -> `(key, dense rank among the distinct keys)`."""

    def __init__(self, num_buckets: int = DEFAULT_BUCKETS):
        super().__init__()
        self._buckets = num_buckets

    def expand(self, keys: beam.PCollection) -> beam.PCollection[tuple]:
        distinct = keys | "Distinct" >> beam.Distinct()
        boundaries = (distinct
                      | "Sample" >> beam.combiners.Sample.FixedSizeGlobally(self._buckets)
                      | "SortSample" >> beam.Map(sorted))
        bucketed = distinct | "Bucket" >> beam.Map(_bucket, beam.pvalue.AsSingleton(boundaries))
        offsets = (bucketed
                   | "CountPerBucket" >> beam.combiners.Count.PerKey()
                   | "AllCounts" >> beam.combiners.ToList()
                   | "Offsets" >> beam.Map(_offsets))
        return (bucketed
                | "ByBucket" >> beam.GroupByKey()
                | "RankInBucket" >> beam.FlatMap(_rank_bucket,
                                                      beam.pvalue.AsSingleton(offsets)))
