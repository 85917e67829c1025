import numpy as np
import torch
from sentence_transformers import util

from transforms.mining import mine_exact


def _clustered(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n // 5, d))
    x = centers[rng.integers(0, len(centers), n)] + rng.normal(scale=0.15, size=(n, d))
    x[10] = x[11]  # an exact duplicate vector
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_equals_brute_force_across_block_sizes():
    x = _clustered()
    s = x @ x.T
    iu, ju = np.triu_indices(len(x), 1)
    expected = {(i, j) for i, j in zip(iu, ju) if s[i, j] >= 0.9}
    for block in (7, 64, 1000):
        pairs = mine_exact(x, 0.9, block)
        assert set(zip(pairs.i.tolist(), pairs.j.tolist())) == expected
        assert np.all(pairs.i < pairs.j)


def test_matches_paraphrase_mining_when_its_caps_are_not_hit():
    x = _clustered()
    ref = util.paraphrase_mining_embeddings(torch.from_numpy(x), top_k=len(x),
                                            max_pairs=10**9)
    expected = {(i, j) for score, i, j in ref if score >= 0.9}
    pairs = mine_exact(x, 0.9, 64)
    assert set(zip(pairs.i.tolist(), pairs.j.tolist())) == expected
    assert len(expected) > 100  # more than a capped top_k=1 would give
