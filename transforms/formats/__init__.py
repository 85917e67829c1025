"""Readers for the input kinds clipdedup accepts, one module each.

Each reader is a plain generator over an open, seekable file object that
yields `ImageRecord`s for images it found and error rows (dicts of
`schemas.ERRORS_SCHEMA`) for records or whole files it could not use. Reader
functions never catch `OSError` from the file object: a storage failure is
transient and must reach the runner, which retries the bundle.
"""

import os

from transforms.formats.image_files import IMAGE_EXTENSIONS, read_image_file
from transforms.formats.parquet_files import read_parquet_file
from transforms.formats.tar_shards import read_tar_shard

TAR, PARQUET, IMAGE = "tar", "parquet", "image"


def input_kind(uri: str) -> str | None:
    """The kind of input file `uri` is, from its extension; None if not an input."""
    ext = os.path.splitext(uri)[1].lower().lstrip(".")
    if ext == "tar":
        return TAR
    if ext == "parquet":
        return PARQUET
    if ext in IMAGE_EXTENSIONS:
        return IMAGE
    return None


__all__ = ["IMAGE", "PARQUET", "TAR", "input_kind", "read_image_file",
           "read_parquet_file", "read_tar_shard"]
