"""An approximate night: the new rows searched through the previous partitions."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tools.synthetic import clustered_embeddings
from transforms.mine import incremental_approximate
from transforms.mine.approximate import (
    assign,
    mine_approximate_indexed,
    search_partitions,
)
from transforms.mine.incremental_approximate import reuse_index
from transforms.mine.partition_tables import (
    centroids_table,
    partitions_tables,
    read_centroids,
    read_probes,
)


def _night(n_old=6000, n_new=300, dim=32, seed=3):
    x = clustered_embeddings(n_old + n_new, dim, near_fraction=0.3, seed=seed)
    rng = np.random.default_rng(seed)
    is_new = np.zeros(len(x), bool)
    is_new[rng.choice(len(x), n_new, replace=False)] = True
    return x, is_new


def test_new_rows_through_the_same_probes_find_what_the_whole_search_finds():
    x, is_new = _night()
    _, _, index = mine_approximate_indexed(x, 0.9, nprobe=3, recall_sample_size=0)
    n = len(x)
    whole, _, _ = search_partitions(x, index.probes, index.nlist, 0.9, 256)
    new, _, _ = search_partitions(x, index.probes, index.nlist, 0.9, 256, is_new)
    i, j = whole // n, whole % n
    with_new = whole[is_new[i] | is_new[j]]
    assert with_new.size > 100 and with_new.size < whole.size
    assert np.array_equal(new, with_new)


def test_old_pairs_plus_new_pairs_equal_one_run_with_the_old_centroids():
    """Night 1 trains on the old rows; night 2 assigns only the new rows. The carried
    old-old pairs plus night 2's new pairs are the whole search with night 1's centroids."""
    x, is_new = _night(seed=5)
    old = np.flatnonzero(~is_new)
    _, _, first = mine_approximate_indexed(x[old], 0.9, nprobe=3, recall_sample_size=0)
    probes = np.zeros((len(x), first.nprobe), np.int32)
    probes[old] = first.probes
    probes[is_new], _ = assign(x[is_new], first.centroids, first.nprobe)
    n = len(x)
    old_keys, _, _ = search_partitions(x[old], first.probes, first.nlist, 0.9)
    carried = old[old_keys // len(old)] * np.int64(n) + old[old_keys % len(old)]
    new, _, _ = search_partitions(x, probes, first.nlist, 0.9, 512, is_new)
    whole, _, _ = search_partitions(x, probes, first.nlist, 0.9)
    assert np.array_equal(np.sort(np.concatenate([carried, new])), whole)


def test_partition_tables_round_trip_and_reuse(tmp_path, monkeypatch):
    x, is_new = _night(n_old=2000, n_new=100, dim=16)
    ids = pa.array([f"r{k:05d}" for k in range(len(x))])
    _, stats, index = mine_approximate_indexed(x[~is_new], 0.9, nprobe=2, recall_sample_size=0)
    pq.write_table(centroids_table(index.centroids), str(tmp_path / "centroids.parquet"))
    old_ids = ids.filter(pa.array(~is_new))
    pq.write_table(pa.concat_tables(partitions_tables(old_ids, index.probes, 500,
                                                      index.scores)),
                   str(tmp_path / "partitions.parquet"))
    assert np.array_equal(read_centroids(str(tmp_path / "centroids.parquet")), index.centroids)
    probes, scores, found = read_probes(str(tmp_path / "partitions.parquet"), ids, 2)
    assert np.array_equal(found, ~is_new)
    assert np.array_equal(probes[~is_new], index.probes)
    assert np.array_equal(scores[~is_new], index.scores)
    assert not read_probes(str(tmp_path / "partitions.parquet"), ids, 3)[2].any()  # other nprobe

    night, reason, fit = reuse_index(str(tmp_path), ids, x, is_new, 2, stats["n"],
                                     stats["centroids_trained_fit"])
    assert reason is None and abs(fit - stats["centroids_trained_fit"]) < 0.1
    new_probes, new_scores = assign(x[is_new], index.centroids, 2)
    assert np.array_equal(night.probes[is_new], new_probes)
    assert np.array_equal(night.scores[is_new], new_scores)
    assert np.array_equal(night.scores[~is_new], index.scores)
    # new rows that fit no centroid: trained again
    far = x.copy()
    rng = np.random.default_rng(1)
    far[is_new] = rng.normal(size=(int(is_new.sum()), 16)).astype(np.float32)
    far[is_new] /= np.linalg.norm(far[is_new], axis=1, keepdims=True)
    args = (str(tmp_path), ids, far, is_new, 2, stats["n"], stats["centroids_trained_fit"])
    assert reuse_index(*args)[1] is None  # 100 new rows: too few to judge the fit by
    monkeypatch.setattr(incremental_approximate, "MIN_FIT_ROWS", 100)
    _, reason, _ = reuse_index(*args)
    assert reason and "fit the previous centroids less well" in reason
    # an old record the previous partitions do not hold
    _, reason, _ = reuse_index(str(tmp_path), ids, x, np.zeros(len(x), bool), 2, stats["n"],
                               stats["centroids_trained_fit"])
    assert reason == f"{int(is_new.sum())} old records have no partition in the previous run"


def test_a_previous_table_without_scores_has_them_computed(tmp_path):
    """Runs before the scores were kept: a night computes them from the vectors."""
    x, is_new = _night(n_old=2000, n_new=100, dim=16)
    ids = pa.array([f"r{k:05d}" for k in range(len(x))])
    _, stats, index = mine_approximate_indexed(x[~is_new], 0.9, nprobe=3, recall_sample_size=0)
    pq.write_table(centroids_table(index.centroids), str(tmp_path / "centroids.parquet"))
    table = pa.concat_tables(partitions_tables(ids.filter(pa.array(~is_new)), index.probes, 500))
    pq.write_table(table.drop_columns(["scores"]), str(tmp_path / "partitions.parquet"))
    assert read_probes(str(tmp_path / "partitions.parquet"), ids, 3)[1] is None
    night, reason, _ = reuse_index(str(tmp_path), ids, x, is_new, 3, stats["n"],
                                   stats["centroids_trained_fit"])
    assert reason is None
    np.testing.assert_allclose(night.scores[~is_new], index.scores, atol=1e-5)


def test_old_probers_skipped_by_their_scores_lose_no_pair():
    x, is_new = _night(n_old=20000, n_new=400, dim=256, seed=7)
    _, _, index = mine_approximate_indexed(x, 0.9, nprobe=4, recall_sample_size=0)
    plain = search_partitions(x, index.probes, index.nlist, 0.9, 256, is_new)
    pruned = search_partitions(x, index.probes, index.nlist, 0.9, 256, is_new,
                               scores=index.scores)
    assert plain[0].size > 50
    assert np.array_equal(plain[0], pruned[0]) and np.array_equal(plain[1], pruned[1])


@pytest.mark.parametrize("new", ["member", "prober"])
def test_rows_on_the_bound_are_not_skipped(new):
    """Each prober and member lie on one great circle through the member's centroid, so
    angle(p, m) = angle(p, c) - angle(m, c); the threshold is the smallest of their
    scores, so a bound without float32's error loses pairs. New members are searched
    against the old probers, new probers against the old members."""
    rng = np.random.default_rng(3)
    dim, groups = 256, 300
    centroids = rng.standard_normal((groups, dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    rows = []
    for c in centroids:
        other = rng.standard_normal(dim)
        other -= (other @ c) * c
        other /= np.linalg.norm(other)
        near = rng.uniform(0.0, 0.3)
        for angle in (near, near + 0.45):  # the member, then the prober
            rows.append(np.cos(angle) * c + np.sin(angle) * other)
    x = np.array(rows, np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    # each prober has a partition of its own (its own centroid) and probes the
    # member's second; the member does not probe the prober's, so only the
    # prober's side finds the pair
    centroids = np.concatenate([centroids, x[1::2]])
    probes = np.zeros((len(x), 2), np.int32)
    probes[0::2, 0] = np.arange(groups)
    probes[0::2, 1] = (np.arange(groups) + 1) % groups
    probes[1::2, 0] = groups + np.arange(groups)
    probes[1::2, 1] = np.arange(groups)
    scores = np.einsum("ij,ikj->ik", x, centroids[probes])
    is_new = np.zeros(len(x), bool)
    is_new[slice(0 if new == "member" else 1, None, 2)] = True
    threshold = float(np.einsum("ij,ij->i", x[0::2], x[1::2]).min())
    args = (x, probes, len(centroids), threshold, 64, is_new)
    plain = search_partitions(*args)
    pruned = search_partitions(*args, scores=scores)
    assert plain[0].size > groups // 2
    assert np.array_equal(plain[0], pruned[0])


def test_kept_scores_that_do_not_hold_for_tonights_vectors_are_computed_again(tmp_path):
    x, is_new = _night(n_old=2000, n_new=100, dim=16)
    ids = pa.array([f"r{k:05d}" for k in range(len(x))])
    _, stats, index = mine_approximate_indexed(x[~is_new], 0.9, nprobe=3, recall_sample_size=0)
    pq.write_table(centroids_table(index.centroids), str(tmp_path / "centroids.parquet"))
    for damage in ("stale", "nan"):
        scores = index.scores.copy()
        if damage == "stale":
            scores[::7] -= 0.05
        else:
            scores[5, 1] = np.nan
        pq.write_table(pa.concat_tables(partitions_tables(ids.filter(pa.array(~is_new)),
                                                          index.probes, 500, scores)),
                       str(tmp_path / "partitions.parquet"))
        night, reason, _ = reuse_index(str(tmp_path), ids, x, is_new, 3, stats["n"],
                                       stats["centroids_trained_fit"])
        assert reason is None
        np.testing.assert_allclose(night.scores[~is_new], index.scores, atol=1e-5)
