"""Keepers per connected component: the greedy, non-chaining grouping of `build_groups`.

`AssignKeepers`: per component label, its members `(record_id, sort_key)` and
its edges `(id_a, id_b, score)` (CoGroupByKey) -> one `(record_id, keeper_id,
score_to_keeper)` per member, plus one `(members, pairs)` per component on the
`sizes` output. Members are visited best keeper first (smallest `sort_key`);
an unassigned member becomes a keeper and takes its unassigned neighbours, so
every member is one edge at or above the threshold from its keeper.

Memory: the member ids and a few numpy arrays per member, plus the edges as
int32 local indices and a float32 score. Up to `max_pairs_in_memory` edges are
kept in RAM; a component with more spills them to a local temp file as it
reads them, and the symmetric CSR is built in two passes over that file
(degree count, then scatter) into numpy memmaps, so RAM holds per-member
arrays only and the page cache serves the rest.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam
import numpy as np

from transforms.metrics import counter

DEFAULT_MAX_PAIRS_IN_MEMORY = 50_000_000
SIZES = "sizes"
_EDGE = np.dtype([("i", np.int32), ("j", np.int32), ("s", np.float32)])  # 12 B per pair
_CHUNK = 1 << 20


def _edge_chunks(edges: Iterable[tuple[str, str, float]], index: dict[str, int]
                 ) -> Iterator[np.ndarray]:
    """Edges as `_EDGE` records (local indices), `_CHUNK` at a time."""
    buf = np.empty(_CHUNK, _EDGE)
    k = 0
    for a, b, score in edges:
        buf[k] = (index[a], index[b], score)
        k += 1
        if k == _CHUNK:
            yield buf
            buf = np.empty(_CHUNK, _EDGE)
            k = 0
    if k:
        yield buf[:k]


def _scatter(u: np.ndarray, v: np.ndarray, s: np.ndarray, pos: np.ndarray,
             indices: np.ndarray, data: np.ndarray) -> None:
    order = np.argsort(u, kind="stable")
    uu = u[order]
    within = np.arange(uu.size) - np.searchsorted(uu, uu, side="left")
    dest = pos[uu] + within
    indices[dest] = v[order]
    data[dest] = s[order]
    pos += np.bincount(u, minlength=pos.size)


def build_csr(chunks: Callable[[], Iterable[np.ndarray]], n: int, m: int,
              workdir: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric CSR `(indptr, indices, data)` of `m` edges over `n` nodes, in two passes.

    `chunks()` yields `_EDGE` arrays (called twice). With `workdir`, `indices`
    and `data` are memmaps there instead of RAM.
    """
    degree = np.zeros(n, np.int64)
    for c in chunks():
        degree += np.bincount(c["i"], minlength=n) + np.bincount(c["j"], minlength=n)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(degree, out=indptr[1:])
    if workdir is None:
        indices, data = np.empty(2 * m, np.int32), np.empty(2 * m, np.float32)
    else:
        indices = np.lib.format.open_memmap(os.path.join(workdir, "indices.npy"), "w+",
                                            np.int32, (2 * m,))
        data = np.lib.format.open_memmap(os.path.join(workdir, "data.npy"), "w+",
                                         np.float32, (2 * m,))
    pos = indptr[:-1].copy()
    for c in chunks():
        _scatter(c["i"], c["j"], c["s"], pos, indices, data)
        _scatter(c["j"], c["i"], c["s"], pos, indices, data)
    return indptr, indices, data


def greedy_keepers(order: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                   data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(keeper index, score_to_keeper)` per node, visiting nodes in `order`."""
    n = indptr.size - 1
    keeper = np.full(n, -1, np.int64)
    score = np.ones(n, np.float32)
    for u in order:
        if keeper[u] >= 0:
            continue
        keeper[u] = u
        nbrs = np.asarray(indices[indptr[u]:indptr[u + 1]])
        free = keeper[nbrs] < 0
        keeper[nbrs[free]] = u
        score[nbrs[free]] = np.asarray(data[indptr[u]:indptr[u + 1]])[free]
    return keeper, score


class _AssignKeepersFn(beam.DoFn):
    def __init__(self, max_pairs_in_memory: int):
        self._cap = max_pairs_in_memory

    def process(self, element):
        _, grouped = element
        members = sorted(grouped["members"], key=lambda m: m[1])
        ids = [rid for rid, _ in members]
        del members
        workdir = None
        try:
            m, chunks, workdir = self._edges(grouped["edges"], {rid: k for k, rid in enumerate(ids)})
            indptr, indices, data = build_csr(chunks, len(ids), m, workdir)
            keeper, score = greedy_keepers(np.arange(len(ids)), indptr, indices, data)
        finally:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
        yield beam.pvalue.TaggedOutput(SIZES, (len(ids), m))
        for k, rid in enumerate(ids):
            yield rid, ids[keeper[k]], float(score[k])

    def _edges(self, edges, index: dict[str, int]):
        """`(pairs, chunks, workdir)`: in RAM up to the cap, else in a file under `workdir`."""
        kept, m, spill, workdir = [], 0, None, None
        for chunk in _edge_chunks(edges, index):
            m += chunk.size
            if spill is None and m > self._cap:
                workdir = tempfile.mkdtemp(prefix="clipdedup-component-")
                spill = open(os.path.join(workdir, "edges.bin"), "wb")  # noqa: SIM115
                for c in kept:
                    c.tofile(spill)
                kept = []
                counter("components_spilled").inc()
            if spill is None:
                kept.append(chunk.copy())
            else:
                chunk.tofile(spill)
        if spill is None:
            return m, lambda: kept, None
        spill.close()
        return m, functools.partial(_file_chunks, os.path.join(workdir, "edges.bin"), m), workdir


def _file_chunks(path: str, m: int) -> Iterator[np.ndarray]:
    edges = np.memmap(path, _EDGE, "r")
    for s in range(0, m, _CHUNK):
        yield edges[s:s + _CHUNK]


class AssignKeepers(beam.PTransform):
    """`{"members": (label, (record_id, sort_key)), "edges": (label, (a, b, score))}` ->
    `(record_id, keeper_id, score_to_keeper)` per member; `sizes`: `(members, pairs)` per
    component.

    Args:
        max_pairs_in_memory: above this many edges a component's edges go to a
            local temp file and memmaps (see the module docstring).
    """

    def __init__(self, max_pairs_in_memory: int = DEFAULT_MAX_PAIRS_IN_MEMORY):
        super().__init__()
        self._cap = max_pairs_in_memory

    def expand(self, inputs: dict):
        return (inputs
                | "ByComponent" >> beam.CoGroupByKey()
                | "Greedy" >> beam.ParDo(_AssignKeepersFn(self._cap)).with_outputs(
                    SIZES, main="assigned"))
