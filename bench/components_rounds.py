"""Large-star / small-star rounds each graph shape needs to converge (in memory, no runner).

    PYTHONPATH=. python bench/components_rounds.py [--n 20000]

Prints one line per graph: nodes, edges, rounds until the edge set stops changing.
"""

from __future__ import annotations

import argparse

import numpy as np

from transforms.manifest.components import star_round


def rounds(edges: set[tuple[str, str]], limit: int = 100) -> int:
    for r in range(1, limit + 1):
        after = star_round(edges)
        if after == edges:
            return r - 1
        edges = after
    raise RuntimeError(f"not converged in {limit} rounds")


def _name(k: int) -> str:
    return f"{k:09d}"


def graphs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    yield "path, ids in order", {(_name(k), _name(k + 1)) for k in range(n - 1)}
    perm = rng.permutation(n)
    yield "path, ids in random order", {tuple(sorted((_name(perm[k]), _name(perm[k + 1]))))
                                        for k in range(n - 1)}
    for degree in (1, 2, 4):
        i, j = rng.integers(0, n, degree * n // 2), rng.integers(0, n, degree * n // 2)
        yield f"random, mean degree {degree}", {tuple(sorted((_name(a), _name(b))))
                                                for a, b in zip(i, j) if a != b}
    c = min(n, 300)
    yield f"clique of {c}", {(_name(a), _name(b)) for a in range(c) for b in range(a + 1, c)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    for name, edges in graphs(args.n):
        nodes = {v for e in edges for v in e}
        print(f"{name:28s} nodes {len(nodes):7d} edges {len(edges):8d} rounds {rounds(edges)}")


if __name__ == "__main__":
    main()
