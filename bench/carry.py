"""Benchmark of a night's embed job when nothing is new: carrying the previous run.

A previous run folder of `--records` records in `--files` unchanged input
files is planted (its embeddings table with `--dim` random vectors, its
shards table with each file's size and modification time, empty errors and
byte-copy tables), and the embed job of a night over the same files
(`embed_pipeline.build_pipeline(previous=...)`, the `color-histogram`
descriptor, so that no model is loaded: nothing reaches it) runs in a
process of its own, `--repeats` times. The job's wall time and the
process's peak RSS (`VmHWM`) are printed, and the rows of tonight's embeddings table are checked
against the planted ones (ids and vectors).

`--trees A B` runs the same night with the code of other checkouts too,
interleaved (A, B, A, B, ...), to compare two versions side by side:

    python bench/carry.py                                  # 200k records
    python bench/carry.py --records 20000 --trees /tmp/old .

Results: docs/nightly.md ("The embed job's carry, measured").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the child process runs the code of the checkout it is started in (--trees)
sys.path.insert(0, os.getcwd() if "--night" in sys.argv else ROOT)
sys.path.insert(1, ROOT)  # bench.children, whichever checkout runs the night

from bench import children  # noqa: E402


def _peak_mb() -> float:
    """This process's own peak RSS (VmHWM): a forked child's `ru_maxrss` may count its
    parent's pages."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def plant(folder: str, records: int, files: int, dim: int) -> tuple[str, str]:
    """Input files and a previous run folder over them; returns (input pattern, run)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms import schemas
    from transforms.records import make_record_id

    inputs = os.path.join(folder, "inputs")
    run = os.path.join(folder, "previous")
    os.makedirs(inputs)
    os.makedirs(os.path.join(run, "embeddings"))
    uris, shards = [], []
    for k in range(files):
        path = os.path.join(inputs, f"shard-{k:05d}.tar")
        with open(path, "wb") as f:
            f.write(b"\0" * 10240)  # never opened: the night finds it unchanged
        uris.append(path)
    from apache_beam.io.filesystems import FileSystems

    for meta in FileSystems.match([os.path.join(inputs, "*.tar")])[0].metadata_list:
        shards.append({"source_uri": meta.path, "input_kind": "tar",
                       "records_read": records // files, "images_found": records // files,
                       "errors": 0, "ended_cleanly": True, "file_size": meta.size_in_bytes,
                       "last_modified": meta.last_updated_in_seconds})
    pq.write_table(pa.Table.from_pylist(shards, schema=schemas.SHARDS_SCHEMA),
                   os.path.join(run, "shards.parquet"))
    rng = np.random.default_rng(0)
    schema = schemas.embeddings_schema(dim, phash=True)
    with pq.ParquetWriter(os.path.join(run, "embeddings", "part-00000-of-00001.parquet"),
                          schema) as writer:
        for s in range(0, records, 65536):
            n = min(65536, records - s)
            rows = range(s, s + n)
            uri = [uris[r % files] for r in rows]
            key = [f"{r:08d}.jpg" for r in rows]
            vectors = rng.standard_normal((n, dim), dtype=np.float32)
            writer.write_table(pa.table({
                "record_id": [make_record_id(u, k) for u, k in zip(uri, key)],
                "source_uri": uri, "key": key, "sha256": [f"{r:064x}" for r in rows],
                "width": pa.array(np.full(n, 64, np.int32)),
                "height": pa.array(np.full(n, 48, np.int32)),
                "file_size": pa.array(np.full(n, 5000, np.int64)),
                "model": ["color-histogram"] * n,
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)),
                                                               dim),
                "phash": pa.array(np.arange(s, s + n, dtype=np.int64))}, schema=schema))
    for name, table_schema in (("errors", schemas.ERRORS_SCHEMA),
                               ("exact_duplicates", schemas.EXACT_DUPLICATES_SCHEMA)):
        pq.write_table(table_schema.empty_table(), os.path.join(run, f"{name}.parquet"))
    return os.path.join(inputs, "*.tar"), run


def night(pattern: str, previous: str, staging: str, dim: int) -> None:
    """One night's embed job (run inside the tree being measured)."""
    from pipelines import embed_pipeline
    from pipelines.config import load_config
    from pipelines.jobs import pipeline_options

    config = load_config("configs/local.yaml").replace(inputs=[pattern], model="color-histogram")
    p = embed_pipeline.build_pipeline(config, staging, dim, pipeline_options([]),
                                      descriptor=True, previous=previous)
    p.run().wait_until_finish()


def _check(previous: str, staging: str) -> str:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    before = pq.read_table(os.path.join(previous, "embeddings"),
                           columns=["record_id", "embedding"]).sort_by("record_id")
    after = pq.read_table(os.path.join(staging, "embeddings"),
                          columns=["record_id", "embedding"]).sort_by("record_id")
    same = (before.num_rows == after.num_rows
            and pc.all(pc.equal(before["record_id"], after["record_id"])).as_py()
            and before["embedding"].combine_chunks().flatten().equals(
                after["embedding"].combine_chunks().flatten()))
    return f"{after.num_rows} rows, " + ("ids and vectors as planted" if same else "DIFFERENT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trees", nargs="+", default=[ROOT],
                        help="checkouts whose code runs the night, interleaved")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--night", nargs=4, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.night:
        pattern, previous, staging, dim = args.night
        started = time.perf_counter()
        night(pattern, previous, staging, int(dim))
        children.emit({"wall": time.perf_counter() - started, "peak_mb": _peak_mb()})
        return

    work = args.work or tempfile.mkdtemp(prefix="clipdedup-bench-carry-")
    started = time.perf_counter()
    pattern, previous = plant(work, args.records, args.files, args.dim)
    print(f"night with nothing new: {args.records:,} records in {args.files} unchanged files, "
          f"dim {args.dim}; planted in {time.perf_counter() - started:.1f} s, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list] = {tree: [] for tree in args.trees}
    for repeat in range(args.repeats):
        for tree in args.trees:
            staging = os.path.join(work, f"staging-{len(results[tree])}-{abs(hash(tree))}")
            child = children.run(__file__, ["--night", pattern, previous, staging,
                                            str(args.dim)], tree)
            results[tree].append(child["wall"])
            print(f"  {tree}: {child['wall']:7.1f} s, peak {child['peak_mb']:,.0f} MB; "
                  f"{_check(previous, staging)}", flush=True)
    print(json.dumps({tree: [round(w, 1) for w in walls] for tree, walls in results.items()}))


if __name__ == "__main__":
    main()
