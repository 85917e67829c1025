"""Reader for plain image files: one file, one record.

An image file is read whole into memory, so its size is capped
(`max_bytes`): a file that is larger, or a device that never ends
(`/dev/zero` behind a `.jpg` name), is read only up to the cap and becomes a
`file_too_large` error row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from PIL import Image

from transforms import records as R
from transforms.decode import ALLOWED_FORMATS

_ALWAYS = frozenset({"jpg", "jpeg", "jpe", "jfif", "jif", "png", "webp", "gif", "bmp",
                     "tif", "tiff"})
# Formats Pillow decodes only with an optional plugin or library: read when
# the installed Pillow has it and the decoder allows the format, else skipped
# as `unsupported_format` (never read only to fail every record).
_OPTIONAL = {"avif": "AVIF", "heic": "HEIF", "heif": "HEIF"}


def _decodable(ext: str, fmt: str) -> bool:
    return fmt in ALLOWED_FORMATS and Image.registered_extensions().get(f".{ext}") == fmt


Image.init()  # registers every built-in plugin's extensions
IMAGE_EXTENSIONS = _ALWAYS | {e for e, fmt in _OPTIONAL.items() if _decodable(e, fmt)}
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(_OPTIONAL) - IMAGE_EXTENSIONS


def read_image_file(uri: str, fileobj: IO[bytes], max_bytes: int | None = None
                    ) -> Iterator[R.ImageRecord | dict[str, Any]]:
    """Yields the one record of an image file (its key is the file's uri), or an error row."""
    data = fileobj.read() if max_bytes is None else fileobj.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        yield R.error_row(R.READ, R.FILE_TOO_LARGE, f"more than max_file_bytes {max_bytes} bytes",
                          source_uri=uri, key=uri, record_id=R.make_record_id(uri, "file"))
        return
    yield R.new_record(uri, "file", uri, data)
