"""The launcher after the embed job: it reads `_checks.json`, no per-record table.

On Dataflow the launcher is a laptop; its memory must not grow with the
number of records. Every Parquet read in this process during `execute` is
spied on (the local runner's workers run here too, and read no Parquet when
the inputs are images and tar shards).
"""

from __future__ import annotations

import json
import os

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines import jobs, run_folder
from pipelines.checks import RunCheckError
from pipelines.config import load_config
from tests.conftest import encode, random_image, write_tar
from transforms import run_checks

SMALL_TABLES = ("errors", "shards", "exact_duplicates", "skipped")  # merged by the launcher


@pytest.fixture
def config(tmp_path, tiny_model):
    data = tmp_path / "data"
    data.mkdir()
    jpgs = [encode(random_image(i)) for i in range(4)]
    write_tar(str(data / "0.tar"), [(f"{i}.jpg", j) for i, j in enumerate(jpgs)])
    (data / "copy.jpg").write_bytes(jpgs[0])
    (data / "broken.jpg").write_bytes(jpgs[1][:100])
    (data / "notes.txt").write_text("not an input")
    return load_config(None).replace(inputs=[str(data)], model=tiny_model,
                                     output=str(tmp_path / "out"), batch_size=8,
                                     max_error_fraction=0.5)


def _spy_parquet_reads(monkeypatch) -> list[tuple[str, str]]:
    reads: list[tuple[str, str]] = []
    real_file, real_read, real_dataset = pq.ParquetFile, pq.read_table, ds.dataset
    real_run_folder_read = run_folder.read_table

    class SpiedParquetFile(real_file):
        def __init__(self, source, *args, **kwargs):
            reads.append(("ParquetFile", str(source)))
            super().__init__(source, *args, **kwargs)

    def spy(name, real):
        def wrapper(source, *args, **kwargs):
            reads.append((name, str(source)))
            return real(source, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(pq, "ParquetFile", SpiedParquetFile)
    monkeypatch.setattr(pq, "read_table", spy("pq.read_table", real_read))
    monkeypatch.setattr(ds, "dataset", spy("dataset", real_dataset))
    monkeypatch.setattr(run_folder, "read_table", spy("read_table", real_run_folder_read))
    return reads


def test_launcher_reads_no_per_record_table_after_the_embed_job(config, monkeypatch):
    reads = _spy_parquet_reads(monkeypatch)
    totals_read = []
    real_read_totals = run_checks.read_totals
    monkeypatch.setattr(run_checks, "read_totals",
                        lambda staging: totals_read.append(staging) or real_read_totals(staging))
    summary = jobs.execute(config.replace(run_id="r"), [], mine=False)

    staging = os.path.join(config.output, "_staging-r")
    assert totals_read == [staging]
    assert not [r for r in reads if r[0] != "ParquetFile"]  # no whole-table read at all
    # Only the part files of the small tables, streamed into one file each by merge_parts.
    merged = {os.path.relpath(os.path.dirname(path), staging) for _, path in reads}
    assert merged == set(SMALL_TABLES)
    assert all(os.path.basename(path).startswith("part-") for _, path in reads)

    c = summary["counts"]
    assert (c["records_read"], c["embedded"], c["exact_copies_not_embedded"],
            c["record_errors"], c["shard_errors"]) == (6, 4, 1, 1, 0)
    assert (c["files"], c["files_failed"], c["files_skipped"]) == (3, 0, 1)
    assert c["skipped_by_reason"] == {"not_an_input": 1}
    assert sorted(c["errors_by_reason"]) == list(c["errors_by_reason"])
    published = os.path.join(config.output, "r")
    assert json.load(open(os.path.join(published, "summary.json")))["counts"] == c
    assert not os.path.exists(os.path.join(published, run_checks.CHECKS + ".json"))


@pytest.mark.parametrize("change, match", [
    ({"ids_seen_more_than_once": 1, "repeated_ids": ["x"]}, "1 record_id.s. appear more than once"),
    ({"record_errors": 5, "embedded": 0}, "5 of 6 records failed"),
    ({"files_changed": 1, "changed_files": ["a.jpg"]}, "changed while the run read them"),
])
def test_totals_that_fail_a_check_stop_the_run_and_publish_nothing(config, monkeypatch,
                                                                    change, match):
    """Whatever the job counted, the launcher acts on it: a failed check raises
    and nothing is published (the staging folder keeps `_checks.json`)."""
    real_read_totals = run_checks.read_totals
    monkeypatch.setattr(run_checks, "read_totals",
                        lambda staging: dict(real_read_totals(staging), **change))
    with pytest.raises(RunCheckError, match=match):
        jobs.execute(config.replace(run_id="bad"), [], mine=False)
    assert not os.path.exists(os.path.join(config.output, "bad"))
    assert os.path.exists(os.path.join(config.output, "_staging-bad",
                                       run_checks.CHECKS + ".json"))
