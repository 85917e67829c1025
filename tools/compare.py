"""`clipdedup compare`: two images side by side, by the model and pixel by pixel.

    clipdedup compare a.jpg b.jpg [--run out/<run_id> | --model clip-ViT-B-32] \
        [--out diff.png] [--json]

Reports:

- the model's cosine score of the pair, when `--run` (embedded exactly as that
  run embedded its images, see `tools/query.py`) or `--model` is given;
- SSIM (scikit-image `structural_similarity`) of the aligned greyscale pair.
  SSIM needs two images of one size: when the sizes differ both are resized
  to the smaller width and the smaller height (an aspect ratio that differs
  is stretched), and the pair is scaled down so its longer side is at most
  `--max-side` pixels (work and memory bounded whatever the files);
- the regions that differ: SSIM's per-pixel map thresholded with Otsu's
  method, connected regions (`skimage.measure.label` / `regionprops`) of at
  least `--min-area` pixels, each as a box `[x0, y0, x1, y1)` in the aligned
  pair's pixels. Otsu always splits a map in two, even one that is only
  compression noise, so a pixel also has to be below `--region-ssim` (local
  SSIM) to count; identical images have no regions;
- with `--out`, a PNG: both aligned images with the boxes drawn, then the
  difference map (darker = more different).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

DEFAULT_MAX_SIDE = 1024
DEFAULT_MIN_AREA = 100  # pixels of the aligned pair; the seed's contour filter
DEFAULT_REGION_SSIM = 0.9
BOX_COLOUR = (36, 255, 12)
GAP = 8  # pixels between the panels of the picture


@dataclasses.dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    size_a: tuple[int, int]  # (width, height) of each image as stored, upright
    size_b: tuple[int, int]
    aligned_size: tuple[int, int]  # what SSIM compared
    ssim: float
    boxes: tuple[tuple[int, int, int, int], ...]  # (x0, y0, x1, y1), x1/y1 exclusive
    cosine: float | None = None
    model: str | None = None
    model_is_stand_in: bool = False


def common_size(size_a: tuple[int, int], size_b: tuple[int, int],
                max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(width, height) both images are compared at: the smaller of each, then
    scaled down (aspect kept) so the longer side is at most `max_side`."""
    w, h = min(size_a[0], size_b[0]), min(size_a[1], size_b[1])
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def align(a, b, max_side: int = DEFAULT_MAX_SIDE):
    """The two PIL RGB images at their `common_size`."""
    from PIL import Image

    size = common_size(a.size, b.size, max_side)
    return tuple(im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)
                 for im in (a, b))


def ssim_map(a, b) -> tuple[float, np.ndarray]:
    """(mean SSIM, per-pixel SSIM map) of two aligned RGB images, in greyscale."""
    from skimage.metrics import structural_similarity

    if min(a.size) < 7:
        raise ValueError(f"images of {a.size[0]}x{a.size[1]} pixels are too small for SSIM "
                         "(its window is 7x7)")
    ga = np.asarray(a.convert("L"), dtype=np.float64)
    gb = np.asarray(b.convert("L"), dtype=np.float64)
    score, full = structural_similarity(ga, gb, full=True, data_range=255)
    return float(score), full


def regions(full: np.ndarray, min_area: int = DEFAULT_MIN_AREA,
            region_ssim: float = DEFAULT_REGION_SSIM) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) around the connected regions where the images differ."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

    if full.min() >= region_ssim:
        return []
    cut = min(threshold_otsu(full), region_ssim) if full.min() < full.max() else region_ssim
    mask = full <= cut  # skimage: the lower class is `<= threshold`
    boxes = []
    for region in regionprops(label(mask, connectivity=2)):
        if region.area >= min_area:
            y0, x0, y1, x1 = region.bbox
            boxes.append((int(x0), int(y0), int(x1), int(y1)))
    return sorted(boxes, key=lambda box: (-(box[2] - box[0]) * (box[3] - box[1]), box))


def picture(a, b, full: np.ndarray, boxes):
    """a | b | difference map, the boxes drawn on both images."""
    from PIL import Image, ImageDraw

    w, h = a.size
    sheet = Image.new("RGB", (3 * w + 2 * GAP, h), (255, 255, 255))
    line = max(1, round(min(w, h) / 150))
    for i, im in enumerate((a, b)):
        panel = im.copy()
        draw = ImageDraw.Draw(panel)
        for x0, y0, x1, y1 in boxes:
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=line)
        sheet.paste(panel, (i * (w + GAP), 0))
    diff = (np.clip(full, 0, 1) * 255).astype(np.uint8)  # SSIM < 0 shown as black
    sheet.paste(Image.fromarray(diff, "L").convert("RGB"), (2 * (w + GAP), 0))
    return sheet


