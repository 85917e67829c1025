"""Stage 5: mine the embeddings table for duplicate and near-duplicate pairs.

`MinePairs` takes the uri pattern of an embeddings table (the contract with
the embed stage, `schemas.embeddings_schema`), loads ids and vectors in one
worker, runs `transforms.mining.mine_pairs` down to the near-duplicate
threshold, and emits Arrow tables on two outputs:

- `duplicates`: score >= duplicate_threshold;
- `near_duplicates`: near_duplicate_threshold <= score < duplicate_threshold;

plus a `stats` output (one dict: mode, counts, timings) for `summary.json`.
Rows have `record_id_a < record_id_b`. Any table of the embeddings schema
works, including one made by another tool.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.metrics import counter
from transforms.schemas import PAIRS_SCHEMA

log = logging.getLogger(__name__)

DUPLICATES, NEAR_DUPLICATES, STATS = "duplicates", "near_duplicates", "stats"
ROWS_PER_TABLE = 1 << 20


class EmbeddingsTableError(ValueError):
    """The embeddings table is missing or not of the embeddings schema."""


def _read_columns(path: str, columns: list[str]) -> pa.Table:
    """`columns` of one embeddings file, after checking it has the embeddings schema."""
    with FileSystems.open(path) as f:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow
        missing = {"record_id", "embedding"} - set(schema.names)
        vtype = schema.field("embedding").type if "embedding" in schema.names else None
        if missing or not (pa.types.is_fixed_size_list(vtype) or pa.types.is_list(vtype)):
            raise EmbeddingsTableError(
                f"{path}: expected columns record_id and embedding (list<float32>), "
                f"got {schema}")
        return pf.read(columns=columns)


def _flat_values(chunk: pa.Array) -> np.ndarray:
    """The float values of a (fixed size) list chunk, honouring its offset."""
    return chunk.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)


def load_embeddings(pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads (record_ids sorted ascending, unit float32 vectors [N, d]) from Parquet files.

    Two passes keep peak memory at one copy of the vectors (2 GB at 1M x 512)
    plus one file: ids first, to learn each row's place in record_id order;
    then each file's vectors are copied straight to their rows and normalised
    in place. Row order is record_id order whatever the sharding, so
    approximate mining samples the same rows on every rerun.
    """
    files = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not files:
        raise EmbeddingsTableError(f"no embeddings files match {pattern}")
    id_parts = []
    for path in files:
        id_parts.append(_read_columns(path, ["record_id"]).column("record_id"))
    file_ids = pa.chunked_array([c for part in id_parts for c in part.chunks], pa.string())
    order = pc.sort_indices(file_ids).to_numpy()
    ids = file_ids.take(pa.array(order)).to_numpy(zero_copy_only=False).astype(object)
    if len(ids) != len(set(ids)):
        raise EmbeddingsTableError("record_id values in the embeddings table are not unique")
    n = len(ids)
    dest = np.empty(n, dtype=np.int64)
    dest[order] = np.arange(n)
    vectors = None
    row = 0
    for path in files:
        column = _read_columns(path, ["embedding"]).column("embedding")
        for chunk in column.chunks:
            if not len(chunk):
                continue
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
                 mode: str, block_size: int, mining_options: dict | None = None):
        self._dup = duplicate_threshold
        self._near = near_duplicate_threshold
        self._mode = mode
        self._block_size = block_size
        self._options = dict(mining_options or {})

    def process(self, pattern: str):
        from transforms.mining import mine_pairs

        started = time.monotonic()
        ids, vectors = load_embeddings(pattern)
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
    """uri pattern of an embeddings table -> pair tables and one stats dict."""

    def __init__(self, duplicate_threshold: float, near_duplicate_threshold: float,
                 mode: str = "auto", block_size: int = 4096,
                 mining_options: dict | None = None):
        """`mining_options`: extra `mine_pairs` keywords (nprobe, nlist, recall_sample_size, ...)."""
        super().__init__()
        self._fn = _MinePairsFn(duplicate_threshold, near_duplicate_threshold, mode, block_size,
                                mining_options)

    def expand(self, patterns: beam.PCollection[str]):
        return patterns | "Mine" >> beam.ParDo(self._fn).with_outputs(
            DUPLICATES, NEAR_DUPLICATES, STATS)
