"""Readers for the input kinds clipdedup accepts, one module each.

Each reader is a plain generator over an open, seekable file object that
yields `ImageRecord`s for images it found and error rows (dicts of
`schemas.ERRORS_SCHEMA`) for records or whole files it could not use. Reader
functions never catch `OSError` from the file object: a storage failure is
transient and must reach the runner, which retries the bundle (`storage`
tells the two apart where a decoder raises `OSError` too).
"""

import os

from transforms import records as R
from transforms.read.formats.image_files import (
    IMAGE_EXTENSIONS,
    UNSUPPORTED_IMAGE_EXTENSIONS,
    read_image_file,
)
from transforms.read.formats.parquet_files import read_parquet_file
from transforms.read.formats.tar_shards import read_tar_shard

TAR, PARQUET, IMAGE = "tar", "parquet", "image"
# Compressed shards are not read (records are found by seeking in the tar).
_COMPRESSED_TARS = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")


def _extension(uri: str) -> str:
    """After the name's last dot, lower case (a file named `.jpg` counts as jpg)."""
    name = os.path.basename(uri)
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def input_kind(uri: str) -> str | None:
    """The kind of input file `uri` is, from its extension; None if not an input."""
    ext = _extension(uri)
    if ext == "tar":
        return TAR
    if ext == "parquet":
        return PARQUET
    if ext in IMAGE_EXTENSIONS:
        return IMAGE
    return None


def skip_reason(uri: str) -> tuple[str, str]:
    """(reason code, message) for a file `input_kind` does not read."""
    ext = _extension(uri)
    if uri.lower().endswith(_COMPRESSED_TARS):
        return R.UNSUPPORTED_FORMAT, "compressed tar shard: decompress it to .tar"
    if ext in UNSUPPORTED_IMAGE_EXTENSIONS:
        return R.UNSUPPORTED_FORMAT, f".{ext}: no decoder for this format is installed"
    return R.NOT_AN_INPUT, "not a tar, Parquet or image file (by its extension)"


__all__ = ["IMAGE", "PARQUET", "TAR", "input_kind", "read_image_file",
           "read_parquet_file", "read_tar_shard", "skip_reason"]
