"""Stage 4: write tables as Parquet with explicit schemas.

Every table is written by Beam's `WriteToParquet` into a folder of part files
inside the run's staging folder; nothing is visible to readers until the run
is published (see `pipelines.run_folder`).
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

PART_PREFIX = "part"
SUFFIX = ".parquet"


def table_dir(staging: str, table: str) -> str:
    """Folder of the part files of `table` inside a staging folder."""
    return FileSystems.join(staging, table)


class WriteTable(beam.PTransform):
    """Dict rows -> Parquet part files `<staging>/<table>/part-SSSSS-of-NNNNN.parquet`.

    Args:
        staging: the run's staging folder.
        table: table name (`embeddings`, `errors`, ...).
        schema: the table's `pyarrow.Schema` (from `transforms.schemas`).
        num_shards: number of part files; 0 lets the runner decide.
    """

    def __init__(self, staging: str, table: str, schema: pa.Schema, num_shards: int = 0):
        super().__init__()
        self._prefix = FileSystems.join(table_dir(staging, table), PART_PREFIX)
        self._schema = schema
        self._num_shards = num_shards

    def expand(self, rows: beam.PCollection[dict]):
        return rows | "WriteParquet" >> beam.io.WriteToParquet(
            self._prefix, schema=self._schema, file_name_suffix=SUFFIX,
            num_shards=self._num_shards)
