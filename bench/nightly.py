"""A full run against an incremental night on the same data, side by side (issue 16).

    # 5,000 images + 1 %, ViT-B/32 stand-in; then 1M + 10k mining, approximate
    python bench/nightly.py --scratch-mode approximate
    python bench/nightly.py --skip-runs --n-existing 200000 --n-new 2000   # exact mining
    python bench/nightly.py --images 200 --model-size tiny --n-existing 20000 --n-new 200 --dim 64
    make bench-nightly

Runs, each `clipdedup run` in its own process (wall time, CPU seconds of the
process and everything it waited for, from `summary.json`: files read and
images embedded), at `--thresholds` (see `main`: the stand-in's vectors are
far closer together than a real model's):

1. `full`: tonight's data (the night-1 shards plus one new shard of
   `--night-fraction` of the images, some of them copies of old ones) from
   nothing;
2. `night 1` (not shown: the previous run), then `incremental`: tonight's data
   with `--previous <night 1>` (`INCREMENTAL_FLAGS`). When this tree's CLI has
   no `--incremental`, `--previous` only adds the diff and the alerts, so the
   column would measure a second full run: it is skipped, with a message;
3. `fixed cost`: a run over one image (start-up, graph, model load, index
   pass, publish): what a night costs however little is new; with
   `--incremental`, also a night over the same data with nothing new.

Then mining, in this process, with the pipeline's own functions:
`--n-existing` + `--n-new` unit vectors (`tools/synthetic.py`) mined from
scratch (`mine_pairs`, `--scratch-mode`, exact by default) against what an
incremental night runs: exact, `transforms.mine.incremental.iter_new_pairs`
(the new rows against all), whose pairs with a new row must be the scratch
run's; approximate (`--scratch-mode approximate`), last night's partitions
reused (`transforms.mine.incremental_approximate`), both sides' pairs with a
new row checked against an exact search of the new rows. Loading the table
is the same work in both and not in either figure.

Wall times depend on what else runs on the machine: the load average is
printed. Results belong in docs/, not here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PER_SHARD = 100


def INCREMENTAL_FLAGS(previous: str) -> list[str]:  # noqa: N802 - a constant to edit, as a function
    """The flags that make tonight's run incremental over `previous`."""
    return ["--previous", previous]


# summary.json counts, first key present wins: an incremental run may count what it
# read and embedded tonight apart from what it carried over.
FILES_READ_KEYS = ("files_read", "files")
EMBEDDED_KEYS = ("embedded_this_run", "images_embedded", "newly_embedded", "embedded")


def _photo(seed: int) -> bytes:
    """A 320x240 JPEG with smooth structure and noise (decodes like a photo)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((320, 240), Image.Resampling.BICUBIC), np.int16)
    noisy = np.clip(img + rng.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def build_data(folder: str, images: int, night_fraction: float) -> tuple[str, int]:
    """Night-1 shards of `images` photos and tonight's extra shard; returns (glob, new images).

    A tenth of the new images are byte copies of old ones, a tenth re-encodings.
    """
    from PIL import Image

    from tools.synthetic import write_tar

    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):  # a reused --work folder: tonight's shard from last time
        if old.startswith("night2-"):
            os.remove(os.path.join(folder, old))
    for s in range(0, images, PER_SHARD):
        write_tar(os.path.join(folder, f"night1-{s // PER_SHARD:05d}.tar"),
                  [(f"{k:07d}.jpg", _photo(k)) for k in range(s, min(images, s + PER_SHARD))])
    new = max(1, round(images * night_fraction))
    blobs = []
    for k in range(new):
        if k % 10 == 0:
            data = _photo(k)  # byte copy of an old image
        elif k % 10 == 1:
            buf = io.BytesIO()
            Image.open(io.BytesIO(_photo(k))).save(buf, "JPEG", quality=70)
            data = buf.getvalue()  # the same picture, re-encoded
        else:
            data = _photo(images + k)
        blobs.append((f"new-{k:07d}.jpg", data))
    write_tar(os.path.join(folder, "night2-00000.tar.new"), blobs)
    return os.path.join(folder, "*.tar"), new


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def clipdedup(argv: list[str]) -> tuple[float, float, str]:
    """Runs the CLI in a child process: (wall s, CPU s, its output)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    cpu, started = _children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, check=False)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if proc.returncode not in (0, 3):  # 3: published with alerts
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"clipdedup {' '.join(argv[:2])} failed ({proc.returncode})")
    return wall, cpu, proc.stdout + proc.stderr


