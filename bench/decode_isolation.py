"""Overhead of `decode_isolation: subprocess` against in-worker decoding.

Decodes the same generated JPEGs through `DecodeImages` in both modes, in
one process, alternating the modes over several rounds, and prints images/s
and the ratio. Run from the repository root:

    PYTHONPATH=$PWD .venv/bin/python bench/decode_isolation.py [--images 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import records as R
from transforms.decode import DecodeImages


def make_records(n: int, width: int, height: int) -> list[R.ImageRecord]:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        records.append(R.new_record("mem://bench", f"{i}", f"{i}", buf.getvalue()))
    return records


def run_once(records: list[R.ImageRecord], isolation: str) -> float:
    """Seconds to decode `records` in a fresh pipeline (DirectRunner, one worker)."""
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    started = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        decoded = (p | "Records" >> beam.Create(records, reshuffle=False)
                   | "DecodeImages" >> DecodeImages(224, isolation=isolation, timeout_s=30))
        _ = decoded.images | "Count" >> beam.combiners.Count.Globally()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    records = make_records(args.images, args.width, args.height)
    mb = sum(r.file_size for r in records) / 1e6
    print(f"{args.images} JPEGs of {args.width}x{args.height} ({mb:.1f} MB), "
          f"{args.rounds} rounds, modes alternated")
    times: dict[str, list[float]] = {"none": [], "subprocess": []}
    run_once(records[:20], "none")  # warm-up: imports, first pipeline
    for _ in range(args.rounds):
        for mode in times:
            times[mode].append(run_once(records, mode))
    for mode, ts in times.items():
        med = statistics.median(ts)
        print(f"  {mode:<10} median {med:6.2f} s  {args.images / med:7.1f} images/s  "
              f"(runs: {', '.join(f'{t:.2f}' for t in ts)})")
    ratio = statistics.median(times["subprocess"]) / statistics.median(times["none"])
    per_image_ms = (statistics.median(times["subprocess"]) - statistics.median(times["none"])
                    ) / args.images * 1000
    print(f"subprocess / none time ratio: {ratio:.2f}x  "
          f"(+{per_image_ms:.2f} ms per image)")


if __name__ == "__main__":
    main()
