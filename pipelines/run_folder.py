"""Run folders: staged while running, checked, then published whole.

A run writes into `<output>/_staging-<run_id>/` (readers skip names that start
with `_`, and Beam's `beam-temp-*` leftovers of a killed attempt stay in
there). When every table is written and the conservation check passes, small
tables are merged into single Parquet files, `summary.json` is written, the
folder becomes `<output>/<run_id>/`, and `_SUCCESS` is written last. A folder
without `_SUCCESS` is never a finished run.
"""

from __future__ import annotations

import json
import os
import shutil

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

SUCCESS = "_SUCCESS"
SUMMARY = "summary.json"


class RunExistsError(RuntimeError):
    """The run folder is already published; pass --overwrite to replace it."""


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def part_files(folder: str) -> list[str]:
    """Parquet part files directly inside `folder` (Beam temp folders excluded), sorted."""
    pattern = FileSystems.join(folder, "*.parquet")
    if not FileSystems.exists(folder):
        return []
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_table(folder_or_file: str, columns: list[str] | None = None):
    """Reads a table written as one Parquet file or as a folder of part files."""
    import pyarrow as pa

    paths = part_files(folder_or_file) or [folder_or_file]
    if not FileSystems.exists(paths[0]):
        raise FileNotFoundError(f"no Parquet files at {folder_or_file}")
    tables = []
    for path in paths:
        with FileSystems.open(path) as f:
            tables.append(pq.read_table(f, columns=columns))
    return pa.concat_tables(tables)


class RunFolder:
    """The staging and final folders of one run."""

    def __init__(self, output: str, run_id: str):
        self.output = output
        self.run_id = run_id
        self.final = FileSystems.join(output, run_id)
        self.staging = FileSystems.join(output, f"_staging-{run_id}")

    def path(self, name: str) -> str:
        return FileSystems.join(self.staging, name)

    def start(self, overwrite: bool = False) -> None:
        """Checks the run is new (or may be replaced) and makes an empty staging folder."""
        if FileSystems.exists(FileSystems.join(self.final, SUCCESS)) and not overwrite:
            raise RunExistsError(
                f"{self.final} is a published run; choose another --run-id or pass --overwrite")
        self._delete(self.staging)  # leftovers of a killed attempt are never reused
        FileSystems.mkdirs(self.staging)

    def merge_parts(self, table: str, schema) -> str:
        """Merges the part files of `table` into `<table>.parquet`, streaming row groups."""
        folder = self.path(table)
        target = self.path(f"{table}.parquet.tmp")
        with FileSystems.create(target) as sink, pq.ParquetWriter(sink, schema) as writer:
            for path in part_files(folder):
                with FileSystems.open(path) as f:
                    part = pq.ParquetFile(f)
                    for i in range(part.num_row_groups):
                        writer.write_table(part.read_row_group(i).cast(schema))
        self._delete(folder)
        FileSystems.rename([target], [self.path(f"{table}.parquet")])
        return self.path(f"{table}.parquet")

    def publish(self, summary: dict, overwrite: bool = False) -> str:
        """Writes summary.json, moves staging to the final folder, then `_SUCCESS`."""
        with FileSystems.create(self.path(SUMMARY)) as f:
            f.write(json.dumps(summary, indent=2, sort_keys=True, default=str).encode())
        if FileSystems.exists(self.final):
            if not overwrite and FileSystems.exists(FileSystems.join(self.final, SUCCESS)):
                raise RunExistsError(f"{self.final} was published while this run was running")
            self._delete(self.final)
        if _is_local(self.staging):
            os.replace(self.staging, self.final)
        else:
            prefix = self.staging.rstrip("/") + "/"
            sources = [m.path for m in
                       FileSystems.match([prefix + "**"])[0].metadata_list]
            FileSystems.rename(sources, [self.final.rstrip("/") + "/" + s[len(prefix):]
                                         for s in sources])
        with FileSystems.create(FileSystems.join(self.final, SUCCESS)) as f:
            f.write(b"")
        return self.final

    @staticmethod
    def _delete(path: str) -> None:
        if _is_local(path):
            shutil.rmtree(path, ignore_errors=True)
        elif FileSystems.exists(path):
            FileSystems.delete([path])
