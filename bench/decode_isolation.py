"""Overhead of `decode_isolation: subprocess` against in-worker decoding.

Decodes the same generated JPEGs through `DecodeImages` in both modes, in
one process, alternating the modes over several rounds, and prints images/s
and the ratio. Run from the repository root:

    PYTHONPATH=$PWD .venv/bin/python bench/decode_isolation.py [--images 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import records as R
from transforms.decode import DecodeImages, decode_image

_POOL_SIZE = 16  # distinct JPEGs, cycled; each record still gets its own id


@functools.cache
def _jpeg(i: int, width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image

    small = np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_record(i: int, width: int = 640, height: int = 480) -> R.ImageRecord:
    """Record `i`: one of a few cached JPEGs, so building inputs costs ~nothing."""
    return R.new_record("mem://bench", str(i), str(i), _jpeg(i % _POOL_SIZE, width, height))


def run_once(n: int, width: int, height: int, isolation: str) -> float:
    """Seconds to decode `n` records in a fresh pipeline (DirectRunner, one worker).

    Records are made inside the pipeline from their index (not pickled into the
    graph), so the time is decoding plus Beam's per-element costs.
    """
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    started = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        decoded = (p | "Indexes" >> beam.Create(list(range(n)), reshuffle=False)
                   | "MakeRecords" >> beam.Map(make_record, width, height)
                   | "DecodeImages" >> DecodeImages(224, isolation=isolation, timeout_s=30))
        _ = decoded.images | "Count" >> beam.combiners.Count.Globally()
    return time.perf_counter() - started


def run_direct(n: int, width: int, height: int) -> float:
    """Seconds for `decode_image` on the same bytes in a plain loop (no Beam)."""
    data = [make_record(i, width, height).data for i in range(n)]
    started = time.perf_counter()
    for blob in data:
        decode_image(blob, 224)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    n, w, h = args.images, args.width, args.height
    print(f"{n} JPEGs of {w}x{h}, {args.rounds} rounds, modes alternated, one worker")
    run_once(20, w, h, "none")  # warm-up: imports, first pipeline, JPEG cache
    times: dict[str, list[float]] = {"direct loop (no Beam)": [], "none": [], "subprocess": []}
    for _ in range(args.rounds):
        times["direct loop (no Beam)"].append(run_direct(n, w, h))
        times["none"].append(run_once(n, w, h, "none"))
        times["subprocess"].append(run_once(n, w, h, "subprocess"))
    med = {mode: statistics.median(ts) for mode, ts in times.items()}
    for mode, ts in times.items():
        print(f"  {mode:<22} median {med[mode]:6.2f} s  {n / med[mode]:7.1f} images/s  "
              f"(runs: {', '.join(f'{t:.2f}' for t in ts)})")
    print(f"subprocess / none time ratio: {med['subprocess'] / med['none']:.2f}x  "
          f"(+{(med['subprocess'] - med['none']) / n * 1000:.2f} ms per image)")


if __name__ == "__main__":
    main()
