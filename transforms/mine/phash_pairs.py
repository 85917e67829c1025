"""The second, model-free signal: pairs of records whose pHashes are within a Hamming distance.

`hamming_pairs(hashes, max_distance)` finds every pair `i < j` with
`hamming(h_i, h_j) <= max_distance` without comparing all N^2 pairs:

1. equal hashes are bucketed first (`np.unique`): every pair inside a bucket
   is at distance 0, and the search below runs on the M distinct hashes, so
   ten thousand blank images cost one bucket, not 10^8 comparisons;
2. multi-index hashing (Norouzi et al., 2012) on the distinct hashes: the 64
   bits are cut into 4 chunks of 16; two hashes within distance d agree to
   within floor(d / 4) bits on at least one chunk (pigeonhole), so each hash
   is looked up, per chunk, in a sorted table of that chunk's values at each
   of its values within floor(d / 4) flipped bits (1 probe for d <= 3, 17 for
   d <= 7, 137 for d <= 11), and only the candidates found are compared.

Cost: 4 * probes * M binary searches plus one popcount per candidate; with
hashes spread over the 2^16 chunk values a bucket holds about M / 65536, so
the candidates are about 4 * probes * M^2 / 65536 (measured in
docs/quality.md), plus the output pairs themselves. Memory is bounded by
`block` queries at a time.

`MinePhashPairs` is the Beam stage: the embeddings table's `phash` column in,
a `phash_pairs` table out (`schemas.PHASH_PAIRS_SCHEMA`), each pair with the
cosine of its two embeddings, so `signal` says whether the embedding agrees
(`both`) or the hash alone found it (`phash`). Tables without a `phash`
column (written before it existed, or elsewhere) give no pairs and say so in
the stats. The pairs are a report: they do not change the groups or the
keep/drop manifest, which stay defined by the embedding thresholds.
"""

from __future__ import annotations

import itertools
import logging
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.metrics import counter
from transforms.phash import as_unsigned
from transforms.schemas import PHASH_PAIRS_SCHEMA

log = logging.getLogger(__name__)

PHASH_COLUMN = "phash"
PAIRS, STATS = "phash_pairs", "stats"
CHUNKS, CHUNK_BITS = 4, 16
ROWS_PER_TABLE = 1 << 20


