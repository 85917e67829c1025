"""Connected components of an edge list, on the engine (large-star / small-star).

`ConnectedComponents`: `(id_a, id_b)` edges -> `(record_id, label)` for every id
on an edge, `label` the smallest id of its component. Alternating the two star
operations of Kiveris et al. ("Connected Components in MapReduce and Beyond",
2014) turns each component into a star around its smallest id in O(log^2 n)
rounds, each round two GroupByKeys over the current edges (each step
counts a repeated neighbour once, so repeats never pile up); a path or a random
order does not need a round per hop as plain min-label propagation does. The
rounds are unrolled in the graph (`max_rounds`); a final check joins every
input edge with the labels of both ends and raises `ComponentsNotConverged`
(naming `max_rounds`) if any edge crosses two labels, so a graph that needs
more rounds fails loudly instead of splitting a component.

Two things keep this cheap. `SpanningForest` first shrinks the edges, batch
by batch without a shuffle, to a spanning forest of each batch (a dense
cluster of k records and k^2/2 pairs leaves k - 1 edges per batch), which has
the same components. And below `one_worker_max_records` records the labels
come from one union-find combine (`UnionFind`: an id -> parent map, about
100 bytes per record on one worker) instead of the unrolled rounds, whose
~50 stages cost seconds each on a local runner; the launcher chooses from
the table's row count.

The per-node steps are pure functions (`large_star`, `small_star`) so
`bench/components_rounds.py` can count rounds without a runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np

DEFAULT_MAX_ROUNDS = 24
DEFAULT_ONE_WORKER_MAX_RECORDS = 2_000_000
FOREST_BATCH_EDGES = 200_000


class ComponentsNotConverged(RuntimeError):
    """Label propagation did not converge within its rounds."""


def large_star(node: str, neighbours: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Edges linking every neighbour larger than `node` to the smallest of node + neighbours.

    Repeated neighbours count once, so repeats made by the last step do not carry on.
    """
    neighbours = set(neighbours)
    low = min(min(neighbours, default=node), node)
    for v in neighbours:
        if v > node:
            yield v, low


