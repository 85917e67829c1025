"""The approximate mode's partitions as tables: `centroids` and `partitions`.

An approximate run publishes the centroids it trained and every record's
probes (its `nprobe` nearest partitions) beside its pair tables, so that the
next night can assign only its new records and search only the partitions
they touch (`transforms.mine.incremental_approximate`). Both are small next
to the embeddings: `nlist * d` floats, and `nprobe` int32 per record.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.mine.approximate import PartitionIndex
from transforms.mine.transform import CENTROIDS, PARTITIONS
from transforms.parquet_open import open_parquet
from transforms.schemas import CENTROIDS_SCHEMA, PARTITIONS_SCHEMA


def centroids_table(centroids: np.ndarray) -> pa.Table:
    nlist, dim = centroids.shape
    values = pa.array(np.ascontiguousarray(centroids, np.float32).reshape(-1), pa.float32())
    return pa.table({"partition": pa.array(np.arange(nlist, dtype=np.int32)),
                     "centroid": pa.ListArray.from_arrays(
                         pa.array(np.arange(0, (nlist + 1) * dim, dim, dtype=np.int32)), values)},
                    schema=CENTROIDS_SCHEMA)


def _lists(block: np.ndarray, values: pa.DataType) -> pa.ListArray:
    width = block.shape[1]
    offsets = np.arange(0, (block.shape[0] + 1) * width, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(block.reshape(-1), values))


def partitions_tables(ids: pa.Array, probes: np.ndarray, rows: int,
                      scores: np.ndarray | None = None) -> Iterator[pa.Table]:
    """PARTITIONS_SCHEMA tables of at most `rows` rows: row r of `probes` (and of
    `scores`, its scores against them) is `ids[r]`'s."""
    for s in range(0, len(ids), max(1, rows)):
        block = np.ascontiguousarray(probes[s:s + rows], np.int32)
        score_lists = (_lists(np.ascontiguousarray(scores[s:s + rows], np.float32),
                              pa.float32()) if scores is not None
                       else pa.nulls(block.shape[0], pa.list_(pa.float32())))
        yield pa.table({"record_id": ids[s:s + rows], "probes": _lists(block, pa.int32()),
                        "scores": score_lists}, schema=PARTITIONS_SCHEMA)


def index_tables(ids: pa.Array, index: PartitionIndex, rows: int
                 ) -> Iterator[tuple[str, pa.Table]]:
    """`(table name, table)` of everything the next night needs of `index`."""
    yield CENTROIDS, centroids_table(index.centroids)
    for table in partitions_tables(ids, index.probes, rows, index.scores):
        yield PARTITIONS, table


def read_centroids(path: str) -> np.ndarray:
    """`[nlist, d]` float32, row q the centroid of partition q."""
    table = open_parquet(path).read().sort_by("partition")
    column = table.column("centroid").combine_chunks()
    if not len(column):
        return np.zeros((0, 0), np.float32)
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return values.reshape(len(column), -1)


def _rows_of_lists(column: pa.ChunkedArray, width: int, dtype) -> np.ndarray | None:
    """`[len(column), width]` of a list column, or None unless it has rows and every row
    holds `width` values."""
    column = column.combine_chunks()
    lengths = pc.list_value_length(column)
    if not len(column) or lengths.null_count or pc.any(pc.not_equal(lengths, width)).as_py():
        return None
    return column.flatten().to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, width)


def read_probes(path: str, ids: pa.Array, nprobe: int
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """`(probes [len(ids), nprobe] int32, scores [len(ids), nprobe] float32 or None,
    found [len(ids)] bool)`: the probes the table at `path` holds for each of `ids`, and
    the scores against them where every row has them; rows not found are zeros. A table
    of another width than `nprobe` finds nothing."""
    table = open_parquet(path).read()
    out = np.zeros((len(ids), nprobe), np.int32)
    probes = _rows_of_lists(table.column("probes"), nprobe, np.int32)
    if probes is None:
        return out, None, np.zeros(len(ids), bool)
    pos = pc.index_in(ids, value_set=table.column("record_id").combine_chunks())
    found = pc.is_valid(pos).to_numpy(zero_copy_only=False)
    rows = pos.filter(pc.is_valid(pos)).to_numpy(zero_copy_only=False)
    out[found] = probes[rows]
    kept = (_rows_of_lists(table.column("scores"), nprobe, np.float32)
            if "scores" in table.column_names else None)
    scores = None
    if kept is not None:
        scores = np.zeros((len(ids), nprobe), np.float32)
        scores[found] = kept[rows]
    return out, scores, found
