"""Peak memory of `clipdedup mine`: the launcher and the Beam job's worker, apart.

One child process (see `bench/children.py`) writes an embeddings table, then
runs `clipdedup mine` on it in that same process, with the DirectRunner's job
in a worker subprocess (`--direct_running_mode=multi_processing
--direct_num_workers=1`). The launcher's peak is `ru_maxrss` of the process
itself (it holds the runner, then builds groups and the manifest); the job's
is the largest `VmHWM` (the kernel's own peak RSS of a process) of its
descendants, read from /proc every 0.1 s while they live. Not `ru_maxrss` of
RUSAGE_CHILDREN: a child forked from a grown launcher reports the launcher's
size, and a DirectRunner worker is not always waited for.

`--dense K` makes the first K rows near-identical, a dense cluster of
K * (K - 1) / 2 pairs (5,000 rows: 12.5M pairs), the case where pairs, not
vectors, decide the memory.

    python bench/mine_job.py --n 20000 --dim 64 --dense 5000 --mode exact
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import children  # noqa: E402

JOB_FLAGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=1"]


def dense_embeddings(n: int, dim: int, dense: int, seed: int = 0):
    """Clustered unit vectors whose first `dense` rows are all within cosine ~0.9999."""
    import numpy as np

    from transforms.mining.synthetic import clustered_embeddings

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


class DescendantPeaks(threading.Thread):
    """Polls /proc for this process's descendants and keeps each one's VmHWM (MB)."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks: dict[int, tuple[float, str]] = {}
        self.own: list[tuple[float, float]] = []  # (seconds since start, VmRSS MB) of this one
        self._t0 = time.perf_counter()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> dict[int, tuple[float, str]]:
        self._stop_event.set()
        self.join()
        self.sample()
        return self.peaks

    def sample(self) -> None:
        with open("/proc/self/status", encoding="utf-8") as f:
            rss = next(line for line in f if line.startswith("VmRSS:"))
        self.own.append((time.perf_counter() - self._t0, int(rss.split()[1]) / 1024.0))
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        mine = {os.getpid()}
        for pid in sorted(parents):  # a child's pid is usually above its parent's
            if parents[pid] in mine:
                mine.add(pid)
        for pid in mine - {os.getpid()}:
            try:
                with open(f"/proc/{pid}/status", encoding="utf-8") as f:
                    hwm = next(line for line in f if line.startswith("VmHWM:"))
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
            except (OSError, StopIteration):
                continue
            mb = int(hwm.split()[1]) / 1024.0
            if mb > self.peaks.get(pid, (0.0, ""))[0]:
                self.peaks[pid] = (mb, cmd)


def _child(args: argparse.Namespace) -> None:
    from pipelines import cli

    work = tempfile.mkdtemp(prefix="mine_job_", dir=args.workdir)
    os.makedirs(os.path.join(work, "embeddings"))
    write_table(os.path.join(work, "embeddings", "part-0.parquet"),
                dense_embeddings(args.n, args.dim, args.dense, args.seed))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    peaks = DescendantPeaks()
    peaks.start()
    started = time.perf_counter()
    rc = cli.exit_code(["-q", "mine", "--embeddings", os.path.join(work, "embeddings"),
                        "--output", os.path.join(work, "out"), "--run-id", "bench",
                        "--mode", args.mode, *JOB_FLAGS])
    seconds = time.perf_counter() - started
    job = peaks.stop()
    if rc:
        raise SystemExit(f"clipdedup mine exited {rc}")
    with open(os.path.join(work, "out", "bench", "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    shutil.rmtree(work, ignore_errors=True)
    # The launcher mines first, then builds groups: its peak while mining is its
    # largest sampled RSS before the groups step began.
    mined_by = seconds - summary["timings"].get("groups_seconds", 0.0)
    children.emit({
        "n": args.n, "dim": args.dim, "dense": args.dense, "mode": args.mode,
        "seconds": seconds, "mine_seconds": summary["timings"].get("mine_seconds"),
        "pairs": summary["counts"]["duplicates"] + summary["counts"]["near_duplicates"],
        "launcher_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "launcher_before_mine_mb": before,
        "launcher_mining_mb": max((mb for t, mb in peaks.own if t <= mined_by), default=before),
        "groups_seconds": summary["timings"].get("groups_seconds"),
        "job_peak_mb": max((mb for mb, _ in job.values()), default=0.0),
        "job_processes": sorted(((round(mb), cmd) for mb, cmd in job.values()), reverse=True),
    })


def measure(n: int, dim: int, dense: int, mode: str, workdir: str, seed: int = 0) -> dict:
    """Runs one `clipdedup mine` in a fresh child process; its RESULT dict."""
    return children.run(__file__, ["--child", "--n", str(n), "--dim", str(dim), "--dense",
                                   str(dense), "--mode", mode, "--workdir", workdir,
                                   "--seed", str(seed)])


def line(res: dict) -> str:
    return (f"  clipdedup mine {res['mode']:<12} {res['seconds']:>7.1f} s "
            f"(mine job {res['mine_seconds']:.1f} s, groups {res['groups_seconds']:.1f} s): "
            f"job {res['job_peak_mb']:>6.0f} MB peak, launcher {res['launcher_mining_mb']:>6.0f} "
            f"MB while mining, {res['launcher_peak_mb']:>6.0f} MB peak; {res['pairs']:,} pairs")


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
