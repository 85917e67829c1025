"""Whole pictures for people to look at: read a user's image file, open it safely,
make a thumbnail, embed it in a page.

The model only ever sees `decode_image`'s square crop; `query --html` and
`compare` show (and compare) the whole image instead. Opening follows the
decoder's rules (its format allow-list, the pixel cap checked from the header,
`load()` always called, EXIF orientation, 16-bit and transparency handled by
the decoder's own colour conversion), so a file the pipeline rejects is
rejected here too, with the same `DecodeError` reason codes.
"""

from __future__ import annotations

import base64
import io
import os

from apache_beam.io.filesystems import FileSystems
from PIL import Image, ImageOps

from transforms import records as R
from transforms.decode import decode_errors, open_image, to_rgb

THUMBNAIL_SIDE = 256


def read_file(path: str, max_bytes: int) -> bytes:
    """The bytes of one image file given by a user (local path or gs:// / s3:// uri).

    A local path must be a regular file (a FIFO named `.jpg` would block
    forever) and no larger than `max_bytes`.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: not a regular file, or larger than `max_bytes`.
    """
    if FileSystems.get_scheme(path) in (None, "file"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        if not os.path.isfile(path):
            raise ValueError(f"{path}: not a regular file")
    elif not FileSystems.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    with FileSystems.open(path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path}: larger than max_file_bytes {max_bytes}")
    return data


def open_rgb(data: bytes, max_pixels: int = R.DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """The whole image in `data` as RGB, upright, at its own size.

    Raises:
        DecodeError: with the decoder's reason codes (empty_file, unidentified,
            too_large, truncated, corrupt).
    """
    with decode_errors():
        img = open_image(data, max_pixels)
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))


def thumbnail(img: Image.Image, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """A copy of `img` whose longer side is at most `side` pixels."""
    small = img.copy()
    small.thumbnail((side, side), Image.Resampling.BICUBIC)
    return small


def data_uri(img: Image.Image) -> str:
    """`img` as an inline JPEG `data:` uri, so a page needs no other file."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
