"""`clipdedup check-backend`: is a faster backend safe on *your* model and images?

    clipdedup check-backend --model clip-ViT-B-32 --images 'data/shards/*.tar' \
        --backend onnx-int8 [--limit 500] [--config configs/local.yaml]

Int8 quantisation error depends on the real weights and on the images, so it
cannot be settled once for everybody. This command embeds a sample of the
user's images (tar shards, Parquet, image files or folders: the same readers
as the pipeline, decode included) with fp32 and with the candidate backend,
and reports:

- cosine agreement per image between the two vectors (mean, min);
- pairs of the sample whose class (duplicate / near-duplicate / neither, at
  the configured thresholds) differs between the two.

The backend is ACCEPTED when mean agreement >= 0.999, min agreement >= 0.99
and at most 1% of the fp32 pairs (never fewer than 0) change class; the
reasons for these numbers are in docs/throughput.md. Exit status 0 when
accepted, 1 when rejected, so a deployment script can gate on it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np

from transforms.records import DEFAULT_MAX_IMAGE_PIXELS

log = logging.getLogger("clipdedup")

MIN_MEAN_COSINE = 0.999
MIN_MIN_COSINE = 0.99
MAX_CHANGED_PAIR_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How a candidate backend's vectors compare with fp32 on one sample."""

    images: int
    mean_cosine: float
    min_cosine: float
    fp32_duplicates: int
    fp32_near_duplicates: int
    changed_pairs: int  # pairs whose class differs (dup / near / neither)
    accepted: bool
    reasons: tuple[str, ...]


def _pair_classes(vectors: np.ndarray, duplicate: float, near: float) -> np.ndarray:
    """Class of every pair i < j: 2 duplicate, 1 near-duplicate, 0 neither."""
    scores = vectors @ vectors.T
    upper = scores[np.triu_indices(len(vectors), k=1)]
    return np.where(upper >= duplicate, 2, np.where(upper >= near, 1, 0)).astype(np.int8)


def compare(reference: np.ndarray, candidate: np.ndarray, duplicate: float, near: float,
            min_mean: float = MIN_MEAN_COSINE, min_min: float = MIN_MIN_COSINE,
            max_changed_fraction: float = MAX_CHANGED_PAIR_FRACTION) -> Agreement:
    """Agreement of `candidate` with `reference` (unit vectors, same rows).

    Pairs are all i < j of the sample (n^2/2 scores: keep n in the thousands).
    """
    if reference.shape != candidate.shape or not len(reference):
        raise ValueError(f"need two non-empty matrices of one shape, got "
                         f"{reference.shape} and {candidate.shape}")
    cosines = np.sum(reference * candidate, axis=1, dtype=np.float64)
    ref_classes = _pair_classes(reference, duplicate, near)
    changed = int(np.count_nonzero(ref_classes != _pair_classes(candidate, duplicate, near)))
    dups, nears = int(np.count_nonzero(ref_classes == 2)), int(np.count_nonzero(ref_classes == 1))
    allowed_changes = int(max_changed_fraction * (dups + nears))
    reasons = []
    if cosines.mean() < min_mean:
        reasons.append(f"mean cosine {cosines.mean():.5f} < {min_mean}")
    if cosines.min() < min_min:
        reasons.append(f"min cosine {cosines.min():.5f} < {min_min}")
    if changed > allowed_changes:
        reasons.append(f"{changed} pairs change class > {allowed_changes} allowed "
                       f"({max_changed_fraction:.0%} of {dups + nears} fp32 pairs)")
    return Agreement(len(reference), float(cosines.mean()), float(cosines.min()), dups, nears,
                     changed, not reasons, tuple(reasons))


