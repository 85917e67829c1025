"""A labelled set of duplicate / near-duplicate / different image pairs, from images on this machine.

    python -m tools.labelled_set --output labelled/ [--seed 0] [--max-sources 0]

Sources are pictures Debian and PyPI packages ship (nothing is downloaded):
the photographs of `skimage.data` and `sklearn.datasets.images`, and the
512x512 Adwaita icons (`/usr/share/icons/Adwaita/512x512/<category>/`).
For each source the original is copied and variants are written
(`VARIANTS`): resized, re-encoded as JPEG, rotated in pixels with an EXIF
orientation that shows it upright again, cropped, recoloured, made
greyscale, and for icons the theme's own smaller drawing of the same icon
(`SMALLER_ICON_SIZES`).

`labels.csv` (columns `a, b, label`; `a`, `b` absolute file paths) holds:

- `duplicate`: the original and a copy showing the same picture (resized,
  re-encoded, EXIF-rotated);
- `near_duplicate`: the original and an edited copy (cropped, recoloured,
  greyscale, the theme's smaller drawing);
- `different`: hard negatives, real different-but-similar images: every pair
  of icons of one Adwaita category (folder vs folder-music, text-x-generic vs
  text-x-script) and every pair of photographs (textures such as grass,
  gravel and brick among them).

Variant parameters are drawn from `--seed`, so one seed on one machine gives
the same bytes. Which sources exist depends on the packages installed; the
summary printed (and `sources.txt`) lists them.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import itertools
import os
import random
from typing import NamedTuple

from PIL import Image, ImageEnhance, ImageOps

DUPLICATE, NEAR_DUPLICATE, DIFFERENT = "duplicate", "near_duplicate", "different"
ICON_ROOT = "/usr/share/icons/Adwaita"
ICON_CATEGORIES = ("places", "mimetypes", "devices", "emblems")
SMALLER_ICON_SIZES = ("256x256", "96x96", "64x64", "48x48")  # the first the theme has
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg")
# skimage.data files that are not photographs of their own (masks, a stereo
# twin, a repeated chessboard), left out so no negative is secretly a copy.
_SKIP_PHOTOS = {"motorcycle_right.png", "chessboard_GRAY.png", "lfw_subset.npy",
                "microaneurysms.png", "no_time_for_that_tiny.gif"}


class Source(NamedTuple):
    name: str  # unique, used for file names
    family: str  # hard negatives are drawn within a family
    path: str
    smaller: str | None = None  # the same picture drawn smaller by its authors (icons)


def _package_dir(module: str, sub: str) -> str | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], sub)
    return folder if os.path.isdir(folder) else None


def find_sources(icon_root: str = ICON_ROOT) -> list[Source]:
    """The pictures this machine's packages ship, sorted (see the module docstring)."""
    sources = []
    for module, sub in (("skimage", "data"), ("sklearn", os.path.join("datasets", "images"))):
        folder = _package_dir(module, sub)
        for name in sorted(os.listdir(folder)) if folder else []:
            if name.lower().endswith(PHOTO_EXTENSIONS) and name not in _SKIP_PHOTOS:
                stem = f"{module}-{os.path.splitext(name)[0]}"
                sources.append(Source(stem, "photos", os.path.join(folder, name)))
    for category in ICON_CATEGORIES:
        folder = os.path.join(icon_root, "512x512", category)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".png"):
                smaller = [p for size in SMALLER_ICON_SIZES
                           if os.path.isfile(p := os.path.join(icon_root, size, category, name))]
                sources.append(Source(f"icon-{category}-{name[:-4]}", f"icons-{category}",
                                      os.path.join(folder, name),
                                      smaller[0] if smaller else None))
    return sources


