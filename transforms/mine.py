"""Stage 5, mine: the embeddings table -> duplicate and near-duplicate pairs.

`MinePairs` takes the uri patterns of an embeddings table (the contract with
the embed stage, `schemas.embeddings_schema`), loads ids and vectors in one
worker, runs `transforms.mining.mine_pairs` down to the near-duplicate
threshold, and emits Arrow tables on two outputs:

- `duplicates`: score >= duplicate_threshold;
- `near_duplicates`: near_duplicate_threshold <= score < duplicate_threshold;

plus a `stats` output (one dict: mode, counts, timings) for `summary.json`.
Rows have `record_id_a < record_id_b`. A table made by another tool needs only
an id column and a vector column (names configurable; ids of any type are
read as strings; vectors `list` / `fixed_size_list` of any float or integer
type, normalised here); ids must be unique over all the files given.
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
from transforms.parquet_open import open_parquet
from transforms.schemas import PAIRS_SCHEMA

log = logging.getLogger(__name__)

DUPLICATES, NEAR_DUPLICATES, STATS = "duplicates", "near_duplicates", "stats"
ROWS_PER_TABLE = 1 << 20


class EmbeddingsTableError(ValueError):
    """The embeddings table is missing or not of the embeddings schema."""


def check_schema(path: str, schema: pa.Schema, id_column: str = "record_id",
                 embedding_column: str = "embedding") -> None:
    """Raises EmbeddingsTableError (one line) unless `schema` has an id and a vector column."""
    for column, what, flag in ((id_column, "id", "--id-column"),
                               (embedding_column, "vector", "--embedding-column")):
        if column not in schema.names:
            raise EmbeddingsTableError(
                f"{path}: no {what} column {column!r} (name it with {flag}); "
                f"columns: {', '.join(schema.names)}")
    vtype = schema.field(embedding_column).type
    is_list = (pa.types.is_list(vtype) or pa.types.is_large_list(vtype)
               or pa.types.is_fixed_size_list(vtype))
    if not (is_list and (pa.types.is_floating(vtype.value_type)
                         or pa.types.is_integer(vtype.value_type))):
        raise EmbeddingsTableError(f"{path}: column {embedding_column!r} is {vtype}, "
                                   "expected a list of numbers (list<float>, fixed_size_list)")


def match_files(patterns: str | list[str]) -> list[str]:
    """The files of each pattern, sorted, each once; a pattern matching nothing is an error."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = set()
    for pattern in patterns:
        try:
            found = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception as exc:  # noqa: BLE001 - Beam raises BeamIOError for several causes
            raise EmbeddingsTableError(f"embeddings {pattern}: {exc}") from None
        if not found:
            raise EmbeddingsTableError(f"no embeddings files match {pattern}")
        files.update(found)
    return sorted(files)


def _read_columns(path: str, columns: list[str], id_column: str = "record_id",
                  embedding_column: str = "embedding") -> pa.Table:
    """`columns` of one embeddings file, after checking it has an id and a vector column."""
    pf = open_parquet(path)
    check_schema(path, pf.schema_arrow, id_column, embedding_column)
    return pf.read(columns=columns)


def ids_as_strings(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """An id column of any type as strings (ids in every table clipdedup writes are strings)."""
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EmbeddingsTableError(f"ids of type {column.type} cannot be read as strings: {exc}") \
            from None


def _flat_values(chunk: pa.Array) -> np.ndarray:
    """The float values of a (fixed size) list chunk, honouring its offset."""
    return chunk.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)


