"""Stage 3, embed (incremental nights): reuse the previous run's vector of each sha256.

    tonight's records (no bytes) + previous embeddings rows (no vectors)
        -> KeyBySha256 -> JoinOnSha256 (CoGroupByKey) -> Reuse
        -> embeddings rows without their vectors (main), ids to embed, ids new to
           mining, ids not carried, renamed ids
    previous embeddings part files + ids not carried + renamed ids
        -> CarryVectors (`transforms.embed.carried`) -> tonight's table of them

Per sha256, tonight's representative is its smallest record_id (as in
`FindByteCopies`). When the previous run embedded that content (same model
and preprocessing, checked by the launcher), its vector, width, height and
size are reused under the representative's id and location; only content
never seen goes on to be decoded and embedded (`to_embed`). The join carries
no vector: each previous row is either kept as it is, or not carried, or
(its content now represented by another record) not carried under its own
id and `renamed` to the representative's, so the vectors can be copied from
the previous part files as Arrow tables, never as a Python list per record.

For mining, a record is *old* when the previous run embedded that very
record_id with that very sha256: its vector is unchanged, so its pairs with
other old records can be carried forward. Every other representative is
`new` (mined against all), and every previous embedded id that is not old
tonight (removed, rewritten, or now a byte copy) is `not_carried`: pairs
naming it are dropped from the carried table.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.metrics import counter
from transforms.records import ImageRecord

TO_EMBED, NEW, NOT_CARRIED, RENAMED = "to_embed", "new", "not_carried", "renamed"
# <staging>/_incremental/{new,not_carried}/: the id tables the mine job reads; they are
# removed before the run is published.
INCREMENTAL = "_incremental"


def _reuse(joined: tuple[str, dict[str, list]]):
    _sha256, sides = joined
    members = sorted(sides["now"], key=lambda r: r.record_id)
    rows = sorted(sides["before"], key=lambda row: row["record_id"])
    before = rows[0] if rows else None
    # A run embeds one record per content; should a table hold more, only the first is
    # reused, and the others leave it as removed records do.
    for row in rows[1 if members else 0:]:
        yield beam.pvalue.TaggedOutput(NOT_CARRIED, row["record_id"])
    if not members:
        return
    rep = members[0]
    if before is None:
        yield beam.pvalue.TaggedOutput(TO_EMBED, rep.record_id)
        yield beam.pvalue.TaggedOutput(NEW, rep.record_id)
        return
    counter("embeddings_reused").inc()
    if rep.record_id != before["record_id"]:
        yield beam.pvalue.TaggedOutput(NEW, rep.record_id)
        yield beam.pvalue.TaggedOutput(NOT_CARRIED, before["record_id"])
        yield beam.pvalue.TaggedOutput(RENAMED, (before["record_id"], rep.record_id,
                                                 rep.source_uri, rep.key))
    yield dict(before, record_id=rep.record_id, source_uri=rep.source_uri, key=rep.key)


class ReuseEmbeddings(beam.PTransform):
    """{"records": `ImageRecord` of every record tonight (carried and read, no bytes),
    "previous": previous embeddings rows, without their vectors} -> {"embeddings":
    reused rows (as read: no vectors), "to_embed", "new", "not_carried": record ids,
    "renamed": `(previous id, tonight's id, source_uri, key)`}."""

    def expand(self, tables: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        now = tables["records"] | "KeyRecords" >> beam.Map(
            lambda r: (r.sha256, ImageRecord(r.record_id, r.source_uri, r.key, r.sha256,
                                             r.file_size)))
        before = tables["previous"] | "KeyPrevious" >> beam.Map(lambda row: (row["sha256"], row))
        out = ({"now": now, "before": before}
               | "JoinOnSha256" >> beam.CoGroupByKey()
               | "Reuse" >> beam.FlatMap(_reuse).with_outputs(
                   TO_EMBED, NEW, NOT_CARRIED, RENAMED, main="embeddings"))
        return {"embeddings": out.embeddings, TO_EMBED: out[TO_EMBED], NEW: out[NEW],
                NOT_CARRIED: out[NOT_CARRIED], RENAMED: out[RENAMED]}
