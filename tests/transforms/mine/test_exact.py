import numpy as np
import pytest

from tools.synthetic import clustered_embeddings
from transforms.mine import mine_pairs, resolve_mode, stream_pairs
from transforms.mine.exact import iter_exact_pairs, mine_exact, mine_exact_cross


def brute_force(x, threshold):
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= threshold, k=1))
    return set(zip(i.tolist(), j.tolist())), s


@pytest.mark.parametrize("n,block", [(1, 4), (7, 3), (300, 64), (300, 300), (301, 100), (1000, 999)])
def test_exact_equals_brute_force(n, block):
    x = clustered_embeddings(n, 32, topic_size=50, near_fraction=0.2, seed=n)
    got = mine_exact(x, 0.9, block)
    want, s = brute_force(x, 0.9)
    assert set(zip(got.i.tolist(), got.j.tolist())) == want
    assert np.all(got.i < got.j)
    np.testing.assert_allclose(got.score, s[got.i, got.j], atol=1e-5)
    assert np.all(np.diff(got.i * n + got.j) > 0)  # sorted, no repeats


def test_block_size_does_not_change_result():
    x = clustered_embeddings(2000, 64, near_fraction=0.3, seed=1)
    a = mine_exact(x, 0.9, 4096)
    for bs in (7, 17, 512, 1999, 2000):
        b = mine_exact(x, 0.9, bs)
        assert np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j)


def test_no_cap_on_dense_cluster():
    # 300 near-identical vectors: 44,850 pairs, far beyond any top_k=100 per row.
    rng = np.random.default_rng(0)
    base = rng.standard_normal(16).astype(np.float32)
    x = base + 0.001 * rng.standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert len(mine_exact(x, 0.99, 64)) == 300 * 299 // 2


def test_matches_sentence_transformers_paraphrase_mining():
    torch = pytest.importorskip("torch")
    from sentence_transformers.util import paraphrase_mining_embeddings

    n = 700
    x = clustered_embeddings(n, 64, topic_size=100, near_fraction=0.3, duplicate_fraction=0.1,
                             seed=7)
    ref = paraphrase_mining_embeddings(torch.tensor(x), top_k=n, max_pairs=10**9)
    want = {(i, j) for s, i, j in ref if s >= 0.9}
    got = mine_exact(x, 0.9, 256)
    assert len(want) > 100 and len(ref) == n * (n - 1) // 2
    assert set(zip(got.i.tolist(), got.j.tolist())) == want


def test_cross_matches_full_product():
    x = clustered_embeddings(500, 32, seed=2)
    got = mine_exact_cross(x[:70], x, 0.9, 33)
    i, j = np.nonzero(x[:70] @ x.T >= 0.9)
    assert set(zip(got.i.tolist(), got.j.tolist())) == set(zip(i.tolist(), j.tolist()))


def test_mine_pairs_dispatch():
    x = clustered_embeddings(400, 32, seed=3)
    assert resolve_mode("auto", 399, 400) == "exact"
    assert resolve_mode("auto", 400, 400) == "approximate"
    pairs, stats = mine_pairs(x, 0.9, mode="auto", approximate_min_n=10**6)
    assert stats["mode"] == "exact" and stats["mode_requested"] == "auto"
    assert stats["pairs_found"] == len(pairs) > 0
    _, stats = mine_pairs(x, 0.9, mode="auto", approximate_min_n=100, recall_sample_size=50)
    assert stats["mode"] == "approximate"
    with pytest.raises(ValueError):
        mine_pairs(x, 0.9, mode="distributed")


@pytest.mark.parametrize("max_pairs", [1, 5, 40, 10**9])
def test_streamed_chunks_are_bounded_and_union_is_the_pair_set(max_pairs):
    x = clustered_embeddings(700, 16, topic_size=100, near_fraction=0.3, seed=9)
    block = 64
    chunks = list(iter_exact_pairs(x, 0.9, block, max_pairs=max_pairs))
    want, _ = brute_force(x, 0.9)
    got = [(i, j) for c in chunks for i, j in zip(c.i.tolist(), c.j.tolist())]
    assert len(got) == len(set(got)) and set(got) == want  # no pair in two chunks
    # a strip is whole rows: at most max_pairs, or one row (at most `block` pairs)
    assert all(len(c) <= max(max_pairs, block) for c in chunks)
    if max_pairs < len(want):
        assert len(chunks) > 1
    for c in chunks:
        assert c.i.dtype == np.int32 and c.j.dtype == np.int32 and np.all(c.i < c.j)
        assert np.all(np.diff(c.i.astype(np.int64) * len(x) + c.j) > 0)  # sorted in a chunk


def test_stream_pairs_exact_equals_mine_pairs_and_fills_stats():
    x = clustered_embeddings(900, 32, near_fraction=0.3, seed=10)
    full, full_stats = mine_pairs(x, 0.9, mode="exact", block_size=128)
    chunks, stats = stream_pairs(x, 0.9, mode="exact", block_size=128, max_pairs=50)
    assert stats == {}  # filled once the chunks are spent
    parts = list(chunks)
    assert len(parts) > 1
    keys = np.concatenate([p.keys(len(x)) for p in parts])
    assert np.array_equal(np.sort(keys), full.keys(len(x)))
    assert stats["pairs_found"] == len(full) and stats["mode"] == "exact"
    assert set(stats) == set(full_stats)


def test_stream_pairs_approximate_chunks():
    x = clustered_embeddings(3000, 32, seed=12)
    full, full_stats = mine_pairs(x, 0.9, mode="approximate", nprobe=2, recall_sample_size=100)
    chunks, stats = stream_pairs(x, 0.9, mode="approximate", max_pairs=100, nprobe=2,
                                 recall_sample_size=100)
    parts = list(chunks)
    assert len(parts) == -(-len(full) // 100) > 1 and all(len(p) <= 100 for p in parts)
    keys = np.concatenate([p.keys(len(x)) for p in parts])
    assert np.array_equal(keys, full.keys(len(x)))
    assert stats["pairs_found"] == len(full) and set(stats) == set(full_stats)
    with pytest.raises(TypeError):
        stream_pairs(x, 0.9, mode="exact", npobe=2)