def _model_cosine(datas: list[bytes], names: list[str], info, model: str | None,
                  device: str) -> tuple[float, str, bool]:
    """(cosine, model, is a stand-in) with the run `info`'s model, else `model`."""
    from tools import query
    from transforms import records as R
    from transforms.embed.model_files import DEFAULT_IMAGE_SIZE, inspect_model, is_stand_in

    if info is not None:
        model, size, backend, max_pixels = (info.model, info.image_size, info.backend,
                                            info.max_pixels)
        stand_in = info.is_stand_in
    else:
        size = inspect_model(model).image_size or DEFAULT_IMAGE_SIZE
        backend, max_pixels = "torch", R.DEFAULT_MAX_IMAGE_PIXELS
        stand_in = os.path.isdir(model) and is_stand_in(model)
    pixels = [query.decode_query(d, n, size, max_pixels) for d, n in zip(datas, names)]
    query.warn_if_stand_in(model, stand_in)
    va, vb = query.QueryEncoder(model, size, backend, device).embed(pixels)
    return float(np.dot(va, vb)), model, stand_in


def compare(a: str, b: str, run: str | None = None, model: str | None = None,
            out: str | None = None, max_side: int = DEFAULT_MAX_SIDE,
            min_area: int = DEFAULT_MIN_AREA, region_ssim: float = DEFAULT_REGION_SSIM,
            device: str = "cpu") -> Comparison:
    """Compares the image files `a` and `b`; writes the picture to `out` when given."""
    from tools import pictures
    from tools.query import QueryImageError
    from transforms import records as R
    from transforms.decode import DecodeError

    if run and model:
        raise ValueError("give --run or --model, not both")
    from pipelines.config import Config

    max_bytes, max_pixels = Config.max_file_bytes, R.DEFAULT_MAX_IMAGE_PIXELS
    info = None
    if run:
        from tools.query import read_run
        info = read_run(run)
        max_bytes, max_pixels = info.max_file_bytes, info.max_pixels
    names = [a, b]
    datas = [pictures.read_file(n, max_bytes) for n in names]
    images = []
    for name, data in zip(names, datas):
        try:
            images.append(pictures.open_rgb(data, max_pixels))
        except DecodeError as exc:
            raise QueryImageError(f"{name}: cannot be decoded ({exc})") from None
    al, bl = align(*images, max_side=max_side)
    score, full = ssim_map(al, bl)
    boxes = regions(full, min_area, region_ssim)
    cosine, used_model, stand_in = (None, None, False)
    if run or model:
        cosine, used_model, stand_in = _model_cosine(datas, names, info, model, device)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        picture(al, bl, full, boxes).save(out, "PNG")
    return Comparison(a, b, images[0].size, images[1].size, al.size, score, tuple(boxes),
                      cosine, used_model, stand_in)


def report(c: Comparison) -> str:
    lines = [f"{c.a} ({c.size_a[0]}x{c.size_a[1]}) vs {c.b} ({c.size_b[0]}x{c.size_b[1]})"]
    if c.cosine is not None:
        lines.append(f"  cosine {c.cosine:.5f} (model {c.model}"
                     + (", A STAND-IN WITH RANDOM WEIGHTS" if c.model_is_stand_in else "") + ")")
    resized = "" if c.aligned_size == c.size_a == c.size_b else " (resized to compare)"
    lines.append(f"  SSIM {c.ssim:.5f} at {c.aligned_size[0]}x{c.aligned_size[1]}{resized}")
    lines.append(f"  regions that differ: {len(c.boxes)}" + "".join(
        f"\n    x {x0}-{x1}, y {y0}-{y1} ({(x1 - x0) * (y1 - y0)} px)"
        for x0, y0, x1, y1 in c.boxes))
    return "\n".join(lines)


def run(args) -> int:
    """The `compare` subcommand; returns the exit status."""
    c = compare(args.a, args.b, args.run, args.model, args.out, args.max_side, args.min_area,
                args.region_ssim, args.device)
    if args.json:
        print(json.dumps(dataclasses.asdict(c), sort_keys=True))
    else:
        print(report(c))
        if args.out:
            print(f"  picture: {args.out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="two images: model score, SSIM and boxes where they differ")
    p.add_argument("a", help="first image file")
    p.add_argument("b", help="second image file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--run", help="score with this run's model, decoded as the run did")
    source.add_argument("--model", help="score with this sentence-transformers model")
    p.add_argument("--out", help="write the picture (both images with boxes, difference map)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"compare at most this many pixels on the longer side "
                        f"(default {DEFAULT_MAX_SIDE})")
    p.add_argument("--min-area", type=int, default=DEFAULT_MIN_AREA,
                   help=f"smallest region reported, in pixels (default {DEFAULT_MIN_AREA})")
    p.add_argument("--region-ssim", type=float, default=DEFAULT_REGION_SSIM,
                   help="a pixel can differ only where local SSIM is below this "
                        f"(default {DEFAULT_REGION_SSIM})")
    p.add_argument("--device", default="cpu", help="where to run the model: cpu or cuda")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
