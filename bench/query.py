"""Benchmark of `clipdedup query`'s search: an exact faiss IndexFlatIP over a run's vectors.

For each N of --sizes: clustered unit vectors (`transforms/mining/synthetic.py`)
go into an `IndexFlatIP` as `tools.query.RunIndex` builds it, then a search of
one query and of a batch of --queries is timed (median of --repeats). With
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
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_search(n: int, dim: int, queries: int, k: int, repeats: int) -> dict:
    import faiss

    from transforms.mining.synthetic import clustered_embeddings

    x = clustered_embeddings(n, dim, seed=0)
    t = time.perf_counter()
    index = faiss.IndexFlatIP(dim)
    index.add(x)
    add_s = time.perf_counter() - t
    q = np.ascontiguousarray(x[:queries])  # rows of the index: each must find itself first
    one = _median_s(lambda: index.search(q[:1], k), repeats)
    batch = _median_s(lambda: index.search(q, k), repeats)
    _, rows = index.search(q, k)
    found = float(np.mean(rows[:, 0] == np.arange(queries)))
    return {"n": n, "dim": dim, "gb": n * dim * 4 / 1e9, "add_s": add_s, "one_query_s": one,
            "batch_s": batch, "queries": queries, "first_is_source": found}


def bench_load(n: int, dim: int, workdir: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import transforms.mine  # noqa: F401 - imported here, so the timing below is reading only
    from tools.query import RunIndex, hit_rows
    from transforms import schemas
    from transforms.mining.synthetic import clustered_embeddings

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
    times = []
    for _ in range(2):  # the first read may come from disk, the second from the page cache
        index = None  # freed before the next is built: one index in memory at a time
        t = time.perf_counter()
        index = RunIndex(folder)
        times.append(time.perf_counter() - t)
        assert len(index) == n
    wanted = {index.ids[i] for i in range(0, n, max(1, n // 10))}
    t = time.perf_counter()
    rows = hit_rows(folder, wanted)
    rows_s = time.perf_counter() - t
    assert rows.keys() == wanted
    return {"n": n, "load_s": times, "hit_rows_s": rows_s, "hits": len(wanted)}


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
    args = p.parse_args(argv)
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for n in (int(s) for s in args.sizes.split(",") if s):
        r = bench_search(n, args.dim, args.queries, args.k, args.repeats)
        print(f"N={r['n']:>9,} x {r['dim']} ({r['gb']:.2f} GB): add {r['add_s']:.2f} s, "
              f"1 query {r['one_query_s'] * 1e3:.1f} ms, {r['queries']} queries "
              f"{r['batch_s'] * 1e3:.1f} ms ({r['batch_s'] / r['queries'] * 1e3:.1f} ms each), "
              f"source row first {r['first_is_source']:.0%}; load average "
              f"{os.getloadavg()[0]:.2f}")
    if args.load_n:
        with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
            r = bench_load(args.load_n, args.dim, workdir)
        print(f"load N={r['n']:,} x {args.dim} from Parquet into a RunIndex: "
              f"{r['load_s'][0]:.2f} s, again {r['load_s'][1]:.2f} s; metadata of "
              f"{r['hits']} hits {r['hit_rows_s']:.2f} s; load average "
              f"{os.getloadavg()[0]:.2f}")
    print(f"peak RSS {_peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
