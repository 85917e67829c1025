"""phash pairs: the multi-index Hamming search equals brute force; the stage scores and names them."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.mine.phash_pairs import PAIRS, STATS, MinePhashPairs, _flip_masks, hamming_pairs
from transforms.schemas import embeddings_schema


def _planted(n: int, seed: int) -> np.ndarray:
    """Random 64-bit hashes with near copies (0-13 bits flipped) and one bucket of equal ones."""
    rng = np.random.default_rng(seed)
    h = rng.integers(-(1 << 63), (1 << 63) - 1, n, dtype=np.int64).view(np.uint64)
    for k in range(0, n // 3, 3):
        flips = rng.choice(64, int(rng.integers(0, 14)), replace=False)
        h[k + 1] = h[k] ^ np.uint64(sum(1 << int(b) for b in flips))
    h[n - 8:] = h[n - 9]  # nine equal hashes
    return h.view(np.int64)


def _brute(h: np.ndarray, d: int):
    u = h.view(np.uint64)
    dist = np.bitwise_count(u[:, None] ^ u[None, :])
    i, j = np.nonzero(np.triu(dist <= d, 1))
    return i, j, dist[i, j]


@pytest.mark.parametrize("d", [0, 1, 3, 4, 7, 8, 12])
def test_multi_index_search_equals_brute_force(d):
    h = _planted(1500, d)
    i, j, dist = hamming_pairs(h, d, block=256)
    bi, bj, bdist = _brute(h, d)
    assert np.array_equal(i, bi) and np.array_equal(j, bj) and np.array_equal(dist, bdist)
    assert len(i) > 9 * 8 // 2  # more than the equal bucket's pairs


def test_probe_counts_are_the_pigeonhole_ones():
    assert [len(_flip_masks(r)) for r in range(3)] == [1, 17, 137]
    with pytest.raises(ValueError, match="max_distance"):
        hamming_pairs(np.zeros(3, np.int64), 65)


def _write(path, ids, vectors, hashes=None):
    n, dim = vectors.shape
    columns = {"record_id": ids, "source_uri": ["u"] * n, "key": ids, "sha256": ids,
               "width": pa.array([10] * n, pa.int32()), "height": pa.array([10] * n, pa.int32()),
               "file_size": pa.array([1] * n, pa.int64()), "model": ["m"] * n,
               "embedding": pa.array(list(vectors), pa.list_(pa.float32(), dim))}
    if hashes is not None:
        columns["phash"] = pa.array(hashes, pa.int64())
    pq.write_table(pa.table(columns, schema=embeddings_schema(dim, phash=hashes is not None)), path)


def test_stage_scores_pairs_and_names_the_signal(tmp_path):
    v = np.eye(4, dtype=np.float32)
    v[1] = [0.96, 0.28, 0, 0]  # cosine 0.96 with row 0: the embedding agrees
    hashes = [0b1011, 0b1010, 0xFFFF << 40, (0xFFFF << 40) | 0b111]  # (0,1) 1 bit, (2,3) 3 bits
    _write(str(tmp_path / "a.parquet"), ["r0", "r1"], v[:2], hashes[:2])  # pairs across files
    _write(str(tmp_path / "b.parquet"), ["r2", "r3"], v[2:], hashes[2:])
    with TestPipeline() as p:
        out = (p | beam.Create([(str(tmp_path / "*.parquet"),)])
               | MinePhashPairs(max_distance=3, near_duplicate_threshold=0.9))
        rows = out[PAIRS] | beam.FlatMap(lambda t: [
            (r["record_id_a"], r["record_id_b"], r["hamming"], round(r["score"], 3), r["signal"])
            for r in t.to_pylist()])
        assert_that(rows, equal_to([("r0", "r1", 1, 0.96, "both"), ("r2", "r3", 3, 0.0, "phash")]),
                    label="pairs")
        stats = out[STATS] | beam.Map(lambda s: (s["phash_pairs"], s["both"], s["phash_only"]))
        assert_that(stats, equal_to([(2, 1, 1)]), label="stats")


def test_old_tables_without_the_column_give_no_pairs(tmp_path):
    _write(str(tmp_path / "old.parquet"), ["r0", "r1"], np.eye(2, dtype=np.float32))
    with TestPipeline() as p:
        out = (p | beam.Create([(str(tmp_path / "old.parquet"),)])
               | MinePhashPairs(max_distance=3, near_duplicate_threshold=0.9))
        assert_that(out[PAIRS], equal_to([]), label="pairs")
        assert_that(out[STATS] | beam.Map(lambda s: (s["phash_pairs"], s["files_with_phash"])),
                    equal_to([(None, 0)]), label="stats")
