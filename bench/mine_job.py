"""Peak memory of `clipdedup mine`: the launcher and the Beam job's worker, apart.

One child process (see `bench/children.py`) writes an embeddings table and
runs `clipdedup mine` on it as the launcher of a process of its own,
submitting to `tools.local_engine` (a Beam job service in another process,
the user code running inside it) with the PortableRunner, as it would submit
to Dataflow. The launcher's peak is its own `VmHWM` (`run_launcher`); the engine's is the
largest RSS of the job service and anything it starts, sampled from /proc
every 0.1 s (printed beside what the engine holds idle).

`--dense K` makes the first K rows near-identical, a dense cluster of
K * (K - 1) / 2 pairs (5,000 rows: 12.5M pairs), the case where pairs, not
vectors, decide the memory.

    python bench/mine_job.py --n 20000 --dim 64 --dense 5000 --mode exact
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import children  # noqa: E402


def dense_embeddings(n: int, dim: int, dense: int, seed: int = 0):
    """Clustered unit vectors whose first `dense` rows are all within cosine ~0.9999."""
    import numpy as np

    from tools.synthetic import clustered_embeddings

    x = clustered_embeddings(n, dim, seed=seed)
    if dense:
        rng = np.random.default_rng(seed + 1)
        base = rng.standard_normal(dim).astype(np.float32)
        base /= np.linalg.norm(base)
        block = base + 0.002 * rng.standard_normal((dense, dim)).astype(np.float32)
        x[:dense] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x


def write_table(path: str, x) -> None:
    """An id column and a vector column: all `clipdedup mine` needs of a table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, dim = x.shape
    pq.write_table(pa.table({
        "record_id": pa.array([f"r{k:08d}" for k in range(n)], pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)}), path)


def _child(args: argparse.Namespace) -> None:
    from tools.local_engine import LocalEngine, run_launcher

    work = tempfile.mkdtemp(prefix="mine_job_", dir=args.workdir)
    os.makedirs(os.path.join(work, "embeddings"))
    write_table(os.path.join(work, "embeddings", "part-0.parquet"),
                dense_embeddings(args.n, args.dim, args.dense, args.seed))
    argv = [sys.executable, "-m", "pipelines.cli", "-q", "mine", "--embeddings",
            os.path.join(work, "embeddings"), "--output", os.path.join(work, "out"),
            "--run-id", "bench", "--mode", args.mode]
    with LocalEngine() as engine:
        started = time.perf_counter()
        rc, launcher_rss, output = run_launcher(argv + engine.beam_args,
                                                env=dict(os.environ, PYTHONPATH=ROOT))
        seconds = time.perf_counter() - started
    if rc:
        sys.stderr.write(output[-3000:])
        raise SystemExit(f"clipdedup mine exited {rc}")
    with open(os.path.join(work, "out", "bench", "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    shutil.rmtree(work, ignore_errors=True)
    groups = summary.get("groups", {})
    children.emit({
        "n": args.n, "dim": args.dim, "dense": args.dense, "mode": args.mode,
        "seconds": seconds, "mine_seconds": summary["timings"].get("mine_seconds"),
        "pairs": summary["counts"]["duplicates"] + summary["counts"]["near_duplicates"],
        "largest_component": groups.get("largest_component"),
        "launcher_peak_mb": launcher_rss / 2**20,
        "job_peak_mb": engine.peak_rss_bytes / 2**20, "engine_idle_mb": engine.idle_rss_bytes / 2**20,
    })


def measure(n: int, dim: int, dense: int, mode: str, workdir: str, seed: int = 0) -> dict:
    """Runs one `clipdedup mine` in a fresh child process; its RESULT dict."""
    return children.run(__file__, ["--child", "--n", str(n), "--dim", str(dim), "--dense",
                                   str(dense), "--mode", mode, "--workdir", workdir,
                                   "--seed", str(seed)])


def line(res: dict) -> str:
    return (f"  clipdedup mine {res['mode']:<12} {res['seconds']:>7.1f} s "
            f"(mine job {res['mine_seconds']:.1f} s): launcher {res['launcher_peak_mb']:>6.0f} MB "
            f"peak, engine {res['job_peak_mb']:>6.0f} MB peak ({res['engine_idle_mb']:.0f} MB "
            f"idle); {res['pairs']:,} pairs, largest component {res['largest_component']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--dense", type=int, default=5_000, help="rows in one dense cluster")
    p.add_argument("--mode", default="exact", choices=["auto", "exact", "approximate", "distributed"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=os.path.join(ROOT, "bench-output", "mine"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    if args.child:
        _child(args)
        return 0
    print(line(measure(args.n, args.dim, args.dense, args.mode, args.workdir, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
