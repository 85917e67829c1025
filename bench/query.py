"""Benchmark of `clipdedup query`: loading a run's vectors, and the exact faiss search.

For each N of --sizes: clustered unit vectors (`tools/synthetic.py`)
are searched as `tools.query.RunIndex.search` does (faiss's exact flat
inner-product k-NN, `IndexFlatIP`'s kernel): one query and a batch of
--queries, median of --repeats. With
--load-n, an embeddings table of that many rows is written as Parquet (the
run's schema, `schemas.embeddings_schema`) and loading it into a `RunIndex`
is timed too (twice: from disk, then from the page cache), and reading the
metadata of a few hits (`tools.query.hit_rows`): what a query pays besides
its search.

Wall times depend on what else runs on the machine; the load average and
faiss's thread count are printed beside them. Results: docs/query.md.

    python bench/query.py                                   # 100k and 1M x 512
    python bench/query.py --sizes 2000 --dim 32 --load-n 1000   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.children import median_seconds  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB




def bench_search(n: int, dim: int, queries: int, k: int, repeats: int) -> dict:
    """The search `RunIndex.search` runs (faiss's flat inner-product k-NN) on N rows."""
    import faiss

    from tools.synthetic import clustered_embeddings

    x = clustered_embeddings(n, dim, seed=0)
    q = np.ascontiguousarray(x[:queries])  # rows of the matrix: each must find itself first

    def search(rows):
        return faiss.knn(rows, x, k, metric=faiss.METRIC_INNER_PRODUCT)

    one = median_seconds(lambda: search(q[:1]), repeats, warm_up=False)
    batch = median_seconds(lambda: search(q), repeats, warm_up=False)
    _, rows = search(q)
    found = float(np.mean(rows[:, 0] == np.arange(queries)))
    return {"n": n, "dim": dim, "gb": n * dim * 4 / 1e9, "one_query_s": one,
            "batch_s": batch, "queries": queries, "first_is_source": found}


def bench_load(n: int, dim: int, workdir: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tools.synthetic import clustered_embeddings
    from transforms import schemas

    folder = os.path.join(workdir, "embeddings")
    os.makedirs(folder, exist_ok=True)
    x = clustered_embeddings(n, dim, seed=0)
    schema = schemas.embeddings_schema(dim)
    rows_per_file = 100_000
    for part, start in enumerate(range(0, n, rows_per_file)):
        block = x[start:start + rows_per_file]
        m = len(block)
        ids = [f"{i:020d}" for i in range(start, start + m)]
        table = pa.table({
            "record_id": ids, "source_uri": ["gs://bucket/shard.tar"] * m, "key": ids,
            "sha256": ["0" * 64] * m, "width": pa.array([640] * m, pa.int32()),
            "height": pa.array([480] * m, pa.int32()),
            "file_size": pa.array([50_000] * m, pa.int64()), "model": ["clip-ViT-B-32"] * m,
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), dim)},
            schema=schema)
        pq.write_table(table, os.path.join(folder, f"part-{part:05d}.parquet"))
    del x
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--load-only", folder,
                          "--load-n", str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load_only(folder: str, n: int) -> None:
    """In a process of its own, so its peak RSS is the load's alone (plus Python and Beam)."""
    import transforms.mine.transform  # noqa: F401 - imported first, so only reading is timed
    from tools.query import RunIndex, hit_rows

    times = []
    for _ in range(2):  # the first read may come from disk, the second from the page cache
        index = None  # freed before the next is built: one matrix in memory at a time
        t = time.perf_counter()
        index = RunIndex(folder)
        times.append(time.perf_counter() - t)
        assert len(index) == n
    wanted = {index.ids[i] for i in range(0, n, max(1, n // 10))}
    t = time.perf_counter()
    rows = hit_rows(folder, wanted)
    rows_s = time.perf_counter() - t
    assert rows.keys() == wanted
    print(json.dumps({"n": n, "load_s": times, "hit_rows_s": rows_s, "hits": len(wanted),
                      "peak_mb": _peak_mb()}))


def main(argv=None) -> None:
    import faiss

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated N ('': none)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=10, help="queries in the batch search")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--load-n", type=int, default=100_000,
                   help="rows of the Parquet table whose loading is timed (0: skip)")
    p.add_argument("--workdir", help="where the Parquet table goes (default: a temp folder)")
    p.add_argument("--load-only", help=argparse.SUPPRESS)  # the child process of bench_load
    args = p.parse_args(argv)
    if args.load_only:
        _load_only(args.load_only, args.load_n)
        return
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for n in (int(s) for s in args.sizes.split(",") if s):
        r = bench_search(n, args.dim, args.queries, args.k, args.repeats)
        print(f"N={r['n']:>9,} x {r['dim']} ({r['gb']:.2f} GB): "
              f"1 query {r['one_query_s'] * 1e3:.1f} ms, {r['queries']} queries "
              f"{r['batch_s'] * 1e3:.1f} ms ({r['batch_s'] / r['queries'] * 1e3:.1f} ms each), "
              f"source row first {r['first_is_source']:.0%}; load average "
              f"{os.getloadavg()[0]:.2f}")
    if args.load_n:
        with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
            r = bench_load(args.load_n, args.dim, workdir)
        print(f"load N={r['n']:,} x {args.dim} from Parquet into a RunIndex: "
              f"{r['load_s'][0]:.2f} s, again {r['load_s'][1]:.2f} s; metadata of "
              f"{r['hits']} hits {r['hit_rows_s']:.2f} s; peak RSS of that process "
              f"{r['peak_mb']:.0f} MB; load average "
              f"{os.getloadavg()[0]:.2f}")
    print(f"peak RSS of this process (the search benchmark) {_peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
