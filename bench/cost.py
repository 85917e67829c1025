"""Per-image CPU cost of the two heavy steps, for the cost model in docs/scaling.md.

    PYTHONPATH=$PWD .venv/bin/python bench/cost.py [--model DIR] [--batches 4]

Measures, on this machine's CPU, in one run:
- decode: `transforms.decode.decode_image` on a 640x480 JPEG (the typical
  img2dataset size before resizing) -> 224x224 pixels;
- embed: the project's `SentenceTransformerImageHandler.run_inference` on a
  batch of 32 decoded images (preprocessing, ViT-B/32 forward,
  normalisation), with torch limited to 1 and to 2 threads;
- exact mining: one 4096 x 4096 tile of scores over 512-d vectors with numpy's
  BLAS limited to 1 thread (the inner step of `transforms/mine/exact.py`),
  as GFLOP/s per core and seconds per 10^12 scored pairs.

The model is the `base` stand-in (ViT-B/32 architecture, random weights):
the forward pass costs the same FLOPs as the real clip-ViT-B-32, which is not
reachable from here. Its vectors are meaningless; only its speed is used.
Prints milliseconds per image and images per second per core.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile

import numpy as np
from PIL import Image

from bench.children import median_seconds
from tools.stand_in import write_stand_in
from transforms.decode import decode_image
from transforms.embed.images import SentenceTransformerImageHandler

BATCH = 32


def _photo_like(seed: int) -> bytes:
    """A 640x480 JPEG with smooth structure and noise (decodes like a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-12, 13, (480, 640, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a sentence-transformers model folder "
                        "(default: write the base stand-in to a temp folder)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per setting")
    args = parser.parse_args()
    import torch

    model_dir = args.model or write_stand_in(
        os.path.join(tempfile.mkdtemp(prefix="clipdedup-cost-"), "clip-base"), "base")
    blobs = [_photo_like(i) for i in range(BATCH)]
    decode_s = median_seconds(lambda: [decode_image(b) for b in blobs], args.batches) / BATCH
    pixels = [decode_image(b)[0] for b in blobs]

    handler = SentenceTransformerImageHandler(model_dir, "cpu", BATCH)
    model = handler.load_model()
    print(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f} before measuring); "
          f"torch {torch.__version__}; model: {model_dir} (stand-in, ViT-B/32 random weights)")
    print(f"decode 640x480 JPEG -> 224x224: {decode_s * 1e3:.1f} ms/image "
          f"({1 / decode_s:.0f} images/s per core)")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        seconds = median_seconds(lambda: handler.run_inference(pixels, model),
                                  args.batches) / BATCH
        print(f"embed batch {BATCH}, torch threads {threads}: {seconds * 1e3:.1f} ms/image "
              f"({1 / seconds:.1f} images/s; {1 / seconds / threads:.1f} images/s per core)")
    _tile_cost(args.batches)


def _tile_cost(repeats: int, tile: int = 4096, dim: int = 512) -> None:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((tile, dim), dtype=np.float32)
    b = rng.standard_normal((tile, dim), dtype=np.float32)
    out = np.empty((tile, tile), np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        seconds = median_seconds(lambda: np.matmul(a, b.T, out=out), repeats)
    gflops = 2 * tile * tile * dim / seconds / 1e9
    print(f"exact mining tile {tile}x{tile}, d={dim}, 1 BLAS thread: {gflops:.1f} GFLOP/s per "
          f"core; {1e12 / (tile * tile) * seconds / 3600:.1f} core-hours per 10^12 pairs")


if __name__ == "__main__":
    main()