def has_incremental() -> bool:
    _, _, text = clipdedup(["run", "--help"])
    return "--incremental" in text


def _first(counts: dict, keys: tuple[str, ...]) -> tuple[str, object]:
    key = next((k for k in keys if k in counts), keys[-1])
    return key, counts.get(key)


def _measured(label: str, wall: float, cpu: float, run: str) -> dict:
    with open(os.path.join(run, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    counts = summary["counts"]
    files_key, files = _first(counts, FILES_READ_KEYS)
    embedded_key, embedded = _first(counts, EMBEDDED_KEYS)
    return {"label": label, "wall_s": wall, "cpu_s": cpu, "files_read": files,
            "embedded": embedded, "keys": f"{files_key}, {embedded_key}",
            "model_s": summary["timings"].get("inference_seconds"),
            "diff_s": summary["timings"].get("diff_seconds"), "timings": summary["timings"],
            "pairs": counts.get("duplicates", 0) + counts.get("near_duplicates", 0)}


def _fixed_cost_parts(wall: float, timings: dict) -> str:
    """Where a run's wall time went, from `summary.json` timings; the rest is the
    process outside `jobs.execute` (interpreter and imports, config, model
    resolution, publishing)."""
    parts = {"embed job": timings.get("embed_seconds", 0.0),
             "mine job": timings.get("mine_seconds", 0.0),
             "report": timings.get("report_seconds", 0.0)}
    parts["start-up, launcher, publish"] = (wall - timings.get("total_seconds", 0.0)
                                            - parts["report"])
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts.items())


def bench_runs(args, work: str) -> None:
    from tools.stand_in import write_stand_in

    model = os.path.join(work, f"stand-in-{args.model_size}")
    if not os.path.isdir(model):
        write_stand_in(model, args.model_size)
    data = os.path.join(work, "data")
    pattern, new = build_data(data, args.images, args.night_fraction)
    out = os.path.join(work, "out")
    common = ["--model", model, "--output", out, "--batch-size", "32", "--overwrite",
              "--duplicate-threshold", str(args.thresholds[0]),
              "--near-duplicate-threshold", str(args.thresholds[1]), *args.beam]
    incremental = has_incremental()
    second = incremental or args.previous_column
    rows = []
    if second:
        clipdedup(["-q", "run", "--input", pattern, "--run-id", "night1", *common])
    if not incremental:
        print("SKIPPED the incremental column: this tree's `clipdedup run` has no --incremental "
              "(with --previous alone it would be a second full run plus the diff); rerun after "
              "the incremental core is merged"
              + ("; --previous-column: measured as `with --previous (full + diff)`"
                 if second else ""))
    os.rename(os.path.join(data, "night2-00000.tar.new"), os.path.join(data, "night2-00000.tar"))
    wall, cpu, _ = clipdedup(["-q", "run", "--input", pattern, "--run-id", "full", *common])
    rows.append(_measured("full run", wall, cpu, os.path.join(out, "full")))
    if second:
        wall, cpu, _ = clipdedup(["-q", "run", "--input", pattern, "--run-id", "night2", *common,
                                  *INCREMENTAL_FLAGS(os.path.join(out, "night1"))])
        rows.append(_measured("incremental" if incremental else "with --previous (full + diff)",
                              wall, cpu, os.path.join(out, "night2")))
    if incremental:  # the fixed cost of a night with nothing new
        wall, cpu, _ = clipdedup(["-q", "run", "--input", pattern, "--run-id", "night3", *common,
                                  *INCREMENTAL_FLAGS(os.path.join(out, "night2"))])
        rows.append(_measured("incremental, nothing new", wall, cpu, os.path.join(out, "night3")))
    one = os.path.join(work, "one")
    os.makedirs(one, exist_ok=True)
    with open(os.path.join(one, "one.jpg"), "wb") as f:
        f.write(_photo(10**6))
    fixed = []  # several runs: the VM's speed drifts from one run to the next
    for i in range(max(1, args.fixed_cost_runs)):
        wall, cpu, _ = clipdedup(["-q", "run", "--input", one, "--run-id", f"fixed{i}", *common])
        fixed.append(_measured("fixed cost (1 image)", wall, cpu, os.path.join(out, f"fixed{i}")))
    rows.append(sorted(fixed, key=lambda r: r["wall_s"])[len(fixed) // 2])  # the median run

    pairs = rows[0]["pairs"]
    print(f"\nruns: {args.images} images + {new} new ({args.night_fraction:.0%}), "
          f"{args.images // PER_SHARD + 1} shards, stand-in {args.model_size}, thresholds "
          f"{args.thresholds[0]} / {args.thresholds[1]} ({pairs:,} pairs in the full run), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'':30}{'wall s':>9}{'CPU s':>9}{'files read':>12}{'embedded':>10}{'model s':>9}")
    for r in rows:
        model_s = "n/a" if r["model_s"] is None else f"{r['model_s']:.1f}"
        print(f"{r['label']:30}{r['wall_s']:9.1f}{r['cpu_s']:9.1f}{r['files_read']!s:>12}"
              f"{r['embedded']!s:>10}{model_s:>9}")
    if second:
        full, inc = rows[0], rows[1]
        print(f"{inc['label']} / full: wall {inc['wall_s'] / full['wall_s']:.3f}, "
              f"CPU {inc['cpu_s'] / full['cpu_s']:.3f} (target <= 0.1)")
    if second and rows[1]["diff_s"] is not None:
        print(f"of which the diff against night 1 (changes.parquet): {rows[1]['diff_s']:.1f} s")
    walls = " / ".join(f"{r['wall_s']:.1f}" for r in fixed)
    print(f"fixed cost of a run, {len(fixed)} runs: {walls} s wall")
    print(f"fixed cost of a run (the median): {rows[-1]['wall_s']:.1f} s (target <= 10 s): "
          f"{_fixed_cost_parts(rows[-1]['wall_s'], rows[-1]['timings'])}; "
          f"counts from summary.json keys: {rows[0]['keys']}")


def _pair_keys(chunks, n: int) -> np.ndarray:
    """`i * n + j` of every pair in `(i, j, score)` chunks, sorted."""
    keys = [i.astype(np.int64) * np.int64(n) + j.astype(np.int64) for i, j, _ in chunks]
    return np.sort(np.concatenate(keys)) if keys else np.empty(0, np.int64)


def _mining_data(args):
    """`--n-existing` + `--n-new` unit vectors; tonight's rows a tenth copies of old rows
    with a little noise, the rest new topics. Returns `(x, is_new)`."""
    from tools.synthetic import clustered_embeddings

    n_old, n_new = args.n_existing, args.n_new
    x = clustered_embeddings(n_old + n_new, args.dim, seed=3)
    rng = np.random.default_rng(4)
    src = rng.choice(n_old, n_new // 10, replace=False)
    x[n_old:n_old + src.size] = x[src] + rng.normal(0, 0.01, (src.size, args.dim)).astype(
        np.float32)
    x[n_old:] /= np.linalg.norm(x[n_old:], axis=1, keepdims=True)
    is_new = np.zeros(n_old + n_new, bool)
    is_new[n_old:] = True
    return x, is_new


def _timed(fn):
    started, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - started, time.process_time() - cpu


def _with_new(keys: np.ndarray, is_new: np.ndarray, n: int) -> np.ndarray:
    return keys[is_new[keys // n] | is_new[keys % n]]


def _kernels() -> str:
    """The BLAS kernels numpy and faiss run on: the ratio of an approximate night to a
    scratch run depends on them (docs/nightly.md, "On another CPU the target was missed")."""
    import faiss  # noqa: F401 - loads its BLAS, so that threadpoolctl lists it
    from threadpoolctl import threadpool_info

    kernels = sorted({f"{i.get('internal_api')} {i.get('architecture')}"
                      for i in threadpool_info() if i.get("user_api") == "blas"})
    return "BLAS: " + ", ".join(kernels)


def bench_mining(args) -> None:
    """Tonight's mining, the pipeline's own functions, against mining everything from
    scratch (`mine_pairs`, --scratch-mode).

    exact: `iter_new_pairs` (the new rows against all): the pairs that have a new
    row must be the same set as the scratch run's, checked, not assumed.
    approximate: last night's partitions are built on the old rows (not timed: it is
    last night's work), then tonight's `extend_index` + `mine_new` (assign the new
    rows, search the partitions they touch, recall on a sample of them), timed before
    and after `mine_approximate_indexed` over all rows, both with the same recall
    sample; the
    pairs with a new row of each are checked against an exact search of the new rows.
    """
    from transforms.mine import mine_pairs
    from transforms.mine.incremental import iter_new_pairs

    x, is_new = _mining_data(args)
    n, n_old, t = len(x), args.n_existing, args.threshold
    print(f"\nmining: {n_old} existing + {args.n_new} new, dim {args.dim}, threshold {t}, "
          f"load average {os.getloadavg()[0]:.1f}; {_kernels()}")
    if args.scratch_mode == "approximate":
        _bench_approximate(args, x, is_new)
        return
    (pairs, stats), scratch, scratch_cpu = _timed(lambda: mine_pairs(
        x, t, mode=args.scratch_mode, nprobe=args.nprobe, recall_sample_size=0))
    tonight, incremental, incremental_cpu = _timed(
        lambda: _pair_keys(iter_new_pairs(x, is_new, t), n))
    scratch_keys = _with_new(pairs.keys(n).astype(np.int64), is_new, n)
    same = np.array_equal(scratch_keys, tonight)
    print(f"  from scratch ({n} rows, {stats.get('mode', args.scratch_mode)}): {scratch:8.2f} s "
          f"wall, {scratch_cpu:8.2f} s CPU, {len(pairs)} pairs, {scratch_keys.size} with a new row")
    print(f"  new against all (exact, what a night runs): {incremental:8.2f} s wall, "
          f"{incremental_cpu:8.2f} s CPU, {tonight.size} pairs with a new row")
    print(f"  ratio {incremental / scratch:.3f} wall, {incremental_cpu / scratch_cpu:.3f} CPU "
          f"(target <= 0.1); pairs with a new row "
          + ("identical to the scratch run's" if same else
             f"DIFFER from the scratch run's ({args.scratch_mode} mode)"))


def _bench_approximate(args, x: np.ndarray, is_new: np.ndarray) -> None:
    from transforms.mine.approximate import PartitionIndex, mine_approximate_indexed
    from transforms.mine.incremental import iter_new_pairs
    from transforms.mine.incremental_approximate import extend_index, mine_new

    n, t = len(x), args.threshold
    old = ~is_new
    options = {"nprobe": args.nprobe, "recall_sample_size": args.recall_sample_size}
    _, last_stats, last = mine_approximate_indexed(x[old], t, **options)
    probes = np.zeros((n, last.nprobe), np.int32)
    probes[old] = last.probes  # the old rows come first: row r is old row r
    scores = np.zeros((n, last.nprobe), np.float32)
    scores[old] = last.scores
    previous = PartitionIndex(last.centroids, probes, last.trained_n, last.trained_fit, scores)
    del last
    print(f"  last night ({int(old.sum())} rows): nlist {last_stats['nlist']}, "
          f"nprobe {last_stats['nprobe']}, recall {last_stats['recall_sampled']:.4f} (not timed)")

    def night():
        index, _ = extend_index(previous, x, is_new)
        return mine_new(x, is_new, index, t, recall_sample_size=args.recall_sample_size)

    # night, scratch, night: the VM's speed drifts, so the night is timed on both sides
    (keys, _, night_stats), before, before_cpu = _timed(night)
    (pairs, stats, _), scratch, scratch_cpu = _timed(
        lambda: mine_approximate_indexed(x, t, **options))
    _, after, after_cpu = _timed(night)
    incremental, incremental_cpu = (before + after) / 2, (before_cpu + after_cpu) / 2
    exact = _pair_keys(iter_new_pairs(x, is_new, t), n)
    scratch_keys = _with_new(pairs.keys(n).astype(np.int64), is_new, n)
    print(f"  from scratch ({n} rows, approximate, nlist {stats['nlist']}): {scratch:8.2f} s "
          f"wall, {scratch_cpu:8.2f} s CPU (train {stats['train_s']:.1f}, assign "
          f"{stats['assign_s']:.1f}, mine {stats['mine_s']:.1f}, recall {stats['recall_s']:.1f} "
          f"computing {stats['recall_search_share']:.3f} of its products)")
    print(f"  new against all (approximate, last night's partitions): {incremental:8.2f} s "
          f"wall, {incremental_cpu:8.2f} s CPU, the mean of {before:.2f} s before and "
          f"{after:.2f} s after (mine {night_stats['mine_s']:.1f}, recall "
          f"{night_stats['recall_s']:.1f} computing {night_stats['recall_search_share']:.3f} "
          "of its products)")
    print(f"  ratio {incremental / scratch:.3f} wall, {incremental_cpu / scratch_cpu:.3f} CPU "
          "(target <= 0.1)")
    # The recall check is an exact search of a fixed sample against all rows: the same
    # cost on both sides whatever is new, so the search's own ratio is printed too.
    night_search = incremental - night_stats["recall_s"]
    scratch_search = scratch - stats["recall_s"]
    print(f"  without the recall check on either side: {night_search:.2f} s against "
          f"{scratch_search:.2f} s, ratio {night_search / scratch_search:.3f} wall")
    for label, found, measured in (("scratch", scratch_keys, stats["recall_sampled"]),
                                   ("night", keys, night_stats["recall_sampled"])):
        true = np.isin(exact, found).mean() if exact.size else 1.0
        print(f"  {label}: {found.size} pairs with a new row, recall on them {true:.5f} "
              f"(against an exact search of the new rows: {exact.size} pairs); "
              f"sampled recall {measured:.4f}")
    _night_search_with_and_without_scores(x, is_new, previous, t)


def _night_search_with_and_without_scores(x: np.ndarray, is_new: np.ndarray, previous,
                                          threshold: float, rounds: int = 2) -> None:
    """The night's search alone, with the kept probe scores (the angle bound skips rows)
    and without (every old prober of a touched partition gathered), interleaved."""
    from transforms.mine.approximate import search_partitions
    from transforms.mine.incremental_approximate import extend_index

    index, _ = extend_index(previous, x, is_new)
    spent: dict[str, list[float]] = {"with": [], "without": []}
    found = {}
    for _ in range(rounds):
        for label, scores in (("without", None), ("with", index.scores)):
            (keys, _, _), wall, _ = _timed(lambda: search_partitions(
                x, index.probes, index.nlist, threshold, 4096, is_new, scores=scores))
            spent[label].append(wall)
            found[label] = keys
    same = np.array_equal(found["with"], found["without"])
    print(f"  the night's search: {' / '.join(f'{w:.2f}' for w in spent['with'])} s with the "
          f"kept scores, {' / '.join(f'{w:.2f}' for w in spent['without'])} s without; "
          + ("the same pairs" if same else "the pairs DIFFER"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--night-fraction", type=float, default=0.01)
    parser.add_argument("--model-size", choices=("tiny", "base"), default="base",
                        help="stand-in: base = ViT-B/32 architecture")
    # The stand-ins' random weights put these photos far closer together than a
    # real model would: at the pipeline's defaults (0.999 / 0.9) every image is a
    # near-duplicate of every other, one clique of all of them, the dense-cluster
    # case (docs/scaling.md). The defaults here keep pairs as rare as in a photo
    # collection; `--thresholds 0.999 0.9` measures the clique instead.
    parser.add_argument("--thresholds", nargs=2, type=float, default=(0.9997, 0.9995),
                        metavar=("DUPLICATE", "NEAR_DUPLICATE"),
                        help="the runs' duplicate and near-duplicate thresholds")
    parser.add_argument("--n-existing", type=int, default=1_000_000)
    parser.add_argument("--n-new", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--recall-sample-size", type=int, default=1000,
                        help="approximate: rows searched exactly to measure recall (both sides)")
    parser.add_argument("--scratch-mode", default="exact", choices=("exact", "approximate", "auto"),
                        help="mode of the from-scratch mining (exact: the incremental path's "
                             "equal; ~1 hour at 1M x 512 on 2 cores)")
    parser.add_argument("--previous-column", action="store_true",
                        help="without --incremental in the CLI, still run the second column "
                             "with --previous (a full run plus the diff: the diff's cost)")
    parser.add_argument("--fixed-cost-runs", type=int, default=3,
                        help="runs over one image; the table shows the median")
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--skip-mining", action="store_true")
    parser.add_argument("--work", help="working folder (default: a temporary one, removed)")
    parser.add_argument("beam", nargs="*", help="Beam flags for the runs, after --")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="clipdedup-nightly-")
    try:
        if not args.skip_runs:
            bench_runs(args, work)
        if not args.skip_mining:
            bench_mining(args)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
