"""Thumbnails of a few chosen records, read back from the run's own inputs.

The review report (`tools/report/`) shows a bounded sample of a run's pairs
and groups as pictures. `ReadThumbnails` takes the sampled records (rows with
`record_id` and `source_uri`), groups them by input file, opens each file once
with the same readers the embed job used (`transforms/read/formats/`: tar
members, Parquet rows, image files), stops at the file's last wanted record,
and emits one `THUMBNAILS_SCHEMA` row per wanted record: a small JPEG for the
page, a greyscale PNG for SSIM, the image's upright size, or a `note` saying
why there is no picture. Because it is an ordinary Beam step over storage
paths it runs wherever the run ran (the local runner, Dataflow).

What can fail: a file that is gone, or is no longer a regular file, since
the run, a record no longer in its file, or bytes that do not decode give a
row with a `note` and no picture (a report of a moved dataset is still a
report). Reading bytes is never wrapped: a storage error reaches the runner,
which retries the bundle.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import records as R
from transforms.metrics import counter
from transforms.read import formats

THUMBNAIL_SIDE = 192  # longer side of the page's pictures
SSIM_SIDE = 256  # longer side of the greyscale copy SSIM is computed on
JPEG_QUALITY = 80
_ORIENTATION = 0x0112  # EXIF tag; values 5-8 turn the image a quarter
_TURNED = (5, 6, 7, 8)

#: One row per sampled record; `thumbnail`/`grey` are null when `note` says why.
THUMBNAILS_SCHEMA = pa.schema([
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("thumbnail", pa.binary()),  # JPEG, longer side <= THUMBNAIL_SIDE
    pa.field("grey", pa.binary()),  # 8-bit greyscale PNG, longer side <= SSIM_SIDE
    pa.field("width", pa.int32()),  # of the whole image, upright
    pa.field("height", pa.int32()),
    pa.field("note", pa.string()),
])


def make_thumbnails(data: bytes, max_pixels: int = R.DEFAULT_MAX_IMAGE_PIXELS,
                    side: int = THUMBNAIL_SIDE, ssim_side: int = SSIM_SIDE
                    ) -> tuple[bytes, bytes, int, int]:
    """(JPEG thumbnail, greyscale PNG, width, height) of the image in `data`.

    Opened by the decoder's rules (format allow-list, pixel cap from the
    header, `load()` always, EXIF orientation, the decoder's colour handling).

    Raises:
        DecodeError: with the decoder's reason codes.
    """
    from PIL import Image, ImageOps

    from transforms.decode import decode_errors, open_image, to_rgb

    with decode_errors():
        img = open_image(data, max_pixels)
        w, h = img.size
        if img.getexif().get(_ORIENTATION) in _TURNED:  # shown upright: sides swap
            w, h = h, w
        img.draft("RGB", (ssim_side, ssim_side))  # JPEG: decode at reduced scale, fast
        img.load()
        img = to_rgb(ImageOps.exif_transpose(img))
    grey = img.copy()
    grey.thumbnail((ssim_side, ssim_side), Image.Resampling.BICUBIC)
    small = img.copy()
    small.thumbnail((side, side), Image.Resampling.BICUBIC)
    jpeg, png = io.BytesIO(), io.BytesIO()
    small.save(jpeg, "JPEG", quality=JPEG_QUALITY)
    grey.convert("L").save(png, "PNG")
    return jpeg.getvalue(), png.getvalue(), w, h


def note_row(record_id: str, note: str) -> dict[str, Any]:
    return {"record_id": record_id, "thumbnail": None, "grey": None, "width": None,
            "height": None, "note": note}


class _ReadSampledFn(beam.DoFn):
    """(source_uri, record ids) -> a THUMBNAILS_SCHEMA row per record id."""

    def __init__(self, image_column: str, key_column: str | None, max_file_bytes: int,
                 max_pixels: int):
        self._image_column = image_column
        self._key_column = key_column
        self._max_bytes = max_file_bytes
        self._max_pixels = max_pixels

    def _reader(self, uri: str, fileobj):
        kind = formats.input_kind(uri)
        if kind == formats.TAR:
            return formats.read_tar_shard(uri, fileobj, self._max_bytes)
        if kind == formats.PARQUET:
            return formats.read_parquet_file(uri, fileobj, self._image_column, self._key_column)
        return formats.read_image_file(uri, fileobj, self._max_bytes)

    def _refusal(self, uri: str) -> str | None:
        """Why the file is not opened at all, else None."""
        if formats.input_kind(uri) is None:
            return f"{uri} is not an input kind clipdedup reads"
        if FileSystems.get_scheme(uri) in (None, "file"):
            if not os.path.lexists(uri):
                return f"{uri} no longer exists"
            if not stat.S_ISREG(os.stat(uri).st_mode):  # a FIFO would block forever
                return f"{uri} is not a regular file"
        elif not FileSystems.exists(uri):
            return f"{uri} no longer exists"
        return None

    def process(self, element: tuple[str, list[str]]) -> Iterator[dict[str, Any]]:
        from transforms.decode import DecodeError

        uri, record_ids = element
        wanted = set(record_ids)
        refused = self._refusal(uri)
        if refused:
            for record_id in sorted(wanted):
                counter("thumbnails_missing").inc()
                yield note_row(record_id, refused)
            return
        found: set[str] = set()
        with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for item in self._reader(uri, f):
                record_id = item.record_id if isinstance(item, R.ImageRecord) else None
                if record_id not in wanted or record_id in found:
                    continue
                found.add(record_id)
                try:
                    jpeg, grey, w, h = make_thumbnails(item.data, self._max_pixels)
                except DecodeError as exc:
                    counter("thumbnails_missing").inc()
                    yield note_row(record_id, f"does not decode: {exc.reason}")
                else:
                    counter("thumbnails_made").inc()
                    yield {"record_id": record_id, "thumbnail": jpeg, "grey": grey,
                           "width": w, "height": h, "note": None}
                if found == wanted:
                    break  # the rest of the file is not needed
        for record_id in sorted(wanted - found):
            counter("thumbnails_missing").inc()
            yield note_row(record_id, f"not found in {uri} (the file changed since the run?)")


class ReadThumbnails(beam.PTransform):
    """Sampled records -> one `THUMBNAILS_SCHEMA` row each, read from their inputs.

    Input: dicts with `record_id` and `source_uri` (duplicates are read once).
    Output: dicts of `THUMBNAILS_SCHEMA`, one per distinct record id.

    Args:
        image_column / key_column: how the run read Parquet inputs.
        max_file_bytes / max_pixels: the run's caps (a record the run would
            refuse is refused here too).
    """

    def __init__(self, image_column: str = "image", key_column: str | None = None,
                 max_file_bytes: int = 256 << 20,
                 max_pixels: int = R.DEFAULT_MAX_IMAGE_PIXELS):
        super().__init__()
        self._fn = _ReadSampledFn(image_column, key_column, max_file_bytes, max_pixels)

    def expand(self, sampled: beam.PCollection[dict]) -> beam.PCollection[dict]:
        return (sampled
                | "KeyBySource" >> beam.Map(lambda r: (r["source_uri"], r["record_id"]))
                | "Distinct" >> beam.Distinct()
                | "GroupBySource" >> beam.GroupByKey()
                | "ReadSampled" >> beam.ParDo(self._fn))
