"""Stage 5, mine (incremental nights): carried pairs plus new records against all.

    previous pair tables -> ReadPreviousPairs -> CarryPairs (ids not carried dropped,
        current thresholds applied) -> duplicates / near_duplicates tables
    embeddings table + ids new to mining -> MineNewAgainstAll (exact) -> the same outputs

A pair of two old records (same id, same content, so the same vectors as the
previous run) is in the previous run's tables exactly when a full run would
find it, as long as the previous run mined exactly at a threshold no higher
than tonight's; the launcher checks that and otherwise mines in full. Every
pair with at least one new record is found here by blocked exact search of
the new rows against all rows, so in `exact` mode the union equals a full
run's tables pair for pair (scores may differ in the last bits: another tile
shape). Rows keep `record_id_a < record_id_b`.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms.metrics import counter
from transforms.mine.transform import (
    DUPLICATES,
    NEAR_DUPLICATES,
    ROWS_PER_TABLE,
    STATS,
    PairTables,
    load_embeddings_arrow,
)
from transforms.parquet_open import open_parquet
from transforms.schemas import PAIRS_SCHEMA

log = logging.getLogger(__name__)


def read_ids(pattern: str) -> pa.Array:
    """The `record_id` column of the small id tables the embed job wrote (on the engine)."""
    from transforms.mine.transform import match_files

    parts = [open_parquet(path).read(columns=["record_id"]).column("record_id")
             for path in match_files(pattern)]
    return pa.chunked_array([c for part in parts for c in part.chunks], pa.string()
                            ).combine_chunks()


def load_with_new(patterns, columns: tuple[str, str], new_ids: str):
    """`(ids, vectors, is_new)`: tonight's embeddings table (`load_embeddings_arrow`) and
    which rows the id table `new_ids` names new to mining."""
    ids, vectors = load_embeddings_arrow(patterns, *columns)
    is_new = pc.is_in(ids, value_set=read_ids(new_ids)).to_numpy(zero_copy_only=False)
    return ids, vectors, is_new


def read_pair_tables(path: str):
    """A pair table (one Parquet file), a row group at a time."""
    pf = open_parquet(path)
    for group in range(pf.num_row_groups):
        yield pf.read_row_group(group).select(PAIRS_SCHEMA.names).cast(PAIRS_SCHEMA)


def _carry(table: pa.Table, gone: pa.Array, duplicate_threshold: float,
           near_duplicate_threshold: float):
    # Compared as float32, as numpy compares the float32 scores of a full run (NEP 50):
    # a score that equals a threshold in float32 lands on the same side.
    near = pa.scalar(near_duplicate_threshold, pa.float32())
    dup = pa.scalar(duplicate_threshold, pa.float32())
    keep = pc.and_(pc.invert(pc.or_(pc.is_in(table["record_id_a"], value_set=gone),
                                    pc.is_in(table["record_id_b"], value_set=gone))),
                   pc.greater_equal(table["score"], near))
    table = table.filter(keep)
    is_dup = pc.greater_equal(table["score"], dup)
    for tag, rows in ((DUPLICATES, table.filter(is_dup)),
                      (NEAR_DUPLICATES, table.filter(pc.invert(is_dup)))):
        if rows.num_rows:
            counter("pairs_carried").inc(rows.num_rows)
            yield beam.pvalue.TaggedOutput(tag, rows)


def previous_pair_tables(previous: str) -> list[str]:
    """The pair tables of the published run folder `previous`."""
    return [FileSystems.join(previous, f"{tag}.parquet") for tag in (DUPLICATES, NEAR_DUPLICATES)]


def carry_previous_pairs(previous: str, gone: pa.Array, duplicate_threshold: float,
                         near_duplicate_threshold: float):
    """`CarryPairs` in one step: the previous run's pairs of old records, as tagged
    outputs, read a row group at a time."""
    for path in previous_pair_tables(previous):
        for table in read_pair_tables(path):
            yield from _carry(table, gone, duplicate_threshold, near_duplicate_threshold)


class _CarryFn(beam.DoFn):
    def __init__(self, not_carried: str, duplicate_threshold: float,
                 near_duplicate_threshold: float):
        self._pattern = not_carried
        self._dup = duplicate_threshold
        self._near = near_duplicate_threshold
        self._gone = None

    def setup(self):
        self._gone = read_ids(self._pattern)

    def process(self, table: pa.Table):
        yield from _carry(table, self._gone, self._dup, self._near)


class CarryPairs(beam.PTransform):
    """Paths of the previous run's pair tables -> {duplicates, near_duplicates}: Arrow
    tables of the pairs whose records are both old, split at tonight's thresholds.

    Args:
        not_carried: pattern of the id table of previous embedded ids whose pairs are
            dropped (read by each worker once: no side-input stage).
    """

    def __init__(self, not_carried: str, duplicate_threshold: float,
                 near_duplicate_threshold: float):
        super().__init__()
        self._fn = _CarryFn(not_carried, duplicate_threshold, near_duplicate_threshold)

    def expand(self, paths: beam.PCollection[str]):
        out = (paths
               | "ReadPreviousPairs" >> beam.FlatMap(read_pair_tables)
               | "DropNotCarried" >> beam.ParDo(self._fn).with_outputs(
                   DUPLICATES, NEAR_DUPLICATES))
        return {DUPLICATES: out[DUPLICATES], NEAR_DUPLICATES: out[NEAR_DUPLICATES]}


def iter_new_pairs(vectors: np.ndarray, is_new: np.ndarray, threshold: float,
                   block_size: int = 4096):
    """`(i, j, score)` arrays, `i < j`, of every pair with score >= threshold that has at
    least one new row, each pair once, one tile at a time (new rows x all rows)."""
    n = vectors.shape[0]
    new_rows = np.flatnonzero(is_new)
    bs = max(1, block_size)
    for r0 in range(0, new_rows.size, bs):
        rows = new_rows[r0:r0 + bs]
        a = vectors[rows]
        for c0 in range(0, n, bs):
            scores = a @ vectors[c0:c0 + bs].T
            r, c = np.nonzero(scores >= threshold)
            cols = c + c0
            # a new-new pair is found from both ends: keep it from its smaller row
            keep = (cols != rows[r]) & (~is_new[cols] | (cols > rows[r]))
            r, cols = r[keep], cols[keep]
            if not r.size:
                continue
            i, j = np.minimum(rows[r], cols), np.maximum(rows[r], cols)
            order = np.lexsort((j, i))
            yield i[order], j[order], scores[r, cols - c0][order]


class _MineNewFn(beam.DoFn):
    def __init__(self, new_ids: str, duplicate_threshold: float,
                 near_duplicate_threshold: float, block_size: int, id_column: str,
                 embedding_column: str, rows_per_table: int):
        self._new_ids = new_ids
        self._dup = duplicate_threshold
        self._near = near_duplicate_threshold
        self._block_size = block_size
        self._columns = (id_column, embedding_column)
        self._rows = rows_per_table

    def process(self, patterns):
        started = time.monotonic()
        ids, vectors, is_new = load_with_new(patterns, self._columns, self._new_ids)
        loaded = time.monotonic()
        log.info("mining %d new embeddings against %d", int(is_new.sum()), len(ids))
        out = PairTables(ids, self._rows, self._dup)
        if len(ids):
            for i, j, score in iter_new_pairs(vectors, is_new, self._near, self._block_size):
                yield from out.add(i, j, score)
        yield from out.flush()
        found = out.count()
        counter("pairs_found").inc(found)
        yield beam.pvalue.TaggedOutput(STATS, {
            "mode": "exact", "embeddings": len(ids), "embeddings_new": int(is_new.sum()),
            "pairs_new": found, "load_seconds": round(loaded - started, 3),
            "mine_seconds": round(time.monotonic() - loaded, 3)})


class MineNewAgainstAll(beam.PTransform):
    """Pattern(s) of tonight's embeddings table (one element) -> {duplicates,
    near_duplicates: Arrow tables of the pairs with a new record, stats: one dict}.

    Args:
        new_ids: pattern of the id table of the ids new to mining; ids not in the
            embeddings table (content that failed to decode) are ignored.
    """

    def __init__(self, new_ids: str, duplicate_threshold: float,
                 near_duplicate_threshold: float, block_size: int = 4096,
                 id_column: str = "record_id", embedding_column: str = "embedding",
                 rows_per_table: int = ROWS_PER_TABLE):
        super().__init__()
        self._fn = _MineNewFn(new_ids, duplicate_threshold, near_duplicate_threshold, block_size,
                              id_column, embedding_column, rows_per_table)

    def expand(self, patterns: beam.PCollection):
        return patterns | "MineNew" >> beam.ParDo(self._fn).with_outputs(
            DUPLICATES, NEAR_DUPLICATES, STATS)
