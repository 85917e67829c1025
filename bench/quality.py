"""Precision / recall of every duplicate signal on one labelled set, side by side.

The labelled set is `tools/labelled_set.py`'s (built into --data unless
--labels names an existing labels CSV). Every image is decoded once by the
pipeline's own decode (`decode_image_and_hash`: EXIF applied, transparency
on white, the model's 224x224 crop, and the stage's pHash of the whole
picture); each method then scores every labelled pair:

- peers, re-implemented from their published code (the packages are not
  installed here): imagededup's PHash at its default Hamming <= 10 (the file
  opened by Pillow as-is, RGBA -> RGB by dropping alpha, no EXIF), and
  cleanvision's near-duplicate rule, equal imagehash pHashes (`convert("L")`,
  the median taken with the DC term, `>`);
- the phash signal of the decode stage at `phash_max_distance` (the config
  default) and at 10;
- the embedders of `--model`: `phash`, `color-histogram`, `hog`, the CNNs
  when torchvision and their weights are here, and the random-weight CLIP
  stand-in (`tools/stand_in.py`): its row is MEANINGLESS, a check that the
  path runs, not a measurement of CLIP. Embedders are scored by cosine at
  the config's near_duplicate_threshold.

Each row also gives the best-F1 threshold found by sweeping (an oracle that
reads the labels: what calibrating on this set would give) and recall split
into duplicates and near-duplicates. Results: docs/quality.md.

    python bench/quality.py                     # the whole set (~730 images)
    python bench/quality.py --max-sources 3     # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from pipelines.config import Config  # noqa: E402
from tools import labelled_set, quality_metrics  # noqa: E402
from transforms.phash import _DCT, RESIZED, bits_to_int64, hamming, hash_bits  # noqa: E402

PEER_HAMMING = 10  # imagededup's default max_distance_threshold


def imagededup_phash(path: str) -> int:
    """imagededup's PHash of a file: RGB by dropping alpha, 32x32 Lanczos, then L; no EXIF."""
    with Image.open(path) as img:
        if img.mode != "RGB":
            img = img.convert("RGBA").convert("RGB")
        small = img.resize((RESIZED, RESIZED), Image.Resampling.LANCZOS).convert("L")
    return bits_to_int64(hash_bits(np.asarray(small, np.float64)))


def imagehash_phash(path: str) -> int:
    """imagehash.phash (what cleanvision compares): L, 32x32 Lanczos, median with DC, `>`."""
    with Image.open(path) as img:
        small = img.convert("L").resize((RESIZED, RESIZED), Image.Resampling.LANCZOS)
    low = _DCT @ np.asarray(small, np.float64) @ _DCT.T
    return bits_to_int64(low > np.median(low))


