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

The per-node steps are pure functions (`large_star`, `small_star`) so
`bench/components_rounds.py` can count rounds without a runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam

DEFAULT_MAX_ROUNDS = 24


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


class ConnectedComponents(beam.PTransform):
    """`(id_a, id_b)` string edges -> `(id, smallest id of its component)` per id on an edge.

    Args:
        max_rounds: large-star + small-star rounds unrolled in the graph.
        check: verify convergence (one join of the input edges with the labels).
    """

    def __init__(self, max_rounds: int = DEFAULT_MAX_ROUNDS, check: bool = True):
        super().__init__()
        self._rounds = max_rounds
        self._check = check

    def expand(self, edges: beam.PCollection[tuple[str, str]]
               ) -> beam.PCollection[tuple[str, str]]:
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
