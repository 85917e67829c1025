"""ConnectedComponents and DenseRank against scipy / numpy on small graphs."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from transforms.manifest.components import ConnectedComponents, star_round
from transforms.manifest.rank import DenseRank


def _smallest_member_labels(edges):
    nodes = sorted({v for e in edges for v in e})
    index = {v: k for k, v in enumerate(nodes)}
    i = np.array([index[a] for a, _ in edges])
    j = np.array([index[b] for _, b in edges])
    _, labels = connected_components(coo_matrix((np.ones(i.size), (i, j)),
                                                shape=(len(nodes),) * 2), directed=False)
    smallest = {}
    for v, c in zip(nodes, labels):
        smallest.setdefault(c, v)  # nodes are sorted: the first seen is the smallest
    return [(v, smallest[c]) for v, c in zip(nodes, labels)]


def _random_edges(seed, n=60, m=50):
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    path = rng.permutation(n)[:15]  # a path in random id order
    edges = [(f"n{a:02d}", f"n{b:02d}") for a, b in zip(i, j) if a != b]
    return edges + [(f"n{a:02d}", f"n{b:02d}") for a, b in zip(path[:-1], path[1:])]


@pytest.mark.parametrize("contract", [True, False])
def test_components_equal_scipy_with_the_smallest_id_as_label(contract):
    edges = _random_edges(1) + _random_edges(2, m=10)  # repeats and both directions
    edges += [(b, a) for a, b in edges[:5]]
    with TestPipeline() as p:
        labels = p | beam.Create(edges) | ConnectedComponents(max_rounds=8, contract=contract)
        assert_that(labels, equal_to(_smallest_member_labels(edges)))


def test_too_few_rounds_fail_loudly():
    path = [(f"n{k:03d}", f"n{k + 1:03d}") for k in range(200)]
    with pytest.raises(Exception, match="did not converge in 1 rounds"):
        with TestPipeline() as p:
            # uncontracted: the forest would make the path a star, done in one round
            _ = p | beam.Create(path) | ConnectedComponents(max_rounds=1, contract=False)


def test_star_rounds_turn_each_component_into_a_star_around_its_smallest_id():
    edges = {tuple(sorted(e)) for e in _random_edges(4)}
    want = {(v, low) for v, low in _smallest_member_labels(sorted(edges)) if v != low}
    current = edges
    for _ in range(10):
        current = star_round(current)
    assert {(b, a) for a, b in current} == want


def test_dense_rank_equals_numpy_unique():
    rng = np.random.default_rng(0)
    keys = [f"k{v}" for v in rng.integers(0, 500, 2000)]
    uniq, _ = np.unique(keys, return_inverse=True)
    with TestPipeline() as p:
        ranks = p | beam.Create(keys) | DenseRank(num_buckets=7)
        assert_that(ranks, equal_to([(str(k), r) for r, k in enumerate(uniq)]))


def test_spanning_forest_keeps_components_and_shrinks_a_clique():
    from transforms.manifest.components import forest_edges

    clique = [(f"n{i:03d}", f"n{j:03d}") for i in range(60) for j in range(i + 1, 60)]
    other = [("x1", "x2"), ("x2", "x3")]
    forest = list(forest_edges(clique + other))
    assert len(forest) == 59 + 2
    assert {a for a, _ in forest} == {"n000", "x1"}  # each joined to its smallest id


@pytest.mark.parametrize("seed", range(3))
def test_one_worker_union_find_equals_the_rounds(seed):
    import random

    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = random.Random(seed)
    nodes = [f"{rng.getrandbits(40):010x}" for _ in range(300)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(250)]
    edges = [e for e in edges if e[0] != e[1]]
    index = {n: k for k, n in enumerate(nodes)}
    graph = coo_matrix(([1] * len(edges), ([index[a] for a, _ in edges],
                                           [index[b] for _, b in edges])), shape=(300, 300))
    _, comp = connected_components(graph, directed=False)
    smallest = {}
    for n in nodes:
        smallest[comp[index[n]]] = min(smallest.get(comp[index[n]], n), n)
    on_edges = {x for e in edges for x in e}
    expected = sorted((n, smallest[comp[index[n]]]) for n in on_edges)
    for one_worker in (True, False):
        with TestPipeline() as p:
            labels = (p | beam.Create(edges)
                      | ConnectedComponents(one_worker=one_worker))
            assert_that(labels, equal_to(expected))
