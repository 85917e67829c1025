"""Stage 2, byte copies: find byte-identical records, so each distinct image is embedded once.

Works on the index pass (records without bytes): records are grouped by
sha256; the smallest `record_id` of a group is its representative and every
other member becomes an `exact_duplicates` row `(representative, copy,
sha256)`, with the `source_uri` and `key` of both: copies are not decoded or
embedded, so this table is the only one that locates them. The set of copy
ids is a side input of the embedding pass.

A copy shares its representative's fate: when the representative fails to
decode or embed, `SettleCopiesOfFailures` turns each of its copies into an
error row with the same stage and reason (so the errors table lists every
unusable record) and drops those pairs from `exact_duplicates`, which then
only pairs copies with an embedded image. Conservation still holds exactly:
every record is embedded, a copy of an embedded record, or an error.
"""

from __future__ import annotations

import apache_beam as beam

from transforms import records as R
from transforms.metrics import counter
from transforms.records import ImageRecord

ERRORS = "errors"


def _star_pairs(group: tuple[str, list[tuple[str, str, str]]]):
    sha256, members = group
    (representative, uri_a, key_a), *copies = sorted(members)
    for record_id, source_uri, key in copies:
        yield {"record_id_a": representative, "record_id_b": record_id, "sha256": sha256,
               "source_uri_a": uri_a, "key_a": key_a, "source_uri_b": source_uri, "key_b": key}


class FindByteCopies(beam.PTransform):
    """`ImageRecord` (no bytes needed) -> `exact_duplicates` rows, both ends located."""

    def expand(self, records: beam.PCollection[ImageRecord]) -> beam.PCollection[dict]:
        return (
            records
            | "KeyBySha256" >> beam.Map(lambda r: (r.sha256, (r.record_id, r.source_uri, r.key)))
            | "GroupBySha256" >> beam.GroupByKey()
            | "StarPairs" >> beam.FlatMap(_star_pairs))


def _settle(joined: tuple[str, dict[str, list]]):
    representative, groups = joined
    failures = list(groups["failures"])
    for pair in groups["pairs"]:
        if failures:
            failure = failures[0]
            counter("copies_of_failed").inc()
            yield beam.pvalue.TaggedOutput(ERRORS, R.error_row(
                failure["stage"], failure["reason"],
                f"byte copy of {representative}: {failure['message']}",
                source_uri=pair["source_uri_b"], record_id=pair["record_id_b"],
                key=pair["key_b"]))
        else:
            counter("exact_copies").inc()
            yield pair


class SettleCopiesOfFailures(beam.PTransform):
    """Pair rows -> `exact_duplicates` rows (main) and error rows (`errors`).

    Args:
        failures: error rows of the decode and embed stages (the only stages
            a representative can fail in: read errors never become records).
    """

    def __init__(self, failures: beam.PCollection[dict]):
        super().__init__()
        self._failures = failures

    def expand(self, pairs: beam.PCollection[dict]):
        by_representative = pairs | "ByRepresentative" >> beam.Map(
            lambda row: (row["record_id_a"], row))
        failed = (self._failures
                  | "RecordFailures" >> beam.Filter(lambda row: row["record_id"] is not None)
                  | "ById" >> beam.Map(lambda row: (row["record_id"], row)))
        return ({"pairs": by_representative, "failures": failed}
                | "JoinOnRepresentative" >> beam.CoGroupByKey()
                | "Settle" >> beam.FlatMap(_settle).with_outputs(ERRORS, main="pairs"))


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
