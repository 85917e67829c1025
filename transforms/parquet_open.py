"""Opening a Parquet file of any Beam filesystem without a Python file object.

Arrow reads a Python file object on its IO threads, which take the GIL to
release the buffers; one still doing so while the interpreter exits aborts
the process ("terminate called without an active exception",
docs/reliability.md). Local files are opened natively; remote ones are read
into memory first.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems


def open_parquet(path: str) -> pq.ParquetFile:
    """A Parquet file of a local path or any Beam filesystem."""
    if "://" not in path:
        return pq.ParquetFile(path)
    with FileSystems.open(path) as f:
        return pq.ParquetFile(pa.BufferReader(f.read()))
