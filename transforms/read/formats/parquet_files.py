"""Reader for Parquet files with an image-bytes column.

Accepts the column as plain `binary`/`large_binary` or in the Hugging Face
`datasets` Image layout `struct<bytes: binary, path: string>`. The schema is
checked per file (a dataset can mix files written by different tools); a file
whose image column is missing, repeated or of another type is reported whole
as `schema_mismatch`.

Rows are read in batches of at most `BATCH_BYTES` of data (estimated from the
row group's metadata), so memory stays bounded. Arrow cannot put more than
2 GiB into one binary array of a struct column (`Nested data conversions not
implemented for chunked array outputs`); when a batch fails to decode, the
rest of its row group is read again row by row, so a bad page costs only the
rows it holds: those become `corrupt` error rows, one per row. An `OSError`
from the file object itself is a storage failure and propagates (see
`storage`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from transforms import records as R
from transforms.read.formats.storage import reraise_storage_failure, storage_file

BATCH_ROWS = 256
BATCH_BYTES = 64 << 20
# What pyarrow raises for bytes it holds that do not decode: a corrupt page
# (`OSError: Couldn't deserialize thrift`), a cut footer (`ArrowInvalid`), a
# batch too large for one array (`ArrowNotImplementedError`).
_DECODING_ERRORS = (OSError, pa.ArrowException)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _schema_problem(schema: pa.Schema, column: str, key_column: str | None) -> str | None:
    for name in [column] + ([key_column] if key_column else []):
        n = len(schema.get_all_field_indices(name))
        if n != 1:
            return f"column {name!r} appears {n} times"
    t = schema.field(column).type
    if _is_binary(t):
        return None
    if not pa.types.is_struct(t) or t.get_field_index("bytes") < 0 or not _is_binary(
            t.field("bytes").type):
        return f"column {column!r} is {t}"
    if t.get_field_index("path") >= 0 and not (pa.types.is_string(t.field("path").type) or
                                               pa.types.is_large_string(t.field("path").type)):
        return f"the struct's path is {t.field('path').type}, not a string"
    return None


def _batch_rows(row_group: pq.RowGroupMetaData) -> int:
    per_row = row_group.total_byte_size / max(row_group.num_rows, 1)
    return int(max(1, min(BATCH_ROWS, BATCH_BYTES // max(per_row, 1))))


def _batches(parquet: pq.ParquetFile, group: int, rows: int, columns: list[str],
             skip: int) -> Iterator[pa.RecordBatch]:
    """Batches of row group `group`, without its first `skip` rows."""
    for batch in parquet.iter_batches(batch_size=rows, row_groups=[group], columns=columns):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip)
        skip = 0


def _records(uri: str, batch: pa.RecordBatch, first_row: int, image_column: str,
             key_column: str | None) -> Iterator[R.ImageRecord | dict[str, Any]]:
    images = batch.column(image_column)
    keys = batch.column(key_column).to_pylist() if key_column else None
    paths = None
    if pa.types.is_struct(images.type):
        if images.type.get_field_index("path") >= 0:
            paths = images.field("path").to_pylist()
        valid = images.is_valid().to_pylist()
        data = [d if ok else None for d, ok in zip(images.field("bytes").to_pylist(), valid)]
    else:
        data = images.to_pylist()
    for i, blob in enumerate(data):
        row = first_row + i
        key = str(keys[i]) if keys else (paths[i] if paths and paths[i] else str(row))
        if blob is None:
            yield R.error_row(R.READ, R.MISSING_BYTES, f"row {row} has no image bytes",
                              source_uri=uri, key=key,
                              record_id=R.make_record_id(uri, f"row:{row}"))
            continue
        yield R.new_record(uri, f"row:{row}", key, blob)


def read_parquet_file(uri: str, fileobj: IO[bytes], image_column: str = "image",
                      key_column: str | None = None) -> Iterator[R.ImageRecord | dict[str, Any]]:
    """Yields one record per row with image bytes, and error rows.

    The key of a row is `key_column`'s value when given, else the HF struct's
    `path` when present, else the row number.
    """
    f = storage_file(fileobj)
    if not f.read(1):
        yield R.error_row(R.READ, R.EMPTY_FILE, "zero bytes", source_uri=uri)
        return
    f.seek(0)
    try:
        parquet = pq.ParquetFile(f)
    except _DECODING_ERRORS as exc:
        reraise_storage_failure(f)
        yield R.error_row(R.READ, R.CORRUPT, f"not a readable Parquet file: {exc}", source_uri=uri)
        return
    schema = parquet.schema_arrow
    problem = _schema_problem(schema, image_column, key_column)
    if problem:
        yield R.error_row(
            R.READ, R.SCHEMA_MISMATCH,
            f"{problem}: expected one column {image_column!r} of binary or struct<bytes: "
            "binary, path: string>" + (f" and one key column {key_column!r}" if key_column else "")
            + f"; file has {schema}", source_uri=uri)
        return
    columns = [image_column] + ([key_column] if key_column else [])
    first = 0  # the row group's first row in the file
    for group in range(parquet.num_row_groups):
        n = parquet.metadata.row_group(group).num_rows
        done = 0
        for rows in dict.fromkeys((_batch_rows(parquet.metadata.row_group(group)), 1)):
            try:
                for batch in _batches(parquet, group, rows, columns, done):
                    yield from _records(uri, batch, first + done, image_column, key_column)
                    done += batch.num_rows
                break
            except _DECODING_ERRORS as exc:
                reraise_storage_failure(f)
                failure = exc
        else:
            for row in range(first + done, first + n):
                yield R.error_row(R.READ, R.CORRUPT, f"row {row} does not decode: {failure}",
                                  source_uri=uri, key=str(row),
                                  record_id=R.make_record_id(uri, f"row:{row}"))
        first += n
