"""Reader for plain image files: one file, one record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from transforms.records import ImageRecord, new_record

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})


def read_image_file(uri: str, fileobj: IO[bytes]) -> Iterator[ImageRecord]:
    """Yields the one record of an image file; its key is the file's uri."""
    yield new_record(uri, "file", uri, fileobj.read())
