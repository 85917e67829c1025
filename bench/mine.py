"""Benchmark of all-pairs mining against sentence-transformers' paraphrase mining.

Measured side by side in one run, each contender in its own subprocess (so its
peak RSS, `ru_maxrss` of that process, is its own and includes the loaded
embeddings):

- N = --n-exact (default 100,000): `paraphrase_mining_embeddings` (its
  defaults, top_k=100, max_pairs=500,000) vs this project's exact mode: time,
  peak memory, and whether the pair sets above the threshold are identical.
  The approximate mode at the same N is also scored against the exact set
  (true recall, not sampled).
- N = --n-approx (default 1,000,000): approximate mode's time, peak memory and
  its own sampled recall.
- At both sizes, and for a dense cluster (--dense-n rows, default 200,000, of
  which --dense, default 5,000, are near-identical: 12.5M pairs), the whole
  `clipdedup mine` command with its Beam job in a worker process
  (`bench/mine_job.py`): time, the job's peak and the launcher's, apart.

Wall time depends on what else runs on the machine; the load average before
and after each contender and its CPU seconds are printed beside it.

Data: clustered unit vectors with planted near-duplicates and duplicates
(`tools/synthetic.py`), same seed for every contender.

    python bench/mine.py                       # full run (~10 min on 2 cores)
    python bench/mine.py --n-exact 5000 --n-approx 20000 --dim 64   # smoke
    python bench/mine.py --n-exact 0 --n-approx 0 --dim 64         # dense cluster only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _worker(args: argparse.Namespace) -> None:
    """Runs one contender on one data file; writes its pairs and a result json."""
    t0 = time.perf_counter()
    x = np.load(args.data)
    load_s = time.perf_counter() - t0
    n = x.shape[0]
    stats: dict = {}
    load_before = os.getloadavg()[0]
    cpu0 = _cpu_s()
    t = time.perf_counter()
    if args.worker == "reference":
        import torch
        from sentence_transformers.util import paraphrase_mining_embeddings

        ref = paraphrase_mining_embeddings(torch.from_numpy(x))
        elapsed = time.perf_counter() - t
        cpu = _cpu_s() - cpu0
        i = np.array([r[1] for r in ref], dtype=np.int64)
        j = np.array([r[2] for r in ref], dtype=np.int64)
        s = np.array([r[0] for r in ref], dtype=np.float32)
        stats = {"returned": len(ref), "min_score_returned": float(s.min()) if len(s) else None,
                 "top_k": 100, "max_pairs": 500_000}
        keep = s >= args.threshold
        lo, hi = np.minimum(i, j)[keep], np.maximum(i, j)[keep]
        keys = np.unique(lo * n + hi)
    else:
        from transforms.mine import mine_pairs

        pairs, stats = mine_pairs(x, args.threshold, mode=args.worker, block_size=args.block_size,
                                  nprobe=args.nprobe, recall_sample_size=args.recall_sample)
        elapsed = time.perf_counter() - t
        cpu = _cpu_s() - cpu0
        keys = pairs.keys(n)
    np.save(args.result + ".keys.npy", keys)
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump({"seconds": elapsed, "cpu_s": cpu, "load_s": load_s, "peak_mb": _peak_mb(),
                   "loadavg": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                   "pairs": int(keys.size), "stats": stats}, f)


def _run(kind: str, data: str, out: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--data", data,
           "--result", out, "--threshold", str(args.threshold), "--block-size",
           str(args.block_size), "--nprobe", str(args.nprobe), "--recall-sample",
           str(args.recall_sample)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    with open(out, encoding="utf-8") as f:
        res = json.load(f)
    res["keys"] = np.load(out + ".keys.npy")
    return res


def _make(n: int, args: argparse.Namespace) -> str:
    from tools.synthetic import clustered_embeddings

    path = os.path.join(args.workdir, f"emb_{n}x{args.dim}_s{args.seed}.npy")
    if not os.path.exists(path):
        x = clustered_embeddings(n, args.dim, seed=args.seed)
        np.save(path + ".tmp.npy", x)
        os.replace(path + ".tmp.npy", path)
        del x
    return path


def _line(name: str, res: dict, extra: str = "") -> str:
    la = res["loadavg"]
    return (f"  {name:<34} {res['seconds']:>7.1f} s wall {res['cpu_s']:>7.1f} s cpu "
            f"{res['peak_mb']:>6.0f} MB peak {res['pairs']:>7d} pairs  "
            f"(load {la[0]}->{la[1]}) {extra}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-exact", type=int, default=100_000, help="N for exact vs reference (0: skip)")
    p.add_argument("--n-approx", type=int, default=1_000_000, help="N for approximate (0: skip)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threshold", type=float, default=0.90)
    p.add_argument("--block-size", type=int, default=4096)
    p.add_argument("--nprobe", type=int, default=8)
    p.add_argument("--recall-sample", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--skip-launcher", action="store_true",
                   help="no `clipdedup mine` runs (launcher and job peak memory)")
    p.add_argument("--dense-n", type=int, default=200_000,
                   help="rows of the dense-cluster run (0: skip)")
    p.add_argument("--dense", type=int, default=5_000,
                   help="near-identical rows in it (K * (K - 1) / 2 pairs)")
    p.add_argument("--dense-mode", default="exact", choices=["exact", "approximate", "auto"])
    p.add_argument("--workdir", default=os.path.join(ROOT, "bench-output", "mine"))
    p.add_argument("--worker", choices=["reference", "exact", "approximate"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    os.makedirs(args.workdir, exist_ok=True)
    ok = True
    print(f"clipdedup mining benchmark: dim {args.dim}, threshold {args.threshold}, "
          f"block_size {args.block_size}, nprobe {args.nprobe}, recall sample {args.recall_sample}, "
          f"{os.cpu_count()} CPUs; each contender in its own process, peak = its max RSS")
    if args.n_exact:
        n = args.n_exact
        data = _make(n, args)
        print(f"\nN = {n:,} (clustered, planted near-duplicates/duplicates)")
        res = {}
        if not args.skip_reference:
            res["ref"] = _run("reference", data, os.path.join(args.workdir, "ref.json"), args)
        res["exact"] = _run("exact", data, os.path.join(args.workdir, "exact.json"), args)
        res["approx"] = _run("approximate", data, os.path.join(args.workdir, "approx_small.json"), args)
        if "ref" in res:
            r = res["ref"]
            capped = r["stats"]["returned"] >= 500_000 and r["stats"]["min_score_returned"] >= args.threshold
            print(_line("sentence-transformers paraphrase", r,
                        f"(top_k=100, max_pairs=500000{', CAP HIT' if capped else ''})"))
        print(_line("clipdedup exact", res["exact"]))
        exact_keys = res["exact"]["keys"]
        true_recall = np.isin(exact_keys, res["approx"]["keys"]).mean() if exact_keys.size else 1.0
        extra_pairs = int((~np.isin(res["approx"]["keys"], exact_keys)).sum())
        print(_line("clipdedup approximate", res["approx"],
                    f"recall vs exact {true_recall:.5f}, sampled "
                    f"{res['approx']['stats']['recall_sampled']}, false pairs {extra_pairs}"))
        if "ref" in res:
            same = np.array_equal(res["ref"]["keys"], exact_keys)
            speedup = res["ref"]["seconds"] / res["exact"]["seconds"]
            cpu_ratio = res["ref"]["cpu_s"] / max(res["exact"]["cpu_s"], 1e-9)
            only_ref = int((~np.isin(res["ref"]["keys"], exact_keys)).sum())
            only_ours = int((~np.isin(exact_keys, res["ref"]["keys"])).sum())
            print(f"  pair sets above {args.threshold} identical: {same} "
                  f"(only reference: {only_ref}, only exact: {only_ours}); "
                  f"exact speedup {speedup:.2f}x wall, {cpu_ratio:.2f}x cpu")
            ok &= same
        _launcher(n, 0, "exact", args)
    if args.n_approx:
        n = args.n_approx
        data = _make(n, args)
        print(f"\nN = {n:,} (clustered, planted near-duplicates/duplicates)")
        r = _run("approximate", data, os.path.join(args.workdir, "approx_large.json"), args)
        st = r["stats"]
        print(_line("clipdedup approximate", r,
                    f"nlist {st['nlist']}, nprobe {st['nprobe']}"))
        ci = st["recall_ci95_low"]
        print(f"  sampled recall {st['recall_sampled']} ({st['recall_found_pairs']}/"
              f"{st['recall_exact_pairs']} exact pairs of {st['recall_sample_size']} sampled rows; "
              f"95% lower bound {ci if ci is None else round(ci, 4)})")
        print(f"  stages: train {st['train_s']:.1f} s, assign {st['assign_s']:.1f} s, "
              f"mine {st['mine_s']:.1f} s, recall {st['recall_s']:.1f} s; load {r['load_s']:.1f} s")
        _launcher(n, 0, "approximate", args)
    if args.dense_n:
        print(f"\nN = {args.dense_n:,}, a dense cluster of {args.dense:,} near-identical rows "
              f"({args.dense * (args.dense - 1) // 2:,} pairs in it)")
        _launcher(args.dense_n, args.dense, args.dense_mode, args, force=True)
    return 0 if ok else 1


def _launcher(n: int, dense: int, mode: str, args: argparse.Namespace,
              force: bool = False) -> None:
    """One `clipdedup mine` run: its job's and its launcher's peak memory beside its time."""
    if args.skip_launcher and not force:
        return
    from bench import mine_job

    print(mine_job.line(mine_job.measure(n, args.dim, dense, mode, args.workdir, args.seed)))


if __name__ == "__main__":
    sys.exit(main())