def load_embeddings(patterns: str | list[str], id_column: str = "record_id",
                    embedding_column: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """Reads (record_ids sorted ascending, unit float32 vectors [N, d]) from Parquet files.

    Two passes keep peak memory at one copy of the vectors (2 GB at 1M x 512)
    plus one file: ids first, to learn each row's place in record_id order;
    then each file's vectors are copied straight to their rows and normalised
    in place. Row order is record_id order whatever the sharding, so
    approximate mining samples the same rows on every rerun.
    """
    files = match_files(patterns)
    id_parts = []
    for path in files:
        table = _read_columns(path, [id_column], id_column, embedding_column)
        id_parts.append(ids_as_strings(table.column(id_column)))
    file_ids = pa.chunked_array([c for part in id_parts for c in part.chunks], pa.string())
    order = pc.sort_indices(file_ids).to_numpy()
    ids = file_ids.take(pa.array(order)).to_numpy(zero_copy_only=False).astype(object)
    if len(ids) != len(set(ids)):
        raise EmbeddingsTableError(f"ids ({id_column}) in the embeddings table are not unique")
    n = len(ids)
    dest = np.empty(n, dtype=np.int64)
    dest[order] = np.arange(n)
    vectors = None
    row = 0
    for path in files:
        column = _read_columns(path, [embedding_column], id_column,
                               embedding_column).column(embedding_column)
        for chunk in column.chunks:
            if not len(chunk):
                continue
            if chunk.null_count:
                raise EmbeddingsTableError(f"{path}: {chunk.null_count} rows have no vector")
            values = _flat_values(chunk)
            if vectors is None:
                dim = len(values) // len(chunk)
                vectors = np.empty((n, dim), dtype=np.float32)
            if len(values) != len(chunk) * vectors.shape[1]:
                raise EmbeddingsTableError(f"{path}: embeddings are not all of width "
                                           f"{vectors.shape[1]}")
            vectors[dest[row:row + len(chunk)]] = values.reshape(len(chunk), -1)
            row += len(chunk)
        del column
    if vectors is None:
        return ids, np.zeros((0, 0), np.float32)
    for s in range(0, n, 65536):  # cosine, as the reference recipe; in place
        block = vectors[s:s + 65536]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        block /= np.where(norms > 0, norms, 1.0)
    return ids, vectors


def _pair_tables(ids: np.ndarray, i: np.ndarray, j: np.ndarray, score: np.ndarray):
    for start in range(0, len(i), ROWS_PER_TABLE):
        sl = slice(start, start + ROWS_PER_TABLE)
        yield pa.table({"record_id_a": pa.array(ids[i[sl]], pa.string()),
                        "record_id_b": pa.array(ids[j[sl]], pa.string()),
                        "score": pa.array(np.minimum(score[sl], 1.0), pa.float32())},
                       schema=PAIRS_SCHEMA)


class _MinePairsFn(beam.DoFn):
    def __init__(self, duplicate_threshold: float, near_duplicate_threshold: float,
                 mode: str, block_size: int, mining_options: dict | None = None,
                 id_column: str = "record_id", embedding_column: str = "embedding"):
        self._columns = (id_column, embedding_column)
        self._dup = duplicate_threshold
        self._near = near_duplicate_threshold
        self._mode = mode
        self._block_size = block_size
        self._options = dict(mining_options or {})

    def process(self, patterns: str | tuple[str, ...]):
        from transforms.mining import mine_pairs

        started = time.monotonic()
        ids, vectors = load_embeddings(patterns, *self._columns)
        loaded = time.monotonic()
        log.info("mining %d embeddings (mode=%s)", len(ids), self._mode)
        pairs, stats = mine_pairs(vectors, self._near, mode=self._mode,
                                  block_size=self._block_size, **self._options)
        is_dup = pairs.score >= self._dup
        for tag, mask in ((DUPLICATES, is_dup), (NEAR_DUPLICATES, ~is_dup)):
            counter(f"{tag}_found").inc(int(mask.sum()))
            for table in _pair_tables(ids, pairs.i[mask], pairs.j[mask], pairs.score[mask]):
                yield beam.pvalue.TaggedOutput(tag, table)
        counter("pairs_found").inc(len(pairs.i))
        yield beam.pvalue.TaggedOutput(STATS, dict(
            stats, embeddings=len(ids), duplicates=int(is_dup.sum()),
            near_duplicates=int((~is_dup).sum()), load_seconds=round(loaded - started, 3),
            mine_seconds=round(time.monotonic() - loaded, 3)))


class MinePairs(beam.PTransform):
    """uri pattern(s) of an embeddings table (one element: a str or a tuple of them,
    mined together) -> pair tables and one stats dict."""

    def __init__(self, duplicate_threshold: float, near_duplicate_threshold: float,
                 mode: str = "auto", block_size: int = 4096,
                 mining_options: dict | None = None, id_column: str = "record_id",
                 embedding_column: str = "embedding"):
        """`mining_options`: extra `mine_pairs` keywords (nprobe, nlist, recall_sample_size, ...)."""
        super().__init__()
        self._fn = _MinePairsFn(duplicate_threshold, near_duplicate_threshold, mode, block_size,
                                mining_options, id_column, embedding_column)

    def expand(self, patterns: beam.PCollection[str]):
        return patterns | "Mine" >> beam.ParDo(self._fn).with_outputs(
            DUPLICATES, NEAR_DUPLICATES, STATS)
