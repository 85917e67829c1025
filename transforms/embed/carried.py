"""Stage 3, embed (incremental nights): the previous run's vectors, copied as Arrow tables.

    previous embeddings part files (row groups) + ids not carried + renamed ids
        -> CarryVectors -> tonight's embeddings part files `carried-*.parquet`

`ReuseEmbeddings` decides per content which previous rows stay, without
their vectors. Every previous row is kept as it is unless its id is not
carried; a renamed row (its content now represented by another record) is
also written under the representative's id and location. So tonight's table
is the previous table filtered by two small id sets, which is done here a
row group at a time: a vector is never made into Python objects, and most
nights carry nearly every record.

Both id sets reach every worker as side inputs, as the mine job's
`CarryPairs` reads the ids not carried: they are what changed, not the
table.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms.metrics import counter
from transforms.write import SUFFIX

CARRIED_PREFIX = "carried"
_RENAMED_FIELDS = ("record_id", "source_uri", "key")


def carry_table(table: pa.Table, gone: pa.Array, renamed: dict[str, pa.Array],
                schema: pa.Schema) -> pa.Table:
    """One row group of the previous embeddings table -> its rows tonight: those not in
    `gone`, and the renamed ones (`renamed["from"]` -> the `record_id`, `source_uri`,
    `key` at the same position), as `schema` (a missing `phash` column is null)."""
    ids = table.column("record_id")
    parts = [_as_schema(table.filter(pc.invert(pc.is_in(ids, value_set=gone))), schema)]
    if len(renamed["from"]):
        position = pc.index_in(ids, value_set=renamed["from"])
        moved = table.filter(pc.is_valid(position))
        if moved.num_rows:
            at = position.filter(pc.is_valid(position))
            columns = {name: renamed[name].take(at) for name in _RENAMED_FIELDS}
            parts.append(_as_schema(moved, schema, columns))
    return pa.concat_tables(parts)


def _as_schema(table: pa.Table, schema: pa.Schema, replaced: dict | None = None) -> pa.Table:
    replaced = replaced or {}
    columns = [replaced[f.name].cast(f.type) if f.name in replaced
               else table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.table(columns, schema=schema)


class _CarryFn(beam.DoFn):
    def __init__(self, schema: pa.Schema):
        self._schema = schema
        self._sets = None  # (side-input values, their Arrow form), made once per worker

    def _arrow(self, gone: list, renamed: list):
        # the same side-input objects for every bundle of a job: converted once
        if self._sets is None or self._sets[0] is not gone or self._sets[1] is not renamed:
            columns = list(zip(*renamed)) if renamed else [()] * (1 + len(_RENAMED_FIELDS))
            arrays = {name: pa.array(list(values), pa.string())
                      for name, values in zip(("from",) + _RENAMED_FIELDS, columns)}
            self._sets = (gone, renamed, pa.array(gone, pa.string()), arrays)
        return self._sets[2:]

    def process(self, table: pa.Table, gone: list, renamed: list):
        gone_ids, renamed_ids = self._arrow(gone, renamed)
        out = carry_table(table, gone_ids, renamed_ids, self._schema)
        counter("embeddings_carried").inc(out.num_rows)
        if out.num_rows:
            yield out


class CarryVectors(beam.PTransform):
    """`{"not_carried": record ids, "renamed": (previous id, id, source_uri, key)}` ->
    tonight's part files of the previous run's carried rows.

    Args:
        previous: pattern of the previous run's embeddings part files (read-only).
        folder: tonight's embeddings folder; the files are `carried-*.parquet`, beside
            the newly embedded rows' `part-*.parquet`.
        schema: tonight's embeddings schema.
    """

    def __init__(self, previous: str, folder: str, schema: pa.Schema):
        super().__init__()
        self._previous, self._schema = previous, schema
        self._prefix = FileSystems.join(folder, CARRIED_PREFIX)

    def expand(self, ids: dict[str, beam.PCollection]):
        gone = ids["not_carried"] | "GoneList" >> beam.combiners.ToList()
        renamed = ids["renamed"] | "RenamedList" >> beam.combiners.ToList()
        p = ids["not_carried"].pipeline
        return (p
                | "ReadPreviousVectors" >> beam.io.ReadFromParquetBatched(
                    self._previous, validate=False)
                | "KeepCarried" >> beam.ParDo(_CarryFn(self._schema),
                                              beam.pvalue.AsSingleton(gone),
                                              beam.pvalue.AsSingleton(renamed))
                # num_shards 0: each bundle writes its own file, no shuffle of the vectors
                | "WriteCarried" >> beam.io.WriteToParquetBatched(
                    self._prefix, self._schema, file_name_suffix=SUFFIX, num_shards=0))
