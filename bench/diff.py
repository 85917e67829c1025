"""Benchmark of the diff of two runs: a dense cluster, or many records, night against night.

Two run folders are planted (`--records` records; `--cluster` of them one
clique, every pair in `near_duplicates.parquet`, a few in `duplicates.parquet`).
The later run removes `--removed` members of the clique, adds `--added` new
ones and moves `--moved` pairs to the other table: what a night over a dense
cluster hands the diff. Then `diff_runs` runs as the Beam job
(`in_process_max_rows=0`) and, up to `--in-process-max` pair rows, in the
launcher, each timed; the pair counts are checked against Python sets.

    python bench/diff.py                       # 5,000-clique: 12.5M pairs a run
    python bench/diff.py --cluster 1000        # smoke: 0.5M pairs a run
    python bench/diff.py --records 1000000 --cluster 100   # a million records, few pairs

Results: docs/nightly.md ("The diff is a Beam job").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _ids(prefix: str, n: int) -> list[str]:
    from transforms.records import make_record_id

    return [make_record_id(f"mem://{prefix}.tar", str(k)) for k in range(n)]


def _pair_table(members: np.ndarray, rows: int):
    """Every pair of `members` (an array of id strings), as PAIRS_SCHEMA tables."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from transforms import schemas

    k = members.size
    i, j = np.triu_indices(k, 1)
    ids = pa.array(members)
    for s in range(0, i.size, rows):
        a, b = ids.take(pa.array(i[s:s + rows])), ids.take(pa.array(j[s:s + rows]))
        lo = pc.if_else(pc.less(a, b), a, b)
        hi = pc.if_else(pc.less(a, b), b, a)
        yield pa.table([lo, hi, pa.array(np.full(len(lo), 0.95, np.float32))],
                       schema=schemas.PAIRS_SCHEMA)


def write_run(folder: str, run_id: str, records: list[str], clique: list[str],
              moved: int) -> None:
    """A published run folder whose clique's pairs are split: the first `moved` in
    duplicates.parquet, the rest in near_duplicates.parquet."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms import schemas

    os.makedirs(folder)
    keeper = clique[0]
    loc = lambda r: {"record_id": r, "source_uri": "mem://x.tar", "key": r}  # noqa: E731
    keep = [dict(loc(r), reason="unique", keeper_id=r) for r in records if r not in clique[1:]]
    drop = [dict(loc(r), reason="near_duplicate", keeper_id=keeper, keeper_source_uri="mem://x.tar",
                 keeper_key=keeper) for r in clique[1:]]
    pq.write_table(pa.Table.from_pylist(keep, schema=schemas.KEEP_SCHEMA),
                   os.path.join(folder, "keep.parquet"))
    pq.write_table(pa.Table.from_pylist(drop, schema=schemas.DROP_SCHEMA),
                   os.path.join(folder, "drop.parquet"))
    members = np.array(sorted(clique))
    with (pq.ParquetWriter(os.path.join(folder, "duplicates.parquet"), schemas.PAIRS_SCHEMA) as d,
          pq.ParquetWriter(os.path.join(folder, "near_duplicates.parquet"),
                           schemas.PAIRS_SCHEMA) as nd):
        written = 0
        for table in _pair_table(members, 1 << 20):
            head = max(0, min(table.num_rows, moved - written))
            if head:
                d.write_table(table.slice(0, head))
            if head < table.num_rows:
                nd.write_table(table.slice(head))
            written += table.num_rows
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump({"run_id": run_id, "counts": {"records_read": len(records),
                                                "record_errors": 0}}, f)
    with open(os.path.join(folder, "_SUCCESS"), "w") as f:
        f.write("{}")


def expected(before: list[str], after: list[str]) -> dict:
    """The pair counts a diff must give, from the planting rule (no sets of 12M tuples)."""
    k0, k1 = len(before), len(after)
    common = len(set(before) & set(after))
    pairs_before, pairs_after = k0 * (k0 - 1) // 2, k1 * (k1 - 1) // 2
    both = common * (common - 1) // 2
    return {"pairs_before": pairs_before, "pairs_after": pairs_after,
            "pairs_new": pairs_after - both, "pairs_vanished": pairs_before - both}


def expected_records(args) -> dict:
    """The record changes: the first `removed` clique members leave (the old keeper
    among them), the next one becomes the keeper, the rest of the clique changes keeper,
    the added records join it as dropped."""
    moved_keeper = 1 if args.removed else 0
    return {"before": args.records, "after": args.records - args.removed + args.added,
            "new": args.added, "removed": args.removed, "dropped_to_kept": moved_keeper,
            "keeper_changed": (args.cluster - args.removed - 1) if args.removed else 0,
            "kept_to_dropped": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--cluster", type=int, default=5000)
    parser.add_argument("--removed", type=int, default=10)
    parser.add_argument("--added", type=int, default=50)
    parser.add_argument("--moved", type=int, default=1000)
    parser.add_argument("--in-process-max", type=int, default=2_000_000,
                        help="also time the launcher's own diff up to this many pair rows")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args()

    from pipelines.diff_pipeline import diff_runs

    work = args.work or tempfile.mkdtemp(prefix="clipdedup-bench-diff-")
    old = _ids("old", args.records)
    new = _ids("new", args.added)
    before_clique = old[:args.cluster]
    after_clique = old[args.removed:args.cluster] + new
    before_records = old
    after_records = old[args.removed:] + new
    a, b = os.path.join(work, "A"), os.path.join(work, "B")
    started = time.perf_counter()
    write_run(a, "A", before_records, before_clique, args.moved)
    # the later night's clique is the earlier one's minus removed plus added; its
    # duplicates are another slice of pairs, so some pairs change kind
    write_run(b, "B", after_records, after_clique, 2 * args.moved)
    want = expected(before_clique, after_clique)
    want_records = expected_records(args)
    rows = want["pairs_before"] + want["pairs_after"]
    print(f"diff of two runs: {args.records} records, a clique of {args.cluster} "
          f"({want['pairs_before']:,} pairs), then -{args.removed} +{args.added} "
          f"({want['pairs_after']:,} pairs); planted in {time.perf_counter() - started:.1f} s, "
          f"load average {os.getloadavg()[0]:.1f}")
    paths = [("beam_job", 0)]
    if rows <= args.in_process_max:
        paths.append(("in_process", 10**12))
    for label, max_rows in paths:
        started = time.perf_counter()
        got = diff_runs(a, b, in_process_max_rows=max_rows)
        seconds = time.perf_counter() - started
        pairs, records = got["pairs"], got["records"]
        ok = (all(pairs[k.removeprefix("pairs_")] == v for k, v in want.items())
              and all(records[k] == v for k, v in want_records.items())
              and got["new_duplicates_of_old"] == args.added)
        print(f"  {label:10s} {seconds:8.1f} s  pairs before {pairs['before']:,} after "
              f"{pairs['after']:,} new {pairs['new']:,} vanished {pairs['vanished']:,} "
              f"changed kind {pairs['changed_kind']:,}; records new {records['new']:,} "
              f"removed {records['removed']:,} keeper changed {records['keeper_changed']:,}: "
              + ("as planted" if ok else f"WRONG, want {want} {want_records}, got {got}"))


if __name__ == "__main__":
    main()
