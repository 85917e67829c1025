"""The approximate search's recall check with and without the partitions' bound.

    python bench/recall.py                      # 1M rows, 1,000 sampled, dim 512
    python bench/recall.py --rows 200000 --sample 500
    make bench-recall

Builds `--rows` clustered unit vectors (`tools/synthetic.py`) and their partitions
as an approximate run trains them, then times `sampled_recall` on the same sample
with the partitions (the exact search skips the rows the bound rules out) and
without (every sampled row against every row), interleaved, `--rounds` times each.
The two must measure the same pairs; the bench checks it and prints the share of
the unpruned search's products the pruned one computed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.sample = min(args.sample, args.rows)

    from tools.synthetic import clustered_embeddings
    from transforms.mine.approximate import assign, auto_nlist, train_centroids
    from transforms.mine.pairs import canonical_pairs
    from transforms.mine.recall import exact_hits, sampled_recall

    x = clustered_embeddings(args.rows, args.dim, seed=3)
    nlist = auto_nlist(args.rows, args.nprobe)
    centroids = train_centroids(x, nlist, niter=6)
    labels = assign(x, centroids, 1)[0][:, 0]
    # The unpruned search's pairs of the same sample (not timed) as the pairs "found":
    # both checks must then measure recall 1 on the same number of pairs.
    queries = np.sort(np.random.default_rng(1).choice(args.rows, args.sample, replace=False))
    hits, _ = exact_hits(x, queries, args.threshold, 4096)
    found = canonical_pairs(queries[hits.i], hits.j, hits.score, args.rows).keys(args.rows)
    print(f"recall check: {args.sample} sampled of {args.rows} rows, dim {args.dim}, "
          f"threshold {args.threshold}, nlist {nlist}, load average {os.getloadavg()[0]:.1f}")
    times: dict[str, list[float]] = {"unpruned": [], "pruned": []}
    results = {}
    for _ in range(args.rounds):
        for label, parts in (("unpruned", {}), ("pruned", {"centroids": centroids,
                                                           "labels": labels})):
            started = time.perf_counter()
            results[label] = sampled_recall(x, found, args.threshold, args.sample, seed=0,
                                            block_size=4096, **parts)
            times[label].append(time.perf_counter() - started)
    for label, spent in times.items():
        print(f"  {label:9s} {' '.join(f'{t:6.2f}' for t in spent)} s, "
              f"{results[label]['recall_exact_pairs']} exact pairs, computing "
              f"{results[label]['recall_search_share']:.3f} of the products")
    same = all(r["recall_exact_pairs"] == found.size and r["recall_sampled"] in (1.0, None)
               for r in results.values())
    print(f"  pruned / unpruned: {np.mean(times['pruned']) / np.mean(times['unpruned']):.3f}; "
          + ("the same pairs" if same else "the pairs DIFFER"))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
