"""`clipdedup demo` (and `make demo`): a sample dataset, the whole job, a summary,
and last the path of the run's `report.html`.

The dataset is built from real photographs that ship inside scikit-image,
plus byte copies and edited versions (resized, re-encoded, brightened,
cropped, flipped) spread over the three input kinds: a WebDataset tar shard,
a folder of image files and a Hugging Face-style Parquet file. Two broken
files show the errors table at work. The exact-duplicate table is therefore
meaningful even offline.

The model is the real `clip-ViT-B-32` when it can be loaded (cached, or the
hub is reachable); otherwise a ViT-B/32 stand-in with random weights, which
the console and `summary.json` (`model_is_stand_in: true`) say loudly.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageEnhance, ImageOps

from pipelines.config import Config

log = logging.getLogger("clipdedup")

REAL_MODEL = "clip-ViT-B-32"
SAMPLES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
           "hubble_deep_field.jpg", "retina.jpg", "brick.png",
           "grass.png", "gravel.png", "camera.png", "coins.png", "moon.png", "horse.png",
           "page.png", "color.png", "logo.png", "cell.png", "ihc.png")


def _sample_images() -> dict[str, Image.Image]:
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - installed by `make install`
        raise RuntimeError("the demo needs scikit-image: run `make install`") from exc
    folder = os.path.dirname(skimage.data.__file__)
    images = {}
    for name in SAMPLES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            images[os.path.splitext(name)[0]] = Image.open(path).convert("RGB")
    if len(images) < 8:
        raise RuntimeError(f"scikit-image sample images not found in {folder}")
    return images


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _edits(img: Image.Image) -> dict[str, bytes]:
    w, h = img.size
    return {
        "resized": _jpeg(img.resize((w // 2, h // 2), Image.Resampling.LANCZOS)),
        "requality": _jpeg(img, quality=40),
        "brighter": _jpeg(ImageEnhance.Brightness(img).enhance(1.25)),
        "cropped": _jpeg(img.crop((w // 12, h // 12, w - w // 12, h - h // 12))),
        "flipped": _jpeg(ImageOps.mirror(img)),
    }


def build_demo_dataset(folder: str) -> list[str]:
    """Writes the sample dataset below `folder`; returns the input globs."""
    images = _sample_images()
    names = sorted(images)
    originals = {n: _jpeg(images[n]) for n in names}
    os.makedirs(os.path.join(folder, "shards"), exist_ok=True)
    os.makedirs(os.path.join(folder, "files"), exist_ok=True)
    os.makedirs(os.path.join(folder, "parquet"), exist_ok=True)

    # Shard: every original, as img2dataset writes them (image + json sidecar).
    with tarfile.open(os.path.join(folder, "shards", "00000.tar"), "w") as tar:
        for i, name in enumerate(names):
            for suffix, data in (("jpg", originals[name]),
                                 ("json", json.dumps({"caption": name}).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    # Folder: byte copies of the first originals, edited versions, two broken files.
    files = os.path.join(folder, "files")
    for name in names[:4]:
        with open(os.path.join(files, f"{name}-copy.jpg"), "wb") as f:
            f.write(originals[name])
    for name in names[:6]:
        for edit, data in _edits(images[name]).items():
            with open(os.path.join(files, f"{name}-{edit}.jpg"), "wb") as f:
                f.write(data)
    with open(os.path.join(files, "broken-truncated.jpg"), "wb") as f:
        f.write(originals[names[0]][: len(originals[names[0]]) // 3])
    with open(os.path.join(files, "broken-not-an-image.jpg"), "wb") as f:
        f.write(b"<html><body>404 not found</body></html>")

    # Parquet in the Hugging Face datasets layout: PNG versions and two byte copies.
    rows = [{"bytes": _png(images[n].resize((256, 256))), "path": f"{n}-256.png"}
            for n in names[6:12]]
    rows += [{"bytes": originals[n], "path": f"{n}.jpg"} for n in names[4:6]]
    pq.write_table(pa.table({"image": rows}), os.path.join(folder, "parquet", "part-0.parquet"))
    return [os.path.join(folder, "shards", "*.tar"), files,
            os.path.join(folder, "parquet", "*.parquet")]


def real_model_available(name: str = REAL_MODEL, timeout: float = 3.0) -> bool:
    """True if the real model is in the local HF cache or the hub answers."""
    try:
        from huggingface_hub import snapshot_download
        snapshot_download(f"sentence-transformers/{name}", local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - not cached
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def run_demo(output: str, data: str, beam_args: list[str]) -> int:
    from pipelines.jobs import execute
    from pipelines.run_folder import read_table
    from pipelines.summary_text import print_summary
    from tools.stand_in import write_stand_in

    inputs = build_demo_dataset(data)
    if real_model_available():
        model = REAL_MODEL
    else:
        model = os.path.join(output, "models", "clip-ViT-B-32-stand-in")
        if not os.path.isdir(model):
            write_stand_in(model, "base")
        log.warning("=" * 72)
        log.warning("clip-ViT-B-32 cannot be loaded here (no cache, hub unreachable).")
        log.warning("Falling back to a STAND-IN with the ViT-B/32 architecture and RANDOM")
        log.warning("weights: exact copies are real, similarity scores are not.")
        log.warning("=" * 72)
    config = Config().replace(inputs=inputs, output=os.path.join(output, "runs"), model=model,
                            batch_size=16)
    summary = execute(config, beam_args)
    print()
    print_summary({k: v for k, v in summary.items() if k != "report"})  # its path ends the demo
    run = summary["run_folder"]
    exact = read_table(os.path.join(run, "exact_duplicates.parquet")).num_rows
    print(f"  exact byte copies found: {exact} (the demo planted "
          f"{4 + 2} copies of shard images)")
    print(f"  tables: {sorted(os.listdir(run))}")
    print(f"  try: python -c \"import pandas as pd; "
          f"print(pd.read_parquet('{run}/near_duplicates.parquet'))\"")
    report = summary.get("report", {})
    if report.get("written"):
        print(f"  report: {os.path.abspath(os.path.join(run, report['path']))}")
    else:  # the run logged why; summary.json has it too
        print(f"  report NOT written ({report.get('error', 'report: false')}); "
              f"`clipdedup report {run}` writes it")
    return 0
