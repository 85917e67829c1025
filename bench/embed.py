"""Embedding throughput, side by side in one run (`make bench-embed`).

    PYTHONPATH=$PWD .venv/bin/python bench/embed.py [--images 48] [--flat-images 40]

Builds the full-size ViT-B/32 stand-in (random weights, same compute as the
real model; cached in bench-output/) and three datasets of tar shards: `large`
(camera-sized JPEGs, 12 MP by default), `small` (small PNGs) and `mixed`. Then
measures, each in its own subprocess so peak memory is its own:

  (a)  raw model forward on preprocessed tensors: transformers'
       `get_image_features` as loaded (fp32), then (a') clipdedup's image
       tower as its worker runs it (`transforms.embed.clip_tower` and
       `transforms.embed.allocator`; fp32 and each int8 backend); `tower-ab` times
       the tower rewrite alone against (a), batch by batch in one process;
  (b)  the reference recipe: `SentenceTransformer.encode` on a list of opened
       PIL images (batch by batch, as a user would);
  (c)  clipdedup's embed stage, tar shards to Parquet, through
       `pipelines.jobs.execute(..., mine=False)` on the local runner (torch
       fp32; the mixed set also with `onnx-int8`).

(c) is reported three ways: `total` (whole job: Beam start-up, model load,
index pass), `steady` (total minus the fixed cost of the same job on 2
images), which is what a nightly job of many thousand images sees, and
`in-job` (images per second between the end of the first forward pass and
the end of the last, timed inside the job, with the share of that window the
model was running: `model busy`). `steady` carries the noise of two jobs'
start-up; `in-job` leaves out the index pass and start-up but not the work
beside the model, and is the steadier of the two.

Memory flatness runs (c) on N and 10N images with the tiny stand-in (the
model's memory is a constant, so this is the stricter test of the pipeline's
buffering). Peak memory is the largest summed RSS of the measuring process
and all its descendants (Beam workers included), sampled every 50 ms.
The numbers depend on what else runs on the machine; say so when quoting.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OUT = os.path.join(ROOT, "bench-output", "embed")
BASE_MODEL = os.path.join(ROOT, "bench-output", "clip-base")
TINY_MODEL = os.path.join(ROOT, "bench-output", "clip-tiny")


# ---------------------------------------------------------------- memory ---
def _tree_rss(root: int) -> int:
    """Summed RSS (bytes) of `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total


class PeakMemory:
    """Samples the summed RSS of this process tree in a thread; `.peak` in bytes."""

    def __init__(self, interval: float = 0.05):
        self.peak = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss(os.getpid()))


# -------------------------------------------------------------- datasets ---
def _photo(seed: int, size: tuple[int, int]):
    """A photo-like image: a scikit-image photograph (or smooth noise) scaled
    to `size`, with sensor-like noise so JPEG sizes are realistic."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    try:
        from skimage import data
        names = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field")
        base = Image.fromarray(getattr(data, names[seed % len(names)])()).convert("RGB")
        base = base.rotate(int(rng.integers(0, 360)), expand=False)
    except Exception:  # noqa: BLE001 - scikit-image is a dev dependency; any image will do
        base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    img = np.asarray(base.resize(size, Image.Resampling.BILINEAR), dtype=np.int16)
    small = rng.normal(0, 3, (size[1] // 4, size[0] // 4, 3))
    noise = np.repeat(np.repeat(small, 4, 0), 4, 1)
    pad = ((0, size[1] - noise.shape[0]), (0, size[0] - noise.shape[1]), (0, 0))
    img = np.clip(img + np.pad(noise, pad), 0, 255).astype(np.uint8)
    return Image.fromarray(img)


def _blob(kind: str, seed: int, large: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    if kind == "large":
        _photo(seed, large).save(buf, "JPEG", quality=92)
    elif kind == "medium":
        _photo(seed, (1024, 768)).save(buf, "JPEG", quality=90)
    else:
        _photo(seed, (320, 240)).save(buf, "PNG")
    return buf.getvalue()


def _kinds(dataset: str, n: int) -> list[str]:
    if dataset in ("large", "small"):
        return [dataset] * n
    cycle = ("large", "small", "medium", "small")  # mixed: 1/4 large, 1/4 medium, 1/2 small
    return [cycle[i % len(cycle)] for i in range(n)]


def build_dataset(folder: str, dataset: str, n: int, large: tuple[int, int],
                  distinct: int | None = None, shards: int = 4) -> str:
    """Tar shards of `n` images; with `distinct`, only that many are encoded and
    the rest are byte-distinct variants (a unique tail after the image data,
    which decoders ignore), so a 10x set is cheap to build."""
    if os.path.exists(os.path.join(folder, "_DONE")):
        return folder
    os.makedirs(folder, exist_ok=True)
    kinds = _kinds(dataset, n)
    cache: dict[int, bytes] = {}
    writers = [tarfile.open(os.path.join(folder, f"shard-{s:03d}.tar"), "w") for s in range(shards)]
    for i, kind in enumerate(kinds):
        j = i % distinct if distinct else i
        if j not in cache:
            cache[j] = _blob(kind, j, large)
        data = cache[j] + (b"" if j == i else f"variant-{i}".encode())
        ext = "png" if kind == "small" else "jpg"
        info = tarfile.TarInfo(f"{i:06d}.{ext}")
        info.size = len(data)
        writers[i % shards].addfile(info, io.BytesIO(data))
    for w in writers:
        w.close()
    open(os.path.join(folder, "_DONE"), "w").close()
    return folder


def _tar_blobs(folder: str) -> list[bytes]:
    blobs = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".tar"):
            with tarfile.open(os.path.join(folder, name)) as tar:
                blobs += [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()]
    return blobs


# ------------------------------------------------------------ measurements ---
def _cpu() -> float:
    """CPU seconds of this process and its finished children (Beam workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _threads(n: int) -> None:
    if n:
        import torch
        torch.set_num_threads(n)


def _random_pixels(batch: int) -> np.ndarray:
    """A fixed batch of random uint8 [batch, 224, 224, 3] pixels."""
    return np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)


def measure_forward(args) -> dict:
    """(a): the model alone on normalised tensors, batch by batch."""
    import torch
    from sentence_transformers import SentenceTransformer

    from transforms.embed import backends

    _threads(args.threads)
    rewrite = args.tower == "rewritten"
    if rewrite:  # clipdedup's tower, run as its embed worker runs it
        from transforms.embed.allocator import keep_freed_memory
        keep_freed_memory()
    st = SentenceTransformer(args.model, device="cpu")
    # onnx-int8: exported once, cached.
    encoder = backends.load_encoder(st, args.backend, "cpu", rewrite=rewrite)
    x = encoder.normalise(_random_pixels(args.batch))
    with torch.inference_mode():
        encoder.forward(x)  # warm-up (allocations, ORT graph)
        n, started, cpu = 0, time.perf_counter(), _cpu()
        while n < args.images:
            encoder.forward(x)
            n += args.batch
        seconds = time.perf_counter() - started
    return {"images": n, "seconds": seconds, "cpu_seconds": _cpu() - cpu}


def measure_tower_ab(args) -> dict:
    """(a') against (a) in one process, batch by batch in turns (two copies of
    the model; the rewrite folds weights in place): the speed-up of the
    rewritten tower with the machine's drift hitting both alike."""
    import torch
    from sentence_transformers import SentenceTransformer

    from transforms.embed import backends

    _threads(args.threads)
    encoders = {tower: backends.load_encoder(SentenceTransformer(args.model, device="cpu"),
                                             rewrite=tower == "rewritten")
                for tower in ("stock", "rewritten")}
    x = encoders["stock"].normalise(_random_pixels(args.batch))
    seconds = dict.fromkeys(encoders, 0.0)
    with torch.inference_mode():
        for encoder in encoders.values():
            encoder.forward(x)  # warm-up
        n, cpu = 0, _cpu()
        while n < args.images:
            for tower, encoder in encoders.items():
                started = time.perf_counter()
                encoder.forward(x)
                seconds[tower] += time.perf_counter() - started
            n += args.batch
    return {"images": n, "seconds": seconds["stock"] + seconds["rewritten"],
            "cpu_seconds": _cpu() - cpu, "speedup": seconds["stock"] / seconds["rewritten"]}


def measure_reference(args) -> dict:
    """(b): `SentenceTransformer.encode` on opened PIL images."""
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    _threads(args.threads)
    st = SentenceTransformer(args.model, device="cpu")
    blobs = _tar_blobs(args.data)
    st.encode([Image.new("RGB", (224, 224))], show_progress_bar=False)  # warm-up
    started, cpu = time.perf_counter(), _cpu()
    for i in range(0, len(blobs), args.batch):
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs[i:i + args.batch]]
        st.encode(images, batch_size=args.batch, convert_to_numpy=True,
                  normalize_embeddings=True, show_progress_bar=False)
    return {"images": len(blobs), "seconds": time.perf_counter() - started,
            "cpu_seconds": _cpu() - cpu}


def measure_pipeline(args) -> dict:
    """(c): the real embed stage, tar shards -> Parquet, in a run folder."""
    import logging
    import shutil

    from pipelines.config import Config
    from pipelines.jobs import execute

    logging.basicConfig(level=logging.WARNING)
    out = os.path.join(OUT, "runs", f"{os.path.basename(args.data)}-{args.tag}")
    shutil.rmtree(out, ignore_errors=True)
    config = Config(inputs=(args.data,), model=args.model, output=out, run_id="bench",
                    batch_size=args.batch, backend=args.backend, num_threads=args.threads
                    ).replace(decode_ahead=args.decode_ahead,
                              decode_overlap=OVERLAP.get(args.decode_overlap))
    batches: list[tuple[float, float, int]] = []
    _time_forward_passes(batches)
    started, cpu = time.perf_counter(), _cpu()
    summary = execute(config, args.beam_args.split(), embed=True, mine=False)
    seconds = time.perf_counter() - started
    counts = summary["counts"]
    return {"images": counts["embedded"], "records": counts["records_read"],
            "errors": counts["record_errors"], "seconds": seconds, "cpu_seconds": _cpu() - cpu,
            "embed_seconds": summary["timings"]["embed_seconds"], **_in_job(batches)}


def _time_forward_passes(batches: list) -> None:
    """Records (start, end, images) of every forward pass the embed handler runs
    in this process (bench-only; with worker processes nothing is recorded)."""
    from transforms.embed.images import SentenceTransformerImageHandler

    run = SentenceTransformerImageHandler.run_inference

    def timed(self, batch, model, inference_args=None):
        start = time.perf_counter()
        out = list(run(self, batch, model, inference_args))
        batches.append((start, time.perf_counter(), len(batch)))
        return out

    SentenceTransformerImageHandler.run_inference = timed


def _in_job(batches: list[tuple[float, float, int]]) -> dict:
    """The job's rate between the end of its first forward pass and the end of
    its last (everything the pipeline does beside the model included, start-up
    and the index pass excluded), and the share of that window the model ran."""
    batches = sorted(batches, key=lambda b: b[1])
    if len(batches) < 2:
        return {}
    window = batches[-1][1] - batches[0][1]
    forward = sum(end - start for start, end, _ in batches[1:])
    return {"in_job_ips": sum(n for _, _, n in batches[1:]) / window,
            "model_busy": forward / window}


OVERLAP = {"auto": "auto", "true": True, "false": False}  # --decode-overlap -> Config
MEASURES = {"forward": measure_forward, "tower-ab": measure_tower_ab, "reference": measure_reference,
            "pipeline": measure_pipeline}


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", choices=MEASURES)
    p.add_argument("--model")
    p.add_argument("--data", default="")
    p.add_argument("--images", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--backend", default="torch")
    p.add_argument("--tower", choices=("rewritten", "stock"), default="rewritten",
                   help="forward: clipdedup's image tower or transformers' stock forward")
    p.add_argument("--beam-args", default="")
    p.add_argument("--tag", default="")
    p.add_argument("--decode-ahead", type=int, default=None, help="default: the config's")
    p.add_argument("--decode-overlap", choices=OVERLAP, default=None, help="default: the config's")
    args = p.parse_args(argv)
    with PeakMemory() as mem:
        result = MEASURES[args.child](args)
    result["peak_mib"] = mem.peak / 2**20
    from bench import children

    children.emit(result)


def run_child(**kwargs) -> dict:
    from bench import children

    argv = []
    for k, v in kwargs.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    result = children.run(__file__, argv)
    result["ips"] = result["images"] / result["seconds"]
    result["ipc"] = result["images"] / max(result["cpu_seconds"], 1e-9)
    return result


def _row(label: str, r: dict, extra: str = "") -> None:
    print(f"  {label:<34} {r['ips']:6.2f} img/s {r['ipc']:6.2f} img/cpu-s {r['images']:4d} img "
          f"{r['seconds']:6.1f} s  peak {r['peak_mib']:5.0f} MiB  {extra}", flush=True)


def _steady_row(label: str, r: dict, extra: str = "") -> None:
    """`_row` of a (c) job, with its steady rates (see `_steady`) and, for a
    job in this process, its in-job rate and model-busy share (see `_in_job`)."""
    in_job = (f"; in-job {r['in_job_ips']:.2f} img/s, model busy {r['model_busy']:.0%}"
              if "in_job_ips" in r else "")
    _row(label, r, f"steady {r['steady_ips']:.2f} img/s {r['steady_ipc']:.2f} img/cpu-s"
         f"{in_job}{extra}")


def _steady_ratio(label: str, r: dict, other: dict, total: bool = True) -> None:
    """Steady rate of one (c) job against another's, wall (and CPU)."""
    line = (f"  {label}, steady: {r['steady_ips'] / other['steady_ips']:.2f} "
            f"({r['steady_ipc'] / other['steady_ipc']:.2f})")
    print(line + (f"  total {r['ips'] / other['ips']:.2f}" if total else ""))


def _steady(r: dict, fixed: dict) -> None:
    """Rates without the fixed cost of a job (Beam start, model load); nan when
    the job took no longer than the fixed cost (too few images to tell)."""
    def rate(total: float, fixed_part: float) -> float:
        return r["images"] / (total - fixed_part) if total > fixed_part else float("nan")

    r["steady_ips"] = rate(r["seconds"], fixed["seconds"])
    r["steady_ipc"] = rate(r["cpu_seconds"], fixed["cpu_seconds"])


TWO_PROCESSES = "--direct_num_workers=2 --direct_running_mode=multi_processing"


def two_processes(args, mixed: str, fixed_data: str) -> tuple[dict, dict]:
    """(c) with two local worker processes of one torch thread each: (fixed job,
    mixed job), the mixed job's steady rate computed against that fixed cost."""
    kwargs = dict(beam_args=TWO_PROCESSES, model=BASE_MODEL, batch=args.batch, threads=1)
    fixed = run_child(child="pipeline", data=fixed_data, tag="mfixed", **kwargs)
    multi = run_child(child="pipeline", data=mixed, tag="multi", **kwargs)
    _steady(multi, fixed)
    return fixed, multi


def interleaved(args, mixed: str, fixed_data: str, common: dict) -> None:
    """The two ratio targets measured round by round, so that the CPU's drift
    (a shared VM's speed moves by +-10% within minutes) hits every contender
    alike; prints each round and the medians."""
    import statistics

    print(f"targets, interleaved ({args.repeats} rounds; steady = minus the same round's fixed cost)")
    rows = []
    for i in range(args.repeats):
        fwd = run_child(child="forward", images=args.images, tower="stock", **common)
        own = run_child(child="forward", images=args.images, **common)
        int8 = run_child(child="forward", images=args.images, backend="onnx-int8", **common)
        fixed = run_child(child="pipeline", data=fixed_data, tag="fixed", **common)
        inmem = run_child(child="pipeline", data=mixed, tag="inmem", **common)
        thread = run_child(child="pipeline", data=mixed, tag="thread", decode_overlap="true",
                           **common)
        _, multi = two_processes(args, mixed, fixed_data)
        _steady(inmem, fixed)
        _steady(thread, fixed)
        rows.append({"int8/fp32": int8["ips"] / own["ips"],
                     "int8/(a)": int8["ips"] / fwd["ips"],
                     "tower/stock forward": own["ips"] / fwd["ips"],
                     "(c) in-memory/(a)": inmem["steady_ips"] / fwd["ips"],
                     "(c) in-memory/(a')": inmem["steady_ips"] / own["ips"],
                     "(c) in-job/(a)": inmem["in_job_ips"] / fwd["ips"],
                     "model busy in (c)": inmem["model_busy"],
                     "(c) 2 processes/(a)": multi["steady_ips"] / fwd["ips"],
                     "(c) thread/(a)": thread["steady_ips"] / fwd["ips"],
                     "(c) turns/thread": inmem["steady_ips"] / thread["steady_ips"]})
        print(f"  round {i + 1}: (a) {fwd['ips']:.2f} img/s, (a') {own['ips']:.2f}, "
              f"onnx-int8 {int8['ips']:.2f}, "
              f"(c) mixed in-memory {inmem['steady_ips']:.2f} steady / {inmem['ips']:.2f} total"
              f" / {inmem['in_job_ips']:.2f} in-job, "
              f"background thread {thread['steady_ips']:.2f} / {thread['ips']:.2f}, "
              f"2 processes {multi['steady_ips']:.2f} / {multi['ips']:.2f}", flush=True)
    targets = {"int8/fp32": "target >= 2 (both the rewritten tower)",
               "int8/(a)": "(onnx-int8 against transformers' fp32 forward)",
               "tower/stock forward": "(a') clipdedup's tower / (a) transformers' forward",
               "(c) in-memory/(a)": "target >= 0.9",
               "(c) in-memory/(a')": "(against clipdedup's own tower: the pipeline's cost)",
               "(c) in-job/(a)": "(first to last forward pass: start-up and index pass excluded)",
               "model busy in (c)": "(share of that window in forward passes)",
               "(c) 2 processes/(a)": "target >= 0.9",
               "(c) thread/(a)": "(decode_overlap true on the CPU)",
               "(c) turns/thread": "(decoding in turns vs a background thread)"}
    for key, target in targets.items():
        values = [r[key] for r in rows]
        print(f"  {key:<22} median {statistics.median(values):.2f}  "
              f"(rounds: {', '.join(f'{v:.2f}' for v in values)})  {target}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=48, help="images per dataset")
    p.add_argument("--flat-images", type=int, default=40,
                   help="N of the memory-flatness check (runs N and 10N)")
    p.add_argument("--large-size", default="4000x3000", help="camera JPEG size WxH")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--skip", default="", help="comma list of: int8,modes,flat,small")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of the interleaved target measurement (medians; 0: skip)")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    large = tuple(int(v) for v in args.large_size.split("x"))
    os.makedirs(OUT, exist_ok=True)

    from tools.stand_in import write_stand_in
    for path, size in ((BASE_MODEL, "base"), (TINY_MODEL, "tiny")):
        if not os.path.exists(os.path.join(path, "modules.json")):
            write_stand_in(path, size)
    started = time.perf_counter()
    sets = ["large", "mixed"] + ([] if "small" in skip else ["small"])
    data = {s: build_dataset(os.path.join(OUT, f"data-{s}-{args.images}-{args.large_size}"), s,
                             args.images, large) for s in sets}
    def mib(folder: str) -> float:
        return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 2**20

    print(f"datasets built in {time.perf_counter() - started:.0f} s: " + ", ".join(
        f"{s} {args.images} images {mib(d):.0f} MiB" for s, d in data.items()))
    common = dict(model=BASE_MODEL, batch=args.batch, threads=args.threads)
    print(f"model: ViT-B/32 stand-in (random weights), CPU, {os.cpu_count()} cores, "
          f"batch {args.batch}, torch threads {args.threads or 'default'}")

    print("(a) raw forward on preprocessed tensors")
    fwd = run_child(child="forward", images=args.images, tower="stock", **common)
    _row("torch fp32, transformers' forward", fwd)
    own = run_child(child="forward", images=args.images, **common)
    _row("(a') torch fp32, clipdedup's tower", own,
         f"{own['ips'] / fwd['ips']:.2f}x transformers' ({own['ipc'] / fwd['ipc']:.2f})")
    ab = run_child(child="tower-ab", images=args.images, **common)
    print(f"  (a') against (a), batches in turns in one process: {ab['speedup']:.2f}x")
    if "int8" not in skip:
        for backend in ("torch-int8", "onnx-int8"):
            r = run_child(child="forward", images=args.images, backend=backend, **common)
            _row(f"{backend}, clipdedup's tower", r,
                 f"{r['ips'] / own['ips']:.2f}x fp32 tower ({r['ipc'] / own['ipc']:.2f})")

    print("(b) reference: SentenceTransformer.encode on opened PIL images")
    ref = {s: run_child(child="reference", data=d, **common) for s, d in data.items()}
    for s, r in ref.items():
        _row(s, r)

    from pipelines.config import Config
    print("(c) clipdedup embed stage, tar shards -> Parquet (DirectRunner, in-memory, "
          f"decode_ahead {Config().decode_ahead}, decoding in turns with the model)")
    fixed_data = build_dataset(os.path.join(OUT, "data-fixed-2"), "small", 2, large, shards=1)
    fixed = run_child(child="pipeline", data=fixed_data, tag="fixed", **common)
    print(f"  fixed cost of a job (2 small images): {fixed['seconds']:.1f} s, "
          f"{fixed['cpu_seconds']:.1f} cpu-s")
    pipe = {}
    for s, d in data.items():
        r = pipe[s] = run_child(child="pipeline", data=d, tag="inmem", **common)
        _steady(r, fixed)
        _steady_row(s + " (total)", r)

    int8_pipe = None
    if "int8" not in skip:
        print("(c) mixed with backend onnx-int8 (the export cached by (a) is reused)")
        int8_fixed = run_child(child="pipeline", data=fixed_data, tag="int8fixed",
                               backend="onnx-int8", **common)
        int8_pipe = run_child(child="pipeline", data=data["mixed"], tag="int8",
                              backend="onnx-int8", **common)
        _steady(int8_pipe, int8_fixed)
        _steady_row("mixed (total)", int8_pipe, f" (fixed {int8_fixed['seconds']:.1f} s)")

    schedules, multi = {}, None
    if "modes" not in skip:
        for name, kwargs in (("background thread", {"decode_overlap": "true"}),
                             ("inline", {"decode_ahead": 0})):
            print(f"(c) the same, decoding {name} ({', '.join(f'{k} {v}' for k, v in kwargs.items())})")
            for s in ("large", "mixed"):
                r = schedules[name, s] = run_child(child="pipeline", data=data[s],
                                                   tag=name.split()[0], **kwargs, **common)
                _steady(r, fixed)
                _steady_row(s + " (total)", r)

        print(f"(c) mixed, {TWO_PROCESSES}, 1 torch thread per worker")
        mfixed, multi = two_processes(args, data["mixed"], fixed_data)
        _steady_row("mixed (total)", multi, f" (fixed {mfixed['seconds']:.1f} s)")

    flat = None
    if "flat" not in skip:
        n = args.flat_images
        print(f"memory flatness: (c) mixed with the tiny stand-in, {n} vs {10 * n} images")
        flat = []
        for count in (n, 10 * n):
            d = build_dataset(os.path.join(OUT, f"data-flat-{count}-{args.large_size}"), "mixed",
                              count, large, distinct=n)
            flat.append(run_child(child="pipeline", data=d, tag="flat", model=TINY_MODEL,
                                  batch=args.batch, threads=args.threads))
            _row(f"mixed {count} images", flat[-1])

    print("ratios (wall img/s; in brackets img per CPU-second, steadier on a shared machine)")

    def ratio(label, c, other, target=""):
        """(c) steady against a measurement without fixed costs."""
        print(f"  {label:<26} {c['steady_ips'] / other['ips']:5.2f}  "
              f"({c['steady_ipc'] / other['ipc']:.2f})  total {c['ips'] / other['ips']:.2f}"
              f"  {target}")

    ratio("(c)/(a) mixed, steady", pipe["mixed"], fwd, "target >= 0.9")
    ratio("(c)/(a') mixed, steady", pipe["mixed"], own, "(clipdedup's own tower)")
    print(f"  (c)/(a) mixed, in-job      {pipe['mixed']['in_job_ips'] / fwd['ips']:5.2f}  "
          f"(a') {pipe['mixed']['in_job_ips'] / own['ips']:.2f}  "
          f"model busy {pipe['mixed']['model_busy']:.0%} of the window")
    ratio("(c)/(b) large, steady", pipe["large"], ref["large"], "target >= 1.5")
    for s in sets:
        if s != "large":
            ratio(f"(c)/(b) {s}, steady", pipe[s], ref[s])
    if int8_pipe:
        _steady_ratio("onnx-int8/torch, (c) mixed", int8_pipe, pipe["mixed"])
    for (name, s), r in schedules.items():
        _steady_ratio(f"turns/{name}, {s}", pipe[s], r)
    if multi:
        _steady_ratio("multi_processing/in-memory, mixed", multi, pipe["mixed"], total=False)
    if flat:
        print(f"  peak memory 10N/N: {flat[1]['peak_mib'] / flat[0]['peak_mib']:.2f}   "
              "target <= 1.2")
    if args.repeats:
        interleaved(args, data["mixed"], fixed_data, common)
    print(f"  machine load average (1 min) at the end: {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(sys.argv[1:])
    else:
        main()
