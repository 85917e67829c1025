import numpy as np
import pytest

from tools.synthetic import clustered_embeddings
from transforms.mine import recall
from transforms.mine.approximate import assign, mine_approximate_indexed, train_centroids
from transforms.mine.exact import mine_exact_cross
from transforms.mine.recall import exact_hits, measure_recall


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _partitions(x, nlist, seed=0):
    centroids = train_centroids(x, nlist, seed=seed)
    return centroids, assign(x, centroids, 1)[0][:, 0]


def _as_set(pairs, queries):
    return {(int(queries[i]), int(j)): float(s) for i, j, s in zip(pairs.i, pairs.j, pairs.score)}


def _assert_same_as_unpruned(x, queries, threshold, centroids, labels, block_size=64):
    want = _as_set(mine_exact_cross(x[queries], x, threshold, block_size), queries)
    got, share = exact_hits(x, queries, threshold, block_size, centroids, labels)
    got = _as_set(got, queries)
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], atol=1e-6)
    return share, len(want)


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.999])
def test_pruned_search_finds_what_the_unpruned_one_finds(threshold):
    x = clustered_embeddings(20000, 512, seed=3)
    centroids, labels = _partitions(x, 50)
    queries = np.sort(np.random.default_rng(0).choice(len(x), 300, replace=False))
    share, found = _assert_same_as_unpruned(x, queries, threshold, centroids, labels)
    assert found > 0
    if threshold >= 0.9:
        assert share < 0.25  # the partitions separate the topics: most products skipped


def test_rows_on_the_bound_are_not_skipped():
    """Each query and row lie on one great circle through the row's centroid, so the
    bound holds with equality (angle(q, x) = angle(x, c) - angle(q, c)); the threshold
    is the smallest of their scores, so a bound without float32's error loses pairs."""
    rng = np.random.default_rng(7)
    dim, groups = 512, 400
    centroids = _unit(rng.standard_normal((groups, dim)))
    rows = []
    for c in centroids:
        other = rng.standard_normal(dim)
        other = _unit(other - (other @ c) * c)
        near = rng.uniform(0.0, 0.3)
        for angle in (near + 0.45, near):  # the row, then its query: about cosine 0.9
            rows.append(np.cos(angle) * c + np.sin(angle) * other)
    x = _unit(np.array(rows))
    # the rows in partitions 0..groups-1, each query the centroid of one of its own
    centroids = np.concatenate([centroids, x[1::2]])
    labels = np.repeat(np.arange(groups), 2).astype(np.int32)
    labels[1::2] += groups
    threshold = float(np.einsum("ij,ij->i", x[0::2], x[1::2]).min())
    queries = np.arange(1, len(x), 2)
    share, found = _assert_same_as_unpruned(x, queries, threshold, centroids, labels)
    assert found > 1.9 * groups and share < 0.1  # its own pair and the row


def test_rows_at_their_centroid_and_empty_partitions():
    rng = np.random.default_rng(2)
    centroids = _unit(rng.standard_normal((50, 32)))
    x = np.concatenate([centroids[:40],  # angle 0 to their centroid: acos is steepest
                        _unit(centroids[:40] + 0.05 * rng.standard_normal((40, 32)))])
    x = _unit(x)
    labels = np.concatenate([np.arange(40), np.arange(40)]).astype(np.int32)  # 10 empty
    _assert_same_as_unpruned(x, np.arange(len(x)), 0.95, centroids, labels)


def test_data_the_partitions_do_not_separate_take_the_unpruned_search():
    x = _unit(np.random.default_rng(4).standard_normal((3000, 16)))
    centroids, labels = _partitions(x, 8)
    share, _ = _assert_same_as_unpruned(x, np.arange(0, 3000, 7), 0.5, centroids, labels)
    assert share == 1.0


def test_rows_sorted_by_angle_within_each_partition():
    x = clustered_embeddings(3000, 16, seed=1)
    centroids, labels = _partitions(x, 20)
    order, offsets, angles = recall._rows_by_angle(x, centroids, labels, chunk=100)
    assert sorted(order.tolist()) == list(range(len(x)))
    for p in range(20):
        rows = order[offsets[p]:offsets[p + 1]]
        assert (labels[rows] == p).all()
        assert (np.diff(angles[offsets[p]:offsets[p + 1]]) >= 0).all()
    want = np.arccos(np.clip(np.einsum("ij,ij->i", x[order], centroids[labels[order]]), -1, 1))
    np.testing.assert_allclose(angles, want, atol=1e-3)


def test_recall_the_same_with_and_without_the_partitions():
    x = clustered_embeddings(20000, 64, near_fraction=0.2, seed=9)
    pairs, stats, index = mine_approximate_indexed(x, 0.9, nprobe=2, recall_sample_size=2000)
    assert stats["recall_search_share"] < 0.5
    plain = measure_recall(x, pairs, 0.9, 2000)
    assert plain["recall_search_share"] == 1.0
    for key in ("recall_sampled", "recall_exact_pairs", "recall_found_pairs", "recall_ci95_low"):
        assert stats[key] == plain[key]
    assert stats["recall_exact_pairs"] > 100 and stats["recall_sampled"] < 1.0


def test_thresholds_at_the_ends_of_the_range():
    x = clustered_embeddings(3000, 64, duplicate_fraction=0.1, seed=5)
    centroids, labels = _partitions(x, 30)
    queries = np.arange(0, 3000, 3)
    for threshold in (0.9999, 1.5, 1e-6):  # (at 1.0 self-scores flip with the tiling)
        _assert_same_as_unpruned(x, queries, threshold, centroids, labels)