def _flat(img: Image.Image) -> Image.Image:
    """RGB, transparency composited on white (as the decode stage shows it)."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)),
                                     rgba).convert("RGB")
    return img.convert("RGB")


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _resized(img, rng):
    scale = rng.uniform(0.4, 0.7)
    size = (max(8, round(img.width * scale)), max(8, round(img.height * scale)))
    return "png", _save(img.resize(size, Image.Resampling.LANCZOS), "PNG")


def _jpeg(img, rng):
    return "jpg", _save(_flat(img), "JPEG", quality=rng.randint(35, 75))


def _exif_rotated(img, rng):
    # Stored turned a quarter left; orientation 6 says "rotate 90 clockwise to show".
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = _flat(img).transpose(Image.Transpose.ROTATE_90)
    return "jpg", _save(stored, "JPEG", quality=92, exif=exif.tobytes())


def _cropped(img, rng):
    keep = rng.uniform(0.75, 0.9)
    w, h = img.size
    cw, ch = round(w * keep), round(h * keep)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return "png", _save(img.crop((left, top, left + cw, top + ch)), "PNG")


def _recoloured(img, rng):
    flat = _flat(img)
    out = ImageEnhance.Brightness(flat).enhance(rng.uniform(1.1, 1.3))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.5, 0.8))
    return "jpg", _save(out, "JPEG", quality=90)


def _greyscale(img, rng):
    return "png", _save(ImageOps.grayscale(_flat(img)), "PNG")


#: name -> (label, function(image, rng) -> (extension, bytes))
VARIANTS = {
    "resized": (DUPLICATE, _resized),
    "jpeg": (DUPLICATE, _jpeg),
    "exif-rotated": (DUPLICATE, _exif_rotated),
    "cropped": (NEAR_DUPLICATE, _cropped),
    "recoloured": (NEAR_DUPLICATE, _recoloured),
    "greyscale": (NEAR_DUPLICATE, _greyscale),
}


SMALLER = "theme-smaller"
ORIGINAL = "original"


def variant_of(path: str) -> str:
    """Which variant (`VARIANTS`, `theme-smaller`, `original`) a file of the set is, by its name."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return next((v for v in (*VARIANTS, SMALLER, ORIGINAL) if stem.endswith("-" + v)), "?")


def build(output: str, seed: int = 0, sources: list[Source] | None = None,
          max_sources: int = 0) -> dict:
    """Writes `<output>/images/...` and `<output>/labels.csv`; returns counts.

    Args:
        output: folder to write into (created).
        seed: draws every variant's parameters.
        sources: the pictures to start from (default `find_sources()`).
        max_sources: keep the first this many sources of each family (0: all).
    """
    sources = find_sources() if sources is None else list(sources)
    if max_sources:
        by_family: dict[str, list[Source]] = {}
        for s in sources:
            by_family.setdefault(s.family, []).append(s)
        sources = [s for group in by_family.values() for s in group[:max_sources]]
    if not sources:
        raise FileNotFoundError("no source pictures found (skimage.data, /usr/share/icons)")
    images = os.path.join(os.path.abspath(output), "images")
    os.makedirs(images, exist_ok=True)
    rows, originals = [], {}
    for k, source in enumerate(sources):
        rng = random.Random(f"{seed}:{source.name}")  # per source: adding one changes no other
        with Image.open(source.path) as img:
            img.load()
            if img.mode not in ("RGB", "RGBA", "L", "LA"):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            ext = os.path.splitext(source.path)[1].lower()
            original = os.path.join(images, f"{source.name}-{ORIGINAL}{ext}")
            with open(source.path, "rb") as src, open(original, "wb") as dst:
                dst.write(src.read())
            originals[source.name] = original
            for variant, (label, make) in VARIANTS.items():
                vext, data = make(img, rng)
                path = os.path.join(images, f"{source.name}-{variant}.{vext}")
                with open(path, "wb") as f:
                    f.write(data)
                rows.append((original, path, label))
        if source.smaller:
            path = os.path.join(images, f"{source.name}-{SMALLER}.png")
            with open(source.smaller, "rb") as src, open(path, "wb") as dst:
                dst.write(src.read())
            rows.append((original, path, NEAR_DUPLICATE))
    families: dict[str, list[Source]] = {}
    for s in sources:
        families.setdefault(s.family, []).append(s)
    for group in families.values():
        for x, y in itertools.combinations(group, 2):
            rows.append((originals[x.name], originals[y.name], DIFFERENT))
    with open(os.path.join(output, "labels.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "label"])
        writer.writerows(rows)
    with open(os.path.join(output, "sources.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{s.name}\t{s.path}\n" for s in sources)
    counts = {label: sum(r[2] == label for r in rows)
              for label in (DUPLICATE, NEAR_DUPLICATE, DIFFERENT)}
    return {"sources": len(sources), "images": len(os.listdir(images)), **counts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.labelled_set", description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-sources", type=int, default=0, help="per family; 0 = all")
    args = p.parse_args(argv)
    print(build(args.output, args.seed, max_sources=args.max_sources))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