def _flip_masks(radius: int) -> np.ndarray:
    """Every 16-bit mask with at most `radius` bits set (0 first)."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(CHUNK_BITS), r)]
    return np.asarray(masks, dtype=np.uint64)


def _distinct_pairs(unique: np.ndarray, max_distance: int, block: int) -> tuple[np.ndarray, ...]:
    """Pairs `u < v` of distinct sorted hashes with 1 <= hamming <= max_distance."""
    m = len(unique)
    found_u, found_v = [], []
    if m < 2 or max_distance < 1:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    masks = _flip_masks(max_distance // CHUNKS)
    chunk_mask = np.uint64((1 << CHUNK_BITS) - 1)
    for c in range(CHUNKS):
        keys = (unique >> np.uint64(c * CHUNK_BITS)) & chunk_mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for start in range(0, m, block):
            q = np.arange(start, min(m, start + block), dtype=np.int64)
            for mask in masks:
                target = keys[q] ^ mask
                lo = np.searchsorted(sorted_keys, target, "left")
                hi = np.searchsorted(sorted_keys, target, "right")
                counts = hi - lo
                if not counts.any():
                    continue
                rows = np.repeat(q, counts)
                offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
                cand = order[np.repeat(lo, counts) + offsets]
                keep = rows < cand
                rows, cand = rows[keep], cand[keep]
                dist = np.bitwise_count(unique[rows] ^ unique[cand])
                keep = dist <= max_distance
                found_u.append(rows[keep])
                found_v.append(cand[keep])
    if not found_u:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    keys = np.unique(np.concatenate(found_u) * np.int64(m) + np.concatenate(found_v))
    return keys // m, keys % m


def hamming_pairs(hashes, max_distance: int, block: int = 1 << 15
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair `i < j` of rows whose hashes differ in at most `max_distance` bits.

    Args:
        hashes: int64 or uint64 [N] (the embeddings table's `phash` column).
        max_distance: 0..64.
        block: hashes looked up at a time (memory ~ block * candidates each).

    Returns:
        `(i, j, hamming)`: int64, int64, int32 arrays sorted by `(i, j)`.
    """
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be within [0, 64], got {max_distance}")
    h = as_unsigned(hashes).ravel()
    n = len(h)
    unique, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    members = np.argsort(inverse, kind="stable")  # rows of each distinct hash, ascending
    starts = np.concatenate([[0], np.cumsum(counts)])
    parts_i, parts_j = [], []
    for u in np.flatnonzero(counts > 1):  # equal hashes: all pairs, distance 0
        rows = members[starts[u]:starts[u + 1]]
        a, b = np.triu_indices(len(rows), k=1)
        parts_i.append(rows[a])
        parts_j.append(rows[b])
    u, v = _distinct_pairs(unique, max_distance, block)
    single = (counts[u] == 1) & (counts[v] == 1)
    parts_i.append(members[starts[u[single]]])
    parts_j.append(members[starts[v[single]]])
    for uu, vv in zip(u[~single], v[~single]):  # a pair of buckets: every member pair
        a, b = np.meshgrid(members[starts[uu]:starts[uu + 1]], members[starts[vv]:starts[vv + 1]])
        parts_i.append(a.ravel())
        parts_j.append(b.ravel())
    i = np.concatenate(parts_i).astype(np.int64)
    j = np.concatenate(parts_j).astype(np.int64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keys = np.unique(lo * np.int64(max(n, 1)) + hi)
    i, j = keys // max(n, 1), keys % max(n, 1)
    return i, j, np.bitwise_count(h[i] ^ h[j]).astype(np.int32)


def _read_hashes(files: list[str], id_column: str, embedding_column: str
                 ) -> tuple[pa.Array, np.ndarray, np.ndarray, int]:
    """(ids sorted, hashes in that order, has-a-hash mask, files with the column)."""
    from transforms.mine.transform import _read_columns, ids_as_strings
    from transforms.parquet_open import parquet_schema

    id_parts, hash_parts, with_column = [], [], 0
    for path in files:
        has = PHASH_COLUMN in parquet_schema(path).names
        with_column += has
        table = _read_columns(path, [id_column] + ([PHASH_COLUMN] if has else []), id_column,
                              embedding_column)
        ids = ids_as_strings(table.column(id_column))
        id_parts.append(ids)
        # safe=False: a uint64 column made elsewhere keeps its 64 bits (two's complement)
        hashes = (table.column(PHASH_COLUMN).cast(pa.int64(), safe=False) if has
                  else pa.chunked_array([pa.nulls(len(ids), pa.int64())]))
        hash_parts.append(hashes)
    if not id_parts:
        return pa.array([], pa.string()), np.empty(0, np.int64), np.empty(0, bool), 0
    ids = pa.chunked_array([c for part in id_parts for c in part.chunks], pa.string())
    hashes = pa.chunked_array([c for part in hash_parts for c in part.chunks], pa.int64())
    order = pc.sort_indices(ids)
    ids, hashes = ids.take(order).combine_chunks(), hashes.take(order).combine_chunks()
    valid = np.asarray(hashes.is_valid().to_numpy(zero_copy_only=False), bool)
    values = hashes.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return ids, values, valid, with_column


def _vectors_of(files: list[str], ids: pa.Array, rows: np.ndarray, id_column: str,
                embedding_column: str) -> np.ndarray:
    """Unit vectors of the sorted-id rows `rows` (ascending), one file's column at a time."""
    from transforms.mine.transform import _flat_values, _read_columns, ids_as_strings

    wanted = ids.take(pa.array(rows))
    out = None
    for path in files:
        table = _read_columns(path, [id_column, embedding_column], id_column, embedding_column)
        position = pc.index_in(ids_as_strings(table.column(id_column)), value_set=wanted)
        hit = np.flatnonzero(position.is_valid().to_numpy(zero_copy_only=False))
        if not hit.size:
            continue
        chunk = table.column(embedding_column).take(pa.array(hit)).combine_chunks()
        values = _flat_values(chunk).reshape(hit.size, -1)
        if out is None:
            out = np.zeros((len(rows), values.shape[1]), np.float32)
        out[position.to_numpy(zero_copy_only=False)[hit].astype(np.int64)] = values
    if out is None:
        return np.zeros((len(rows), 1), np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def phash_pair_tables(ids: pa.Array, i: np.ndarray, j: np.ndarray, hamming: np.ndarray,
                      score: np.ndarray, near_duplicate_threshold: float, rows: int):
    """`PHASH_PAIRS_SCHEMA` tables of at most `rows` rows."""
    for s in range(0, len(i), max(1, rows)):
        sl = slice(s, s + rows)
        both = score[sl] >= near_duplicate_threshold
        yield pa.table({"record_id_a": ids.take(pa.array(i[sl])),
                        "record_id_b": ids.take(pa.array(j[sl])),
                        "hamming": pa.array(hamming[sl], pa.int32()),
                        "score": pa.array(np.minimum(score[sl], 1.0), pa.float32()),
                        "signal": pa.array(np.where(both, "both", "phash"))},
                       schema=PHASH_PAIRS_SCHEMA)


class _MinePhashPairsFn(beam.DoFn):
    def __init__(self, max_distance: int, near_duplicate_threshold: float, id_column: str,
                 embedding_column: str, rows_per_table: int):
        self._max_distance = max_distance
        self._near = near_duplicate_threshold
        self._columns = (id_column, embedding_column)
        self._rows = rows_per_table

    def process(self, patterns: str | tuple[str, ...]):
        from transforms.mine.transform import match_files

        started = time.monotonic()
        files = match_files(list(patterns) if isinstance(patterns, tuple) else patterns)
        ids, hashes, valid, with_column = _read_hashes(files, *self._columns)
        stats = {"max_distance": self._max_distance, "files_with_phash": with_column,
                 "files": len(files), "records_with_phash": int(valid.sum()),
                 "phash_pairs": None, "both": None}
        if not with_column:
            stats["note"] = "the embeddings table has no phash column: no phash pairs"
            yield beam.pvalue.TaggedOutput(STATS, stats)
            return
        rows = np.flatnonzero(valid)
        i, j, dist = hamming_pairs(hashes[rows], self._max_distance)
        i, j = rows[i], rows[j]  # back to sorted-id rows: i < j keeps a < b
        needed, inverse = np.unique(np.concatenate([i, j]), return_inverse=True)
        vectors = _vectors_of(files, ids, needed, *self._columns)
        vi, vj = inverse[:len(i)], inverse[len(i):]
        score = np.einsum("ij,ij->i", vectors[vi], vectors[vj]).astype(np.float32) \
            if len(i) else np.empty(0, np.float32)
        for table in phash_pair_tables(ids, i, j, dist, score, self._near, self._rows):
            yield beam.pvalue.TaggedOutput(PAIRS, table)
        both = int((score >= self._near).sum())
        counter("phash_pairs_found").inc(len(i))
        stats.update(phash_pairs=int(len(i)), both=both, phash_only=int(len(i)) - both,
                     seconds=round(time.monotonic() - started, 3))
        yield beam.pvalue.TaggedOutput(STATS, stats)


class MinePhashPairs(beam.PTransform):
    """uri pattern(s) of an embeddings table (one element) -> `phash_pairs` tables and one stats dict.

    Loads ids and hashes on one worker (8 bytes plus the id per record), then
    only the vectors of records in a pair, to score them.
    """

    def __init__(self, max_distance: int, near_duplicate_threshold: float,
                 id_column: str = "record_id", embedding_column: str = "embedding",
                 rows_per_table: int = ROWS_PER_TABLE):
        super().__init__()
        self._fn = _MinePhashPairsFn(max_distance, near_duplicate_threshold, id_column,
                                     embedding_column, rows_per_table)

    def expand(self, patterns: beam.PCollection):
        return patterns | "MinePhash" >> beam.ParDo(self._fn).with_outputs(PAIRS, STATS)
