"""Stage 3, decode: image bytes into the model's input pixels.

`decode_image` turns encoded bytes into a uint8 [S, S, 3] RGB array the way
CLIP's processor does (shortest side resized to S with bicubic filtering, then
a centre crop), after making the image safe and faithful:

- formats are restricted to an allow-list (`Image.open(formats=...)`);
- the pixel count is checked from the header, before any pixel is allocated
  (`too_large`), and Pillow's decompression-bomb warning is an error;
- JPEGs are decoded at reduced scale with libjpeg's draft mode when they are
  much larger than S (fast, and still at least S pixels on the short side);
- `load()` is always called (a truncated JPEG opens fine and fails there);
- EXIF orientation is applied, 16-bit images are scaled (not clipped), and
  transparency is composited on a fixed white background;
- animated images use frame 0.

`decode_image_and_hash` also returns the image's 64-bit perceptual hash
(`transforms.phash`), taken from the same decoded RGB image (EXIF applied,
transparency on white) before the centre crop, so it covers the whole
picture; `DecodeImages` uses it, and the hash reaches the embeddings table.

Failures raise `DecodeError` with a stable reason code; `DecodeImages` sends
them to its `errors` output. Only bytes already in memory are decoded here,
so any exception is about the data, never about storage.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import threading
import warnings
from collections.abc import Callable
from concurrent import futures
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.utils.windowed_value import WindowedValue
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from transforms import records as R
from transforms.metrics import counter
from transforms.phash import perceptual_hash

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
BACKGROUND = (255, 255, 255)

# Signatures of formats we recognise but do not decode (never hand them to
# Pillow's open-everything path: EPS would start Ghostscript).
_UNSUPPORTED_SIGNATURES = (
    (b"%PDF", "PDF"), (b"%!PS", "PostScript"), (b"8BPS", "PSD"), (b"\x00\x00\x01\x00", "ICO"),
    (b"<svg", "SVG"), (b"<?xml", "SVG/XML"), (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF",
                b"msf1": "HEIF"}

ImageFile.LOAD_TRUNCATED_IMAGES = False
_OPEN_LOCK = threading.Lock()  # see decode_image


class DecodeError(Exception):
    """An image that cannot be used, with its stable `reason` code."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def _unsupported_format(data: bytes) -> str | None:
    head = data[:64].lstrip()
    for signature, name in _UNSUPPORTED_SIGNATURES:
        if head.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "ISO-BMFF")
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB without clipping 16-bit data or exposing colour under transparency."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(arr, 0, top) * (255.0 / top)
        return Image.fromarray(np.round(arr).astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = arr.min(initial=0), arr.max(initial=0)
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


# Resizing the whole image first costs (long side / short side) times the
# crop; above this ratio only the crop region is resampled (see below).
MAX_RESIZED_ASPECT = 16


def _resize_and_crop(img: Image.Image, size: int) -> Image.Image:
    """CLIP preprocessing geometry: shortest side to `size`, then centre crop.

    Resizing the whole image first makes the long side of a 40000x1 image
    8.96 million pixels (gigabytes from a tiny file). So beyond
    `MAX_RESIZED_ASPECT` the crop box is mapped back into source coordinates
    and `resize(box=...)` resamples only that region, with the same filter
    scale: work and memory are then bounded by the source and `size` for any
    shape. Ordinary images keep the whole-image resize, so their pixels stay
    bit-identical: Pillow takes a box as float32, which moves the filter's
    taps slightly and changes a few values by a level or two.
    """
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    if max(new_w, new_h) > MAX_RESIZED_ASPECT * size:
        sx, sy = w / new_w, h / new_h  # per axis, as the whole-image resize has them
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    return img.crop((left, top, left + size, top + size))


@contextlib.contextmanager
def decode_errors():
    """Pillow's exceptions inside the block, as `DecodeError` reason codes."""
    try:
        yield
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(R.TOO_LARGE, str(exc)) from None
    except OSError as exc:
        reason = R.TRUNCATED if "truncated" in str(exc).lower() else R.CORRUPT
        raise DecodeError(reason, f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many classes on fuzzed bytes
        raise DecodeError(R.CORRUPT, f"{type(exc).__name__}: {exc}") from None


def open_image(data: bytes, max_pixels: int = R.DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """`data` opened by the decoder's rules, its pixels not yet loaded.

    The format allow-list, formats known not to decode named as such, and the
    pixel cap checked from the header before any pixel is allocated. Call it
    inside `decode_errors()`.
    """
    if not data:
        raise DecodeError(R.EMPTY_FILE, "zero bytes")
    unsupported = _unsupported_format(data)
    if unsupported:
        raise DecodeError(R.UNSUPPORTED_FORMAT, f"{unsupported} images are not decoded")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own check at open() then uses our cap
    # Pillow checks the pixel count in open(). The warning filter is
    # process-wide state and several threads decode at once: only one of
    # them may swap it at a time, and only around open().
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except UnidentifiedImageError:
            raise DecodeError(R.UNIDENTIFIED, "not an image in an allowed format "
                              f"({', '.join(ALLOWED_FORMATS)})") from None
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > max_pixels:
        raise DecodeError(R.TOO_LARGE, f"{w}x{h} exceeds the cap of {max_pixels} pixels")
    return img


def decode_image(data: bytes, size: int = 224, max_pixels: int = R.DEFAULT_MAX_IMAGE_PIXELS
                 ) -> tuple[np.ndarray, int, int]:
    """Decodes `data` into (pixels uint8 [size, size, 3], width, height).

    `width`/`height` are the original image's, after EXIF orientation.

    Raises:
        DecodeError: with reason empty_file, unsupported_format, unidentified,
            too_large, truncated or corrupt.
    """
    pixels, w, h, _ = _decode(data, size, max_pixels, with_hash=False)
    return pixels, w, h


def decode_image_and_hash(data: bytes, size: int = 224,
                          max_pixels: int = R.DEFAULT_MAX_IMAGE_PIXELS
                          ) -> tuple[np.ndarray, int, int, int]:
    """`decode_image` plus the pHash (int64) of the whole decoded RGB image.

    Raises:
        DecodeError: as `decode_image`.
    """
    return _decode(data, size, max_pixels, with_hash=True)


def _decode(data: bytes, size: int, max_pixels: int, with_hash: bool
            ) -> tuple[np.ndarray, int, int, int | None]:
    with decode_errors():
        img = open_image(data, max_pixels)
        w, h = img.size
        if img.format == "JPEG":
            img.draft("RGB" if img.mode == "RGB" else None, (size, size))
        img.load()
        try:
            orientation = img.getexif().get(0x0112, 1)
            img = ImageOps.exif_transpose(img)
            if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
                w, h = h, w
        except Exception:  # noqa: BLE001 - malformed EXIF: keep pixels as stored
            counter("exif_unreadable").inc()
        rgb = to_rgb(img)
        phash = perceptual_hash(rgb) if with_hash else None
        pixels = np.asarray(_resize_and_crop(rgb, size), dtype=np.uint8)
    if pixels.shape != (size, size, 3):
        raise DecodeError(R.CORRUPT, f"decoded to unexpected shape {pixels.shape}")
    return pixels, w, h, phash


ISOLATION_MODES = ("none", "subprocess")


class Decoded(NamedTuple):
    images: beam.PCollection  # DecodedImage
    errors: beam.PCollection  # error rows


# A decoder returns (pixels, width, height) or (pixels, width, height, phash).
Decoder = Callable[..., tuple]


class _DecodeFn(beam.DoFn):
    def __init__(self, size: int, max_pixels: int, decoder: Decoder = decode_image_and_hash):
        self._size = size
        self._max_pixels = max_pixels
        self._decoder = decoder

    def process(self, record: R.ImageRecord):
        yield _counted(self._decode(record))

    def _decode(self, record: R.ImageRecord):
        """The one output of `record`: a DecodedImage, or a tagged error row."""
        try:
            pixels, w, h, *phash = self._decoder(record.data, self._size, self._max_pixels)
        except DecodeError as exc:
            return beam.pvalue.TaggedOutput(
                "errors", R.record_error(record, R.DECODE, exc.reason, exc.message))
        return R.DecodedImage(record.without_data(), w, h, pixels, phash[0] if phash else None)


def _counted(out):
    """`out`, counted. Beam's metrics are per thread: count in the bundle's thread."""
    counter("decode_failed" if isinstance(out, beam.pvalue.TaggedOutput) else "decoded").inc()
    return out


class _DecodeAheadFn(_DecodeFn):
    """Decodes in worker threads, up to `ahead` records ahead of its output.

    Outputs leave in input order, and at most `ahead` records (their bytes and
    pixels) are held. Downstream stages fused with this one (the batching and
    the model's forward pass) run while this DoFn yields. Two schedules:

    - `overlap=True`: one background thread keeps decoding while the model
      runs. For a model on a GPU, whose forward pass leaves the CPU free.
    - `overlap=False`: decoding and the model take turns. Records are decoded
      as they arrive, by `threads` threads (0: one per core), and nothing is emitted until
      `ahead` are pending; then all of them are emitted, and the forward
      passes they fill run with no decoding beside them. For a model on the
      CPU: torch's threads already occupy every core and advance in lock-step,
      so a background decoder can only preempt one of them and stall the
      whole forward pass, while taking turns spreads decoding over every core
      (a few percent faster on 2 cores: docs/throughput.md).
    """

    def __init__(self, size: int, max_pixels: int, decoder: Decoder, ahead: int,
                 overlap: bool = True, threads: int = 0):
        super().__init__(size, max_pixels, decoder)
        self._ahead = ahead
        self._overlap = overlap
        self._threads = threads

    def setup(self):
        # Resolved on the worker: 0 = one thread per core of the machine that decodes.
        threads = 1 if self._overlap else self._threads or os.cpu_count() or 1
        self._pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="decode-ahead")

    def start_bundle(self):
        self._pending = collections.deque()

    def process(self, record: R.ImageRecord, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        self._pending.append((self._pool.submit(self._decode, record), timestamp, window))
        if self._overlap:
            while self._pending and (len(self._pending) > self._ahead
                                     or self._pending[0][0].done()):
                yield self._ready()
        elif len(self._pending) >= self._ahead:
            yield from self._drain()

    def finish_bundle(self):
        yield from self._drain()

    def _drain(self):
        """Every pending output. Taking turns, all of them are decoded before the
        first is handed on: the forward pass it may start must run alone."""
        if not self._overlap:
            futures.wait([future for future, _, _ in self._pending])
        while self._pending:
            yield self._ready()

    def _ready(self):
        """The oldest pending output, waited for, in its input's window."""
        future, timestamp, window = self._pending.popleft()
        out = _counted(future.result())
        if isinstance(out, beam.pvalue.TaggedOutput):
            return beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, timestamp, (window,)))
        return WindowedValue(out, timestamp, (window,))

    def teardown(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


def _contained_failure(dead_letter) -> dict:
    """A record whose isolated decoding timed out or killed its subprocess -> error row."""
    record, (exc_type, exc_repr, _traceback) = dead_letter
    reason = R.DECODE_TIMEOUT if issubclass(exc_type, TimeoutError) else R.DECODER_CRASHED
    counter(reason).inc()
    return R.record_error(record, R.DECODE, reason, f"{exc_type.__name__}: {exc_repr}")


class DecodeImages(beam.PTransform):
    """`ImageRecord` -> `Decoded(images=DecodedImage, errors=error rows)`.

    With `isolation="subprocess"` decoding runs in a long-lived subprocess
    (Beam's `with_exception_handling(use_subprocess=True, timeout=...)`), so a
    decoder that hangs (`decode_timeout`) or crashes the process
    (`decoder_crashed`, e.g. a segfault in a codec) costs one error row, not the
    job. Counters incremented inside the subprocess are not reported.

    Args:
        size: side S of the square model input (224 for ViT-B/32).
        max_pixels: images with more pixels are rejected as `too_large`.
        isolation: `none` (decode in the worker) or `subprocess`.
        timeout_s: per-image limit in `subprocess` mode (None: no limit).
        decoder: the decoding function (tests inject hanging/crashing ones);
            one returning no hash leaves `DecodedImage.phash` None.
        ahead: with isolation `none`, decode in threads up to this many
            records ahead of the model (0: decode inline, one by one).
        overlap: with `ahead`, True decodes in one background thread while
            the model runs (GPU); False decodes with `threads` threads in
            turns with the model (CPU). See `_DecodeAheadFn`.
        threads: decoding threads when not overlapping; 0 = one per core.
    """

    def __init__(self, size: int = 224, max_pixels: int = R.DEFAULT_MAX_IMAGE_PIXELS, isolation: str = "none",
                 timeout_s: float | None = None,
                 decoder: Decoder = decode_image_and_hash,
                 ahead: int = 0, overlap: bool = True, threads: int = 0):
        super().__init__()
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"decode isolation must be one of {ISOLATION_MODES}, "
                             f"got {isolation!r}")
        if ahead < 0 or threads < 0:
            raise ValueError(f"decode ahead and threads must be >= 0, got {ahead}, {threads}")
        # Decode-ahead decodes in threads of the worker. Under
        # subprocess isolation Beam runs the DoFn element by element in another
        # process, so there it would only add a thread: decode inline instead.
        if ahead and isolation == "none":
            self._fn = _DecodeAheadFn(size, max_pixels, decoder, ahead, overlap, threads)
        else:
            self._fn = _DecodeFn(size, max_pixels, decoder)
        self._isolation = isolation
        self._timeout_s = timeout_s

    def expand(self, records: beam.PCollection[R.ImageRecord]) -> Decoded:
        decode = beam.ParDo(self._fn).with_outputs("errors", main="images")
        if self._isolation == "none":
            out = records | "Decode" >> decode
            return Decoded(out.images, out.errors)
        out = records | "Decode" >> decode.with_exception_handling(
            dead_letter_tag="contained", use_subprocess=True, timeout=self._timeout_s)
        contained = out["contained"] | "ContainedFailures" >> beam.Map(_contained_failure)
        errors = (out["errors"], contained) | "DecodeErrors" >> beam.Flatten()
        return Decoded(out["images"], errors)
