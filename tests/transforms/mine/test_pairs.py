import numpy as np

from transforms.mine.pairs import canonical_pairs, index_dtype, unique_keys


def test_unique_keys_sorts_drops_repeats_keeps_first_score():
    keys = np.array([7, 3, 7, 1, 3, 3], dtype=np.int64)
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=np.float32)
    k, s = unique_keys(keys, score)
    assert k.tolist() == [1, 3, 7]
    np.testing.assert_array_equal(s, np.array([0.4, 0.2, 0.1], dtype=np.float32))
    k, s = unique_keys(np.array([5], np.int64), np.array([0.5], np.float32))
    assert k.tolist() == [5] and s.tolist() == [0.5]


def test_canonical_pairs_matches_a_set_and_uses_int32():
    rng = np.random.default_rng(0)
    n = 50
    i = rng.integers(0, n, 2000)
    j = rng.integers(0, n, 2000)
    score = rng.random(2000).astype(np.float32)
    got = canonical_pairs(i, j, score, n)
    first = {}
    for a, b, s in zip(i.tolist(), j.tolist(), score.tolist()):
        if a != b:
            first.setdefault((min(a, b), max(a, b)), s)
    assert list(zip(got.i.tolist(), got.j.tolist())) == sorted(first)
    np.testing.assert_allclose(got.score, [first[p] for p in sorted(first)])
    assert got.i.dtype == np.int32 and got.j.dtype == np.int32


def test_index_dtype():
    assert index_dtype(2**31 - 1) == np.int32
    assert index_dtype(2**31) == np.int64
