"""Stage 5, mine: the embeddings table -> duplicate and near-duplicate pairs.

`MinePairs` takes the uri patterns of an embeddings table (the contract with
the embed stage, `schemas.embeddings_schema`), loads ids and vectors in one
worker, runs `transforms.mine.transform` down to the near-duplicate
threshold, and emits Arrow tables on two outputs:

- `duplicates`: score >= duplicate_threshold;
- `near_duplicates`: near_duplicate_threshold <= score < duplicate_threshold;

plus a `stats` output (one dict: mode, counts, timings) for `summary.json`.
Rows have `record_id_a < record_id_b`. Tables go out as they fill
(`rows_per_table` rows), so the pair set is never held whole: exact mode
streams tiles as found (tables in tile order), approximate mode holds its
pairs at 12 bytes each to drop repeats, then streams them sorted. A table made by another tool needs only
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
CENTROIDS, PARTITIONS = "centroids", "partitions"  # approximate mode: its partitions
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


def chunk_vectors(chunk: pa.Array, where: str, dim: int | None = None) -> np.ndarray:
    """`[len(chunk), d]` float32 of a non-empty (fixed size) list chunk of vectors, `d`
    being `dim` or else the chunk's own width (possibly a read-only view of the chunk).

    Raises EmbeddingsTableError (naming `where`) for rows without a vector, or vectors
    not all of that width.
    """
    if chunk.null_count:
        raise EmbeddingsTableError(f"{where}: {chunk.null_count} rows have no vector")
    values = _flat_values(chunk)
    dim = dim or len(values) // len(chunk)
    # The total alone would let rows of 1 and 3 values pass as two rows of 2.
    if len(values) != len(chunk) * dim or (
            not pa.types.is_fixed_size_list(chunk.type)
            and pc.min_max(pc.list_value_length(chunk)).as_py() != {"min": dim, "max": dim}):
        raise EmbeddingsTableError(f"{where}: embeddings are not all of width {dim}")
    return values.reshape(len(chunk), dim)


def load_embeddings(patterns: str | list[str], id_column: str = "record_id",
                    embedding_column: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """Reads (record_ids sorted ascending, unit float32 vectors [N, d]) from Parquet files.

    Two passes keep peak memory at one copy of the vectors (2 GB at 1M x 512)
    plus one file: ids first, to learn each row's place in record_id order;
    then each file's vectors are copied straight to their rows and normalised
    in place. Row order is record_id order whatever the sharding, so
    approximate mining samples the same rows on every rerun.
    """
    ids, vectors = load_embeddings_arrow(patterns, id_column, embedding_column)
    return ids.to_numpy(zero_copy_only=False).astype(object), vectors


def load_embeddings_arrow(patterns: str | list[str], id_column: str = "record_id",
                          embedding_column: str = "embedding") -> tuple[pa.Array, np.ndarray]:
    """`load_embeddings` with the ids as one Arrow string array, not Python objects.

    Pair tables are made from it with `take`, so no Python string is made
    per pair (nor per id).
    """
    files = match_files(patterns)
    id_parts = []
    for path in files:
        table = _read_columns(path, [id_column], id_column, embedding_column)
        id_parts.append(ids_as_strings(table.column(id_column)))
    file_ids = pa.chunked_array([c for part in id_parts for c in part.chunks], pa.string())
    order = pc.sort_indices(file_ids).to_numpy()
    ids = file_ids.take(pa.array(order)).combine_chunks()
    if pc.count_distinct(ids, mode="all").as_py() != len(ids):
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
            block = chunk_vectors(chunk, path, None if vectors is None else vectors.shape[1])
            if vectors is None:
                vectors = np.empty((n, block.shape[1]), dtype=np.float32)
            vectors[dest[row:row + len(chunk)]] = block
            row += len(chunk)
        del column
    if vectors is None:
        return ids, np.zeros((0, 0), np.float32)
    normalise_rows(vectors, ids)
    return ids, vectors


def normalise_rows(vectors: np.ndarray, ids: pa.Array, block: int = 65536) -> None:
    """Scales each row of `vectors` to unit length in place (cosine, as the reference
    recipe); zero rows stay zero.

    Raises EmbeddingsTableError naming the first record whose vector holds NaN or an
    infinity: such a row scores NaN against every other, so exact mining would leave
    it out of every pair without a word, and k-means refuses it.
    """
    bad, first = 0, None
    for s in range(0, len(vectors), block):
        rows = vectors[s:s + block]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        broken = np.flatnonzero(~np.isfinite(norms[:, 0]))
        if broken.size:
            bad += broken.size
            first = first if first is not None else ids[s + int(broken[0])].as_py()
            norms[broken] = 1.0
        rows /= np.where(norms > 0, norms, 1.0)
    if bad:
        raise EmbeddingsTableError(f"{bad} vectors hold NaN or infinite values (the first: "
                                   f"record {first!r}); clipdedup needs finite embeddings")


class _TableBatcher:
    """Gathers pair chunks of one output into PAIRS_SCHEMA tables of `rows` rows.

    Exact mining hands over one tile's pairs at a time, often a handful;
    each table becomes a Parquet row group, so chunks are gathered to
    `rows` rows (the last table may be shorter). Holds under `2 * rows`
    pairs at 12 bytes each.
    """

    def __init__(self, ids: pa.Array, rows: int):
        self._ids = ids
        self._rows = max(1, int(rows))
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._held = 0
        self.count = 0

    def add(self, i: np.ndarray, j: np.ndarray, score: np.ndarray):
        """The full tables this chunk completes."""
        if not i.size:
            return
        self._parts.append((i, j, score))
        self._held += i.size
        self.count += i.size
        if self._held >= self._rows:
            yield from self._drain(final=False)

    def flush(self):
        """Whatever is left, as tables."""
        yield from self._drain(final=True)

    def _drain(self, final: bool):
        if not self._parts:
            return
        i, j, score = (np.concatenate(c) for c in zip(*self._parts))
        self._parts, self._held = [], 0
        full = i.size if final else i.size - i.size % self._rows
        for s in range(0, full, self._rows):
            yield self._table(i[s:s + self._rows], j[s:s + self._rows],
                              score[s:s + self._rows])
        if full < i.size:
            self._parts.append((i[full:].copy(), j[full:].copy(), score[full:].copy()))
            self._held = i.size - full

    def _table(self, i: np.ndarray, j: np.ndarray, score: np.ndarray) -> pa.Table:
        # Row order is record_id order (load_embeddings), so i < j gives a < b.
        return pa.table({"record_id_a": self._ids.take(pa.array(i)),
                         "record_id_b": self._ids.take(pa.array(j)),
                         "score": pa.array(np.minimum(score, 1.0), pa.float32())},
                        schema=PAIRS_SCHEMA)


class PairTables:
    """The two pair outputs of a mining step: pairs split at the duplicate threshold
    and gathered into tables (`_TableBatcher`), handed out as tagged outputs."""

    def __init__(self, ids: pa.Array, rows: int, duplicate_threshold: float):
        self._dup = duplicate_threshold
        self._out = {DUPLICATES: _TableBatcher(ids, rows), NEAR_DUPLICATES: _TableBatcher(ids, rows)}

    def add(self, i: np.ndarray, j: np.ndarray, score: np.ndarray):
        is_dup = score >= self._dup
        for tag, mask in ((DUPLICATES, is_dup), (NEAR_DUPLICATES, ~is_dup)):
            for table in self._out[tag].add(i[mask], j[mask], score[mask]):
                yield beam.pvalue.TaggedOutput(tag, table)

    def flush(self):
        for tag, batcher in self._out.items():
            for table in batcher.flush():
                yield beam.pvalue.TaggedOutput(tag, table)

    def count(self, tag: str | None = None) -> int:
        """Pairs handed in, of one output or both."""
        return sum(b.count for t, b in self._out.items() if tag in (None, t))


def index_outputs(ids: pa.Array, index, rows: int):
    """The `centroids` and `partitions` tables of an approximate mining, as tagged outputs."""
    from transforms.mine.partition_tables import index_tables

    for tag, table in index_tables(ids, index, rows):
        yield beam.pvalue.TaggedOutput(tag, table)


class _MinePairsFn(beam.DoFn):
    def __init__(self, duplicate_threshold: float, near_duplicate_threshold: float,
                 mode: str, block_size: int, mining_options: dict | None = None,
                 id_column: str = "record_id", embedding_column: str = "embedding",
                 rows_per_table: int = ROWS_PER_TABLE):
        self._columns = (id_column, embedding_column)
        self._dup = duplicate_threshold
        self._near = near_duplicate_threshold
        self._mode = mode
        self._block_size = block_size
        self._options = dict(mining_options or {})
        self._rows = rows_per_table

    def process(self, patterns: str | tuple[str, ...]):
        from transforms.mine import stream_pairs

        started = time.monotonic()
        ids, vectors = load_embeddings_arrow(patterns, *self._columns)
        loaded = time.monotonic()
        log.info("mining %d embeddings (mode=%s)", len(ids), self._mode)
        index: list = []
        chunks, stats = stream_pairs(vectors, self._near, mode=self._mode,
                                     block_size=self._block_size, max_pairs=self._rows,
                                     index_out=index, **self._options)
        del vectors  # the stream holds what it needs; freed with it
        out = PairTables(ids, self._rows, self._dup)
        # Tables leave as soon as they fill, so the job holds one chunk and
        # two part-filled tables, not the pair set; counts are kept on the way.
        for chunk in chunks:
            yield from out.add(chunk.i, chunk.j, chunk.score)
        yield from out.flush()
        for tag in (DUPLICATES, NEAR_DUPLICATES):
            counter(f"{tag}_found").inc(out.count(tag))
        counter("pairs_found").inc(out.count())
        if index:  # approximate: the partitions, for the next night
            yield from index_outputs(ids, index[0], self._rows)
        yield beam.pvalue.TaggedOutput(STATS, dict(
            stats, embeddings=len(ids), duplicates=out.count(DUPLICATES),
            near_duplicates=out.count(NEAR_DUPLICATES),
            load_seconds=round(loaded - started, 3),
            mine_seconds=round(time.monotonic() - loaded, 3)))


class MinePairs(beam.PTransform):
    """uri pattern(s) of an embeddings table (one element: a str or a tuple of them,
    mined together) -> pair tables and one stats dict."""

    def __init__(self, duplicate_threshold: float, near_duplicate_threshold: float,
                 mode: str = "auto", block_size: int = 4096,
                 mining_options: dict | None = None, id_column: str = "record_id",
                 embedding_column: str = "embedding", rows_per_table: int = ROWS_PER_TABLE):
        """`mining_options`: extra `mine_pairs` keywords (nprobe, nlist, recall_sample_size, ...).
        `rows_per_table`: rows of each output table (and most pairs held per output)."""
        super().__init__()
        self._fn = _MinePairsFn(duplicate_threshold, near_duplicate_threshold, mode, block_size,
                                mining_options, id_column, embedding_column, rows_per_table)

    def expand(self, patterns: beam.PCollection[str]):
        return patterns | "Mine" >> beam.ParDo(self._fn).with_outputs(
            DUPLICATES, NEAR_DUPLICATES, STATS, CENTROIDS, PARTITIONS)
