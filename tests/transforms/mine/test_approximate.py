import numpy as np

from tools.synthetic import clustered_embeddings
from transforms.mine.approximate import mine_approximate
from transforms.mine.exact import mine_exact
from transforms.mine.pairs import Pairs
from transforms.mine.recall import measure_recall


def test_recall_at_least_099_and_scores_exact():
    x = clustered_embeddings(30000, 64, seed=11)
    exact = mine_exact(x, 0.9, 4096)
    got, stats = mine_approximate(x, 0.9, nprobe=4, recall_sample_size=2000)
    n = len(x)
    recall = np.isin(exact.keys(n), got.keys(n)).mean()
    assert len(exact) > 1000
    assert recall >= 0.99
    # no false pairs, and scores are the exact inner products
    assert np.isin(got.keys(n), exact.keys(n)).all()
    np.testing.assert_allclose(got.score, np.einsum("ij,ij->i", x[got.i], x[got.j]), atol=1e-5)
    assert stats["recall_sampled"] >= 0.99 and stats["recall_exact_pairs"] > 0
    assert stats["nprobe"] == 4 and stats["nlist"] > 1 and not stats["recall_below_target"]
    for key in ("train_s", "assign_s", "mine_s", "recall_s"):
        assert stats[key] >= 0


def test_deterministic():
    x = clustered_embeddings(5000, 32, seed=4)
    a, _ = mine_approximate(x, 0.9, nprobe=2, recall_sample_size=100)
    b, _ = mine_approximate(x, 0.9, nprobe=2, recall_sample_size=100)
    assert np.array_equal(a.keys(len(x)), b.keys(len(x)))


def test_measured_recall_reports_misses():
    x = clustered_embeddings(3000, 32, near_fraction=0.3, seed=5)
    exact = mine_exact(x, 0.9, 1024)
    half = Pairs(exact.i[::2], exact.j[::2], exact.score[::2])
    stats = measure_recall(x, half, 0.9, 3000)  # every row sampled: recall is exact
    assert stats["recall_exact_pairs"] == len(exact)
    assert stats["recall_sampled"] == len(half) / len(exact)
    assert stats["recall_ci95_low"] < stats["recall_sampled"]


def test_single_partition_is_exact():
    x = clustered_embeddings(800, 16, seed=6)
    got, stats = mine_approximate(x, 0.9, nlist=1, recall_sample_size=0)
    exact = mine_exact(x, 0.9)
    assert np.array_equal(got.keys(800), exact.keys(800))
    assert stats["recall_sampled"] is None


def test_pairs_held_with_int32_indexes_and_repeats_dropped():
    x = clustered_embeddings(4000, 32, near_fraction=0.3, seed=8)
    got, stats = mine_approximate(x, 0.9, nprobe=4, recall_sample_size=0)
    assert got.i.dtype == np.int32 and got.j.dtype == np.int32 and got.score.dtype == np.float32
    keys = got.keys(len(x))
    assert np.all(np.diff(keys) > 0) and np.all(got.i < got.j)  # sorted, no repeats
    assert stats["pairs_found_raw"] > stats["pairs_found"] == len(got)  # found from both ends