def load_sample(patterns: list[str], limit: int, size: int = 224,
                max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[list[str], np.ndarray]:
    """Up to `limit` decoded images (ids, uint8 [n, S, S, 3]) from the inputs,
    read and decoded exactly as the pipeline does; undecodable ones are skipped
    and counted in the log."""
    from apache_beam.io.filesystems import FileSystems

    from transforms.decode import DecodeError, decode_image
    from transforms.read import formats
    from transforms.read.files import expand_input

    ids, pixels, skipped = [], [], 0
    for pattern in patterns:
        for meta in FileSystems.match([expand_input(pattern)])[0].metadata_list:
            kind = formats.input_kind(meta.path)
            if kind is None:
                continue
            with FileSystems.open(meta.path) as f:
                reader = (formats.read_tar_shard(meta.path, f) if kind == formats.TAR else
                          formats.read_parquet_file(meta.path, f, "image", None)
                          if kind == formats.PARQUET else formats.read_image_file(meta.path, f))
                for record in reader:
                    if len(ids) >= limit:
                        break
                    if isinstance(record, dict):
                        skipped += 1
                        continue
                    try:
                        array, _, _ = decode_image(record.data, size, max_pixels)
                    except DecodeError:
                        skipped += 1
                        continue
                    ids.append(record.record_id)
                    pixels.append(array)
            if len(ids) >= limit:
                break
    if skipped:
        log.info("check-backend: skipped %d unreadable records", skipped)
    if not ids:
        raise ValueError(f"no decodable images found in {patterns}")
    return ids, np.stack(pixels)


def embed_with(model: str, backend: str, pixels: np.ndarray, batch_size: int = 16
               ) -> np.ndarray:
    """Vectors of `pixels` from `model` run with `backend` on CPU."""
    from sentence_transformers import SentenceTransformer

    from transforms.embed import backends

    encoder = backends.load_encoder(SentenceTransformer(model, device="cpu"), backend, "cpu")
    if encoder is None:
        raise ValueError(f"{model} is not a plain CLIP model; only backend torch applies")
    return np.concatenate([encoder(pixels[i:i + batch_size])
                           for i in range(0, len(pixels), batch_size)])


def check_backend(model: str, patterns: list[str], backend: str, duplicate: float,
                  near: float, limit: int = 500, **thresholds) -> Agreement:
    """Embeds a sample with fp32 and `backend` and compares them."""
    _, pixels = load_sample(patterns, limit)
    reference = embed_with(model, "torch", pixels)
    candidate = embed_with(model, backend, pixels)
    return compare(reference, candidate, duplicate, near, **thresholds)


def report(agreement: Agreement, backend: str, model: str, is_stand_in: bool) -> str:
    a = agreement
    lines = [f"backend {backend} vs fp32 on {a.images} images of {model}",
             f"  cosine agreement: mean {a.mean_cosine:.6f}  min {a.min_cosine:.6f}",
             (f"  fp32 pairs: {a.fp32_duplicates} duplicates, {a.fp32_near_duplicates} "
              f"near-duplicates; pairs that change class: {a.changed_pairs}"),
             "  ACCEPTED" if a.accepted else "  REJECTED: " + "; ".join(a.reasons)]
    if is_stand_in:
        lines.append("  MODEL IS A STAND-IN (random weights): these numbers say nothing "
                     "about the real model")
    return "\n".join(lines)


def run(args) -> int:
    """The `check-backend` subcommand; returns the exit status."""
    from pipelines.config import load_config
    from transforms.embed.model_files import is_stand_in

    config = load_config(args.config).replace(
        duplicate_threshold=args.duplicate_threshold,
        near_duplicate_threshold=args.near_duplicate_threshold)
    agreement = check_backend(args.model, args.images, args.backend,
                              config.duplicate_threshold, config.near_duplicate_threshold,
                              args.limit, min_mean=args.min_mean_cosine,
                              min_min=args.min_min_cosine,
                              max_changed_fraction=args.max_changed_pair_fraction)
    stand_in = os.path.isdir(args.model) and is_stand_in(args.model)
    print(report(agreement, args.backend, args.model, stand_in))
    if args.json:
        print(json.dumps(dataclasses.asdict(agreement)))
    return 0 if agreement.accepted else 1


def add_parser(sub) -> None:
    p = sub.add_parser("check-backend",
                       help="compare a faster backend with fp32 on your model and images")
    p.add_argument("--model", required=True, help="sentence-transformers model: hub name or folder")
    p.add_argument("--images", required=True, action="append",
                   help="glob or directory of tar shards, Parquet or image files; repeatable")
    p.add_argument("--backend", default="onnx-int8", help="backend to check (default onnx-int8)")
    p.add_argument("--limit", type=int, default=500, help="images in the sample")
    p.add_argument("--config", help="YAML config (thresholds)")
    p.add_argument("--duplicate-threshold", type=float)
    p.add_argument("--near-duplicate-threshold", type=float)
    p.add_argument("--min-mean-cosine", type=float, default=MIN_MEAN_COSINE)
    p.add_argument("--min-min-cosine", type=float, default=MIN_MIN_COSINE)
    p.add_argument("--max-changed-pair-fraction", type=float, default=MAX_CHANGED_PAIR_FRACTION)
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
