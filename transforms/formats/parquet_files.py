"""Reader for Parquet files with an image-bytes column.

Accepts the column as plain `binary`/`large_binary` or in the Hugging Face
`datasets` Image layout `struct<bytes: binary, path: string>`. The schema is
checked per file (a dataset can mix files written by different tools); a file
whose image column is missing or of another type is reported whole as
`schema_mismatch`. Rows are read in batches, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from transforms import records as R

BATCH_ROWS = 256


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _image_layout(schema: pa.Schema, column: str) -> str | None:
    """`binary`, `struct` (HF datasets) or None if the column cannot hold images."""
    if column not in schema.names:
        return None
    t = schema.field(column).type
    if _is_binary(t):
        return "binary"
    if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 and _is_binary(
            t.field("bytes").type):
        return "struct"
    return None


def read_parquet_file(uri: str, fileobj: IO[bytes], image_column: str = "image",
                      key_column: str | None = None) -> Iterator[R.ImageRecord | dict[str, Any]]:
    """Yields one record per row with image bytes, and error rows.

    The key of a row is `key_column`'s value when given, else the HF struct's
    `path` when present, else the row number.
    """
    if not fileobj.read(1):
        yield R.error_row(R.READ, R.EMPTY_FILE, "zero bytes", source_uri=uri)
        return
    fileobj.seek(0)
    try:
        parquet = pq.ParquetFile(fileobj)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        yield R.error_row(R.READ, R.CORRUPT, f"not a readable Parquet file: {exc}", source_uri=uri)
        return
    schema = parquet.schema_arrow
    layout = _image_layout(schema, image_column)
    if layout is None or (key_column and key_column not in schema.names):
        yield R.error_row(
            R.READ, R.SCHEMA_MISMATCH,
            f"expected column {image_column!r} of binary or struct<bytes: binary, path: string>"
            + (f" and key column {key_column!r}" if key_column else "")
            + f"; file has {schema}", source_uri=uri)
        return
    columns = [image_column] + ([key_column] if key_column else [])
    row = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        images = batch.column(image_column)
        keys = batch.column(key_column).to_pylist() if key_column else None
        if layout == "struct":
            paths = images.field("path").to_pylist() if images.type.get_field_index(
                "path") >= 0 else None
            data = images.field("bytes").to_pylist()
            valid = images.is_valid().to_pylist()
            data = [d if ok else None for d, ok in zip(data, valid)]
        else:
            paths, data = None, images.to_pylist()
        for i, blob in enumerate(data):
            key = str(keys[i]) if keys else (paths[i] if paths and paths[i] else str(row))
            locator = f"row:{row}"
            row += 1
            if blob is None:
                yield R.error_row(R.READ, R.MISSING_BYTES, f"row {row - 1} has no image bytes",
                                  source_uri=uri, key=key,
                                  record_id=R.make_record_id(uri, locator))
                continue
            yield R.new_record(uri, locator, key, blob)
