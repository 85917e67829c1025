"""Stage 1, read (incremental nights): which files are unchanged since the previous run.

    FileMetadata of tonight's files + the previous run's shard rows
        -> JoinByUri (CoGroupByKey) -> Split
        -> {"read": FileMetadata to read, "carried_shards": previous shard rows,
            "unchanged": uris}
    rows of a previous table -> RowsOfUnchangedFiles (the uris as a side input) -> rows

A file is unchanged when the listing gives it the same uri, size and
modification time (`FileMetadata.last_updated_in_seconds`) as the previous
run's `shards.parquet` row of it: then it is not opened again and its rows in
the previous run's tables are carried forward. A stamp of 0 (unknown) or a
previous row without the columns (a run of an older clipdedup) never matches,
so such a file is read again. On `gs://` Beam's `FileMetadata` gives the
object's update time, not its generation; where a filesystem gives a
generation or ETag it belongs beside the size and stamp here.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata

from transforms import records as R
from transforms.metrics import counter

READ, CARRIED_SHARDS, UNCHANGED = "read", "carried_shards", "unchanged"


def _unchanged(metadata: FileMetadata, row: dict) -> bool:
    stamp = metadata.last_updated_in_seconds
    return (bool(stamp) and row.get("file_size") == metadata.size_in_bytes
            and row.get("last_modified") == stamp)


def _split(joined: tuple[str, dict[str, list]]):
    uri, sides = joined
    now, before = list(sides["now"]), list(sides["before"])
    if not now:
        counter("files_gone").inc()  # removed from the input: its rows are not carried
        return
    if before and _unchanged(now[0], before[0]):
        counter("files_carried").inc()
        yield beam.pvalue.TaggedOutput(CARRIED_SHARDS, before[0])
        yield beam.pvalue.TaggedOutput(UNCHANGED, uri)
        return
    yield now[0]


class SplitUnchangedFiles(beam.PTransform):
    """`FileMetadata` -> {"read": files to open, "carried_shards": the previous
    shard rows of unchanged files, "unchanged": their uris}.

    Args:
        previous_shards: rows of the previous run's `shards.parquet`.
    """

    def __init__(self, previous_shards: beam.PCollection[dict]):
        super().__init__()
        self._previous = previous_shards

    def expand(self, files: beam.PCollection[FileMetadata]) -> dict[str, beam.PCollection]:
        now = files | "KeyByPath" >> beam.Map(lambda m: (m.path, m))
        before = self._previous | "KeyByUri" >> beam.Map(lambda r: (r["source_uri"], r))
        split = ({"now": now, "before": before}
                 | "JoinByUri" >> beam.CoGroupByKey()
                 | "Split" >> beam.FlatMap(_split).with_outputs(
                     CARRIED_SHARDS, UNCHANGED, main=READ))
        return {READ: split[READ], CARRIED_SHARDS: split[CARRIED_SHARDS],
                UNCHANGED: split[UNCHANGED]}


class RowsOfUnchangedFiles(beam.PTransform):
    """Rows of a previous table -> those whose `uri_field` is an unchanged file.

    The uris are a side input: one per input file, far fewer than records.
    """

    def __init__(self, unchanged: beam.PCollection[str], uri_field: str = "source_uri"):
        super().__init__()
        self._unchanged = unchanged
        self._field = uri_field

    def expand(self, rows: beam.PCollection[dict]) -> beam.PCollection[dict]:
        uris = self._unchanged | "UriSet" >> beam.CombineGlobally(
            beam.combiners.ToSetCombineFn())
        field = self._field
        return rows | "OfUnchangedFiles" >> beam.Filter(
            lambda row, keep: row[field] in keep, beam.pvalue.AsSingleton(uris))


def embedded_record(row: dict) -> R.ImageRecord:
    """A previous embeddings row as the (byte-less) record the index pass would find."""
    return R.ImageRecord(row["record_id"], row["source_uri"], row["key"], row["sha256"],
                         row["file_size"])


def copy_record(row: dict) -> R.ImageRecord:
    """The copy (`b`) of a previous exact_duplicates row as a byte-less record (a copy
    has its representative's bytes; its size is not in that table and not needed)."""
    return R.ImageRecord(row["record_id_b"], row["source_uri_b"], row["key_b"], row["sha256"], 0)
