import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.mine.transform import EmbeddingsTableError, load_embeddings


def _write(path, ids, x, fixed=True):
    dim = x.shape[1]
    emb = (pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim) if fixed
           else pa.array([row.tolist() for row in x], pa.list_(pa.float32())))
    pq.write_table(pa.table({"record_id": ids, "embedding": emb}), path, row_group_size=7)


@pytest.mark.parametrize("fixed", [True, False])
def test_load_sorts_by_id_and_normalises_across_files(tmp_path, fixed):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32) * 3
    ids = np.array([f"id{k:03d}" for k in rng.permutation(40)], dtype=object)
    _write(tmp_path / "b.parquet", ids[:25].tolist(), x[:25], fixed)
    _write(tmp_path / "a.parquet", ids[25:].tolist(), x[25:], fixed)
    got_ids, got = load_embeddings(str(tmp_path / "*.parquet"))
    order = np.argsort(ids.astype(str))
    assert got_ids.tolist() == sorted(ids.tolist())
    want = x[order] / np.linalg.norm(x[order], axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_load_rejects_duplicate_ids_and_ragged_vectors(tmp_path):
    x = np.ones((3, 4), np.float32)
    _write(tmp_path / "a.parquet", ["a", "b", "a"], x)
    with pytest.raises(EmbeddingsTableError, match="not unique"):
        load_embeddings(str(tmp_path / "a.parquet"))
    pq.write_table(pa.table({"record_id": ["a", "b"], "embedding": pa.array(
        [[1.0, 0.0], [1.0, 0.0, 0.0]], pa.list_(pa.float32()))}), tmp_path / "r.parquet")
    with pytest.raises(EmbeddingsTableError, match="width"):
        load_embeddings(str(tmp_path / "r.parquet"))
    # rows of 1 and 3 values hold as many as two rows of 2: read as such, they were mixed up
    pq.write_table(pa.table({"record_id": ["a", "b"], "embedding": pa.array(
        [[1.0], [1.0, 0.0, 0.0]], pa.list_(pa.float32()))}), tmp_path / "r2.parquet")
    with pytest.raises(EmbeddingsTableError, match="width"):
        load_embeddings(str(tmp_path / "r2.parquet"))


def test_load_rejects_non_finite_vectors_in_any_block():
    from transforms.mine.transform import normalise_rows

    x = np.ones((10, 4), np.float32)
    normalise_rows(x, pa.array([f"r{k}" for k in range(10)]), block=3)
    np.testing.assert_allclose(x, 0.5)
    for bad in (np.nan, np.inf, -np.inf):
        x = np.ones((10, 4), np.float32)
        x[7, 1], x[8, 0] = bad, bad
        with pytest.raises(EmbeddingsTableError, match=r"^2 vectors .*record 'r7'"):
            normalise_rows(x, pa.array([f"r{k}" for k in range(10)]), block=3)
    zero = np.zeros((2, 4), np.float32)
    normalise_rows(zero, pa.array(["a", "b"]))
    assert not zero.any()