def _decode_all(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from transforms.decode import decode_image_and_hash

    pixels, hashes = [], []
    for path in paths:
        with open(path, "rb") as f:
            p, _, _, h = decode_image_and_hash(f.read(), 224)
        pixels.append(p)
        hashes.append(h)
    return np.stack(pixels), np.asarray(hashes, np.int64)


def _embed(handler, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    model = handler.load_model()
    return np.concatenate([model.encode_pixels(pixels[s:s + batch])
                           for s in range(0, len(pixels), batch)])


def _row(method: str, rule: str, scores, truth, labels, threshold, higher, note="", kinds=None):
    at = quality_metrics.precision_recall(scores, truth, threshold, higher)
    best = quality_metrics.best_f1(scores, truth, higher)
    predicted = (np.asarray(scores) >= threshold) if higher else (np.asarray(scores) <= threshold)
    split = {label: float(predicted[labels == label].mean()) if (labels == label).any() else None
             for label in quality_metrics.MATCH_LABELS}
    # share of each kind of pair called a match: recall for variants, false positives for negatives
    by_kind = ({k: float(predicted[kinds == k].mean()) for k in sorted(set(kinds))}
               if kinds is not None else {})
    return {"method": method, "rule": rule, **{k: at[k] for k in ("precision", "recall", "f1",
                                                                   "tp", "fp", "fn")},
            "recall_duplicate": split["duplicate"], "recall_near_duplicate": split["near_duplicate"],
            "best_f1_threshold": best.get("threshold"), "best_precision": best["precision"],
            "best_recall": best["recall"], "best_f1": best["f1"], "note": note,
            "called_match_by_kind": by_kind}


def measure(labels_csv: str) -> dict:
    from tools.stand_in import write_stand_in
    from transforms.embed import descriptors
    from transforms.embed.images import SentenceTransformerImageHandler
    from transforms.embed.model_files import ModelNotFoundError

    rows = quality_metrics.read_labels(labels_csv)
    paths = sorted({p for a, b, _ in rows for p in (a, b)})
    index = {p: k for k, p in enumerate(paths)}
    ia = np.asarray([index[a] for a, _, _ in rows])
    ib = np.asarray([index[b] for _, b, _ in rows])
    labels = np.asarray([label for _, _, label in rows])
    truth = quality_metrics.is_match(labels)
    # the kind of each pair in the generated set: <family>/<variant of b>
    kinds = np.asarray([("icon" if "/icon-" in b else "photo") + "/"
                        + labelled_set.variant_of(b) for _, b, _ in rows])
    config = Config()
    started = time.monotonic()
    pixels, ours = _decode_all(paths)
    timings = {"decode_and_hash_s": round(time.monotonic() - started, 2)}
    table = []

    def hashes_row(method, rule, hashes, threshold, note=""):
        d = hamming(hashes[ia], hashes[ib])
        table.append(_row(method, rule, d, truth, labels, threshold, False, note, kinds))

    hashes_row("imagededup-style pHash", f"Hamming <= {PEER_HAMMING}",
               np.asarray([imagededup_phash(p) for p in paths], np.int64), PEER_HAMMING,
               "file as stored: no EXIF, alpha dropped")
    hashes_row("cleanvision-style pHash (imagehash)", "equal hashes",
               np.asarray([imagehash_phash(p) for p in paths], np.int64), 0,
               "file as stored: no EXIF, alpha dropped")
    hashes_row("clipdedup phash signal", f"Hamming <= {config.phash_max_distance} (default)",
               ours, config.phash_max_distance, "decode stage: EXIF, on white, whole picture")
    hashes_row("clipdedup phash signal", f"Hamming <= {PEER_HAMMING}", ours, PEER_HAMMING,
               "decode stage: EXIF, on white, whole picture")
    near = config.near_duplicate_threshold

    def embed_row(method, handler, note=""):
        started = time.monotonic()
        vectors = _embed(handler, pixels)
        timings[f"{method}_s"] = round(time.monotonic() - started, 2)
        cosine = np.einsum("ij,ij->i", vectors[ia], vectors[ib])
        table.append(_row(method, f"cosine >= {near}", cosine, truth, labels, near, True, note,
                          kinds))

    for name in (descriptors.PHASH, descriptors.COLOR_HISTOGRAM, descriptors.HOG):
        embed_row(f"--model {name}", descriptors.DescriptorHandler(name))
    skipped = {}
    for name in descriptors.CNNS:
        try:
            descriptors.check_available(name)
        except ModelNotFoundError as exc:
            skipped[name] = str(exc)
            continue
        embed_row(f"--model {name}", descriptors.DescriptorHandler(name))
    with tempfile.TemporaryDirectory() as folder:
        stand_in = write_stand_in(os.path.join(folder, "clip-tiny"), "tiny")
        embed_row("CLIP stand-in (random weights)", SentenceTransformerImageHandler(stand_in),
                  "MEANINGLESS: random weights, not CLIP")
    return {"labels": labels_csv, "pairs": len(rows), "images": len(paths),
            "by_label": {label: int((labels == label).sum()) for label in quality_metrics.LABELS},
            "rows": table, "skipped": skipped, "timings": timings}


def markdown(result: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    lines = ["| method | rule | precision | recall | F1 | recall dup. | recall near | "
             "best-F1 threshold (P / R / F1) | note |", "|---" * 9 + "|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['rule']} | {pct(r['precision'])} | {pct(r['recall'])} "
                     f"| {pct(r['f1'])} | {pct(r['recall_duplicate'])} | "
                     f"{pct(r['recall_near_duplicate'])} | {r['best_f1_threshold']:.4g} "
                     f"({pct(r['best_precision'])} / {pct(r['best_recall'])} / "
                     f"{pct(r['best_f1'])}) | {r['note']} |")
    for name, why in result["skipped"].items():
        lines.append(f"| --model {name} | skipped | | | | | | | {why} |")
    kinds = sorted({k for r in result["rows"] for k in r["called_match_by_kind"]})
    if kinds:
        lines += ["", "Share of pairs called a match, by kind (`*/original`: the hard negatives, "
                  "so lower is better there; every other kind is a positive):", "",
                  "| method | rule | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 2) + "|"]
        for r in result["rows"]:
            lines.append(f"| {r['method']} | {r['rule']} | "
                         + " | ".join(pct(r["called_match_by_kind"].get(k)) for k in kinds) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--labels", help="an existing labels CSV (default: build the set into --data)")
    p.add_argument("--data", default=os.path.join(ROOT, "bench-output", "labelled"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-sources", type=int, default=0, help="per family; 0 = all")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    labels = args.labels
    if not labels:
        built = labelled_set.build(args.data, args.seed, max_sources=args.max_sources)
        print(f"labelled set in {args.data}: {built}")
        labels = os.path.join(args.data, "labels.csv")
    result = measure(labels)
    print(f"{result['pairs']} labelled pairs {result['by_label']} over {result['images']} images; "
          f"timings {result['timings']}")
    print(markdown(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
