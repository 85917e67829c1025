"""Opening a Parquet file of any Beam filesystem without a Python file object.

Arrow reads a Python file object on its IO threads, which take the GIL to
release the buffers; one still doing so while the interpreter exits aborts
the process ("terminate called without an active exception",
docs/reliability.md). Local files are opened natively. A remote file is
copied to a local temporary file in chunks and opened natively from there,
so memory holds a chunk, not the file (a part file of a pair table on
`gs://` can be larger than the launcher's memory); where only the footer is
needed (row counts, the schema), `parquet_footer` reads the file's tail.
"""

from __future__ import annotations

import shutil
import struct
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

COPY_CHUNK_BYTES = 8 << 20
_MAGIC = b"PAR1"


def _is_remote(path: str) -> bool:
    return "://" in path


def _open_remote(path: str):
    # Parquet files are never compressed as a whole; AUTO would guess from the name.
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_parquet(path: str) -> pq.ParquetFile:
    """A Parquet file of a local path or any Beam filesystem."""
    if not _is_remote(path):
        return pq.ParquetFile(path)
    with tempfile.NamedTemporaryFile(prefix="clipdedup-", suffix=".parquet") as local:
        with _open_remote(path) as remote:
            shutil.copyfileobj(remote, local, COPY_CHUNK_BYTES)
        local.flush()
        # Arrow keeps its own handle open: the name can go when `local` closes.
        return pq.ParquetFile(local.name)


def parquet_footer(path: str) -> pq.FileMetaData:
    """The footer (row counts, row groups, schema) of a Parquet file, read from its tail.

    A file that is not Parquet is a ValueError naming it (bad input, not a bug).
    """
    try:
        if not _is_remote(path):
            return pq.read_metadata(path)
        return pq.read_metadata(pa.BufferReader(_remote_tail(path)))
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: not a Parquet file ({exc})") from exc


def _remote_tail(path: str) -> bytes:
    """The footer and its trailer behind a leading magic: all Arrow needs to parse it."""
    size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    if size < 12:
        raise ValueError(f"{path}: not a Parquet file ({size} bytes)")
    with _open_remote(path) as f:
        f.seek(size - 8)
        end = f.read(8)
        length = struct.unpack("<I", end[:4])[0]
        if end[4:] != _MAGIC or length + 12 > size:
            raise ValueError(f"{path}: not a Parquet file (no footer)")
        f.seek(size - 8 - length)
        footer = f.read(length)
    return _MAGIC + footer + end


def parquet_schema(path: str) -> pa.Schema:
    """The Arrow schema of a Parquet file, from its footer."""
    return parquet_footer(path).schema.to_arrow_schema()