def small_star(node: str, smaller: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Edges linking `node` and its smaller neighbours to the smallest of them."""
    smaller = set(smaller)
    low = min(smaller, default=node)
    if low == node:
        return
    yield node, low
    for v in smaller:
        if v != low:
            yield v, low


def star_round(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """One large-star + small-star round over an in-memory edge set (for the bench)."""
    adjacent: dict[str, list[str]] = {}
    for a, b in edges:
        adjacent.setdefault(a, []).append(b)
        adjacent.setdefault(b, []).append(a)
    large = {_ordered(e) for u, nbrs in adjacent.items() for e in large_star(u, nbrs) if e[0] != e[1]}
    smaller: dict[str, list[str]] = {}
    for a, b in large:
        smaller.setdefault(b, []).append(a)  # b > a
    return {_ordered(e) for u, nbrs in smaller.items() for e in small_star(u, nbrs)}


def _ordered(edge: tuple[str, str]) -> tuple[str, str]:
    a, b = edge
    return (a, b) if a < b else (b, a)


def _both_directions(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    a, b = edge
    yield a, b
    yield b, a


def _by_larger_end(edge: tuple[str, str]) -> tuple[str, str]:
    a, b = _ordered(edge)
    return b, a


def _ends(edge: tuple[str, str]) -> Iterator[tuple[str, tuple[str, str]]]:
    edge = _ordered(edge)
    yield edge[0], edge
    yield edge[1], edge


def _labels(node: str, neighbours: Iterable[str]) -> tuple[str, str]:
    return node, min(min(neighbours), node)


def _check_edge(element, max_rounds: int) -> Iterator[int]:
    _, grouped = element
    labels = {label for label in grouped["labels"]}
    if len(labels) > 1:
        raise ComponentsNotConverged(
            f"connected components did not converge in {max_rounds} rounds "
            f"(an edge joins labels {sorted(labels)[:2]}); raise max_rounds")
    return iter(())


def forest_edges(edges: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """A spanning forest of `edges`: each node joined to its local component's smallest id."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ends = np.asarray([e for edge in edges for e in edge[:2]], dtype=object)
    nodes, index = np.unique(ends, return_inverse=True)
    index = index.reshape(-1, 2)
    graph = coo_matrix((np.ones(len(index), np.int8), (index[:, 0], index[:, 1])),
                       shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    # nodes are sorted, so the first node of each label is its smallest id
    _, first = np.unique(labels, return_index=True)
    for k, low in enumerate(first[labels]):
        if k != low:
            yield nodes[low], nodes[k]


class SpanningForest(beam.PTransform):
    """`(id_a, id_b, ...)` edges -> fewer `(id_a, id_b)` edges with the same components.

    Each bundle's edges are cut into batches of at most `batch_edges`; a batch
    becomes its spanning forest (at most its node count - 1 edges). Applied
    `passes` times, as batches of forest edges shrink again.
    """

    def __init__(self, batch_edges: int = FOREST_BATCH_EDGES, passes: int = 2):
        super().__init__()
        self._batch = batch_edges
        self._passes = passes

    def expand(self, edges):
        for k in range(self._passes):
            edges = (edges
                     | f"Batch{k}" >> beam.BatchElements(min_batch_size=self._batch,
                                                         max_batch_size=self._batch)
                     | f"Forest{k}" >> beam.FlatMap(forest_edges))
        return edges


class UnionFind(beam.CombineFn):
    """Edges -> `{id: smallest id of its component}` in one accumulator (parent map).

    A root is always the smallest id of its set, so the labels need no second pass.
    """

    def create_accumulator(self) -> dict[str, str]:
        return {}

    @staticmethod
    def _root(parent: dict[str, str], x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def _union(self, parent: dict[str, str], a: str, b: str) -> None:
        ra, rb = self._root(parent, a), self._root(parent, b)
        parent.setdefault(ra, ra)
        parent.setdefault(rb, rb)
        if ra != rb:
            low, high = (ra, rb) if ra < rb else (rb, ra)
            parent[high] = low

    def add_input(self, parent, edge):
        self._union(parent, edge[0], edge[1])
        return parent

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            for child, up in other.items():
                self._union(merged, child, up)
        return merged

    def extract_output(self, parent):
        return {x: self._root(parent, x) for x in list(parent)}


class ConnectedComponents(beam.PTransform):
    """`(id_a, id_b)` string edges -> `(id, smallest id of its component)` per id on an edge.

    Args:
        max_rounds: large-star + small-star rounds unrolled in the graph.
        check: verify convergence (one join of the input edges with the labels).
        one_worker: label with one `UnionFind` combine instead of the rounds
            (for graphs whose ids fit one worker's memory).
        contract: shrink the edges to a `SpanningForest` first.
    """

    def __init__(self, max_rounds: int = DEFAULT_MAX_ROUNDS, check: bool = True,
                 one_worker: bool = False, contract: bool = True):
        super().__init__()
        self._rounds = max_rounds
        self._check = check
        self._one_worker = one_worker
        self._contract = contract

    def expand(self, edges: beam.PCollection[tuple[str, str]]
               ) -> beam.PCollection[tuple[str, str]]:
        if self._contract:
            edges = edges | "Forest" >> SpanningForest()
        if self._one_worker:
            return (edges
                    | "UnionFind" >> beam.CombineGlobally(UnionFind())
                    | "Labels" >> beam.FlatMap(lambda labels: labels.items()))
        current = edges | "Orient" >> beam.Map(_ordered) | "Distinct" >> beam.Distinct()
        for r in range(self._rounds):
            current = (
                current
                | f"Round{r}LargeStar" >> beam.FlatMap(_both_directions)
                | f"Round{r}ByNode" >> beam.GroupByKey()
                | f"Round{r}LargeStarEdges" >> beam.FlatMapTuple(large_star)
                | f"Round{r}ByLargerEnd" >> beam.Map(_by_larger_end)
                | f"Round{r}Smaller" >> beam.GroupByKey()
                | f"Round{r}SmallStarEdges" >> beam.FlatMapTuple(small_star))
        labels = (current
                  | "FinalBothDirections" >> beam.FlatMap(_both_directions)
                  | "FinalByNode" >> beam.GroupByKey()
                  | "Label" >> beam.MapTuple(_labels))
        if self._check:
            ends = edges | "EdgeEnds" >> beam.FlatMap(_ends)
            edge_labels = ({"edges": ends, "labels": labels}
                           | "JoinEnds" >> beam.CoGroupByKey()
                           | "LabelOfEachEnd" >> beam.FlatMap(
                               lambda kv: [(e, kv[1]["labels"][0]) for e in kv[1]["edges"]]))
            _ = ({"labels": edge_labels}
                 | "ByEdge" >> beam.CoGroupByKey()
                 | "CheckConverged" >> beam.FlatMap(_check_edge, self._rounds))
        return labels
