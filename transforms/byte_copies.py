"""Find byte-identical records, so each distinct image is embedded once.

Works on the index pass (records without bytes): records are grouped by
sha256; the smallest `record_id` of a group is its representative and every
other member becomes an `exact_duplicates` row `(representative, copy,
sha256)`. Copies are not decoded or embedded; the set of copy ids is a side
input of the embedding pass.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.metrics import counter
from transforms.records import ImageRecord


def _star_pairs(group: tuple[str, list[str]]):
    sha256, record_ids = group
    representative, *copies = sorted(record_ids)
    for copy in copies:
        counter("exact_copies").inc()
        yield {"record_id_a": representative, "record_id_b": copy, "sha256": sha256}


class FindByteCopies(beam.PTransform):
    """`ImageRecord` (no bytes needed) -> `exact_duplicates` rows."""

    def expand(self, records: beam.PCollection[ImageRecord]) -> beam.PCollection[dict]:
        return (
            records
            | "KeyBySha256" >> beam.Map(lambda r: (r.sha256, r.record_id))
            | "GroupBySha256" >> beam.GroupByKey()
            | "StarPairs" >> beam.FlatMap(_star_pairs))


class SkipByteCopies(beam.PTransform):
    """Drops records listed as copies in `exact_pairs` (rows of `FindByteCopies`)."""

    def __init__(self, exact_pairs: beam.PCollection[dict]):
        super().__init__()
        self._exact_pairs = exact_pairs

    def expand(self, records: beam.PCollection[ImageRecord]) -> beam.PCollection[ImageRecord]:
        copy_ids = (
            self._exact_pairs
            | "CopyIds" >> beam.Map(lambda row: row["record_id_b"])
            | "ToSet" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn()))
        return records | "NotACopy" >> beam.Filter(
            lambda r, copies: r.record_id not in copies, beam.pvalue.AsSingleton(copy_ids))
