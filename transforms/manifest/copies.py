"""Byte copies (`exact_duplicates` rows) sorted by which of their two ends was embedded.

`ClassifyByteCopies`: `exact_duplicates` rows and the embedded ids ->

- `edges`: both ends embedded: `(id_a, id_b, 1.0)`, an edge like a mined pair;
- `copies`: one end embedded (the representative): `(representative_id,
  Copy)`, the other end, not embedded, joins the representative's group as an
  `exact_copy` with its own `source_uri` / `key`;
- `orphans`: neither end embedded (a copy of a record that failed to decode;
  the errors table has it): one `1` each, counted as
  `copies_of_unembedded_records`.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

EDGES, COPIES, ORPHANS = "edges", "copies", "orphans"


class Copy(NamedTuple):
    record_id: str
    source_uri: str | None
    key: str | None


def _with_end_a(element):
    _, grouped = element
    a_embedded = bool(grouped["embedded"])
    for row in grouped["rows"]:
        yield row["record_id_b"], (row, a_embedded)


def _classify(element):
    _, grouped = element
    b_embedded = bool(grouped["embedded"])
    for row, a_embedded in grouped["rows"]:
        a, b = row["record_id_a"], row["record_id_b"]
        if a_embedded and b_embedded:
            yield beam.pvalue.TaggedOutput(EDGES, (a, b, 1.0))
        elif a_embedded:
            yield beam.pvalue.TaggedOutput(COPIES, (a, Copy(b, row.get("source_uri_b"),
                                                            row.get("key_b"))))
        elif b_embedded:
            yield beam.pvalue.TaggedOutput(COPIES, (b, Copy(a, row.get("source_uri_a"),
                                                            row.get("key_a"))))
        else:
            yield beam.pvalue.TaggedOutput(ORPHANS, 1)


class ClassifyByteCopies(beam.PTransform):
    """`{"rows": exact_duplicates dicts, "ids": embedded record ids}` -> edges / copies / orphans."""

    def expand(self, inputs: dict):
        embedded = inputs["ids"] | "Embedded" >> beam.Map(lambda rid: (rid, True))
        by_a = inputs["rows"] | "ByEndA" >> beam.Map(lambda row: (row["record_id_a"], row))
        by_b = ({"rows": by_a, "embedded": embedded}
                | "JoinEndA" >> beam.CoGroupByKey()
                | "ByEndB" >> beam.FlatMap(_with_end_a))
        return ({"rows": by_b, "embedded": embedded}
                | "JoinEndB" >> beam.CoGroupByKey()
                | "Classify" >> beam.FlatMap(_classify).with_outputs(EDGES, COPIES, ORPHANS))
