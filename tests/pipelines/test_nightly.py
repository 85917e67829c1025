"""Incremental nights (`clipdedup run --incremental`) against full runs on the same inputs.

One chain of nights over a growing folder of tar shards, each night beside a
full run of the same files (exact mode):
    n1: A (a full run: nothing published yet)
    n2: A + B (B has a new image, a byte copy of an old one, an edit of an old one)
    n3: A + B - a1.tar + C (C holds a byte copy of an image that left with a1.tar;
        p0.parquet another)
    n4: a0.tar rewritten
then, on n4: a night with another model, one with a lowered threshold, and one
killed mid-way.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import exit_code
from pipelines.previous_run import latest_published
from tests.conftest import encode, random_image, write_parquet_images, write_tar

MINING = ["--mode", "exact", "--duplicate-threshold", "0.995", "--near-duplicate-threshold",
          "0.97", "--max-error-fraction", "0.3", "-q"]
PAIR_TABLES = ("duplicates", "near_duplicates")


def _jpg(seed: int, size=(96, 64)) -> bytes:
    return encode(random_image(seed, size))


def _run(data, out, run_id, model, *extra) -> dict:
    assert exit_code(["run", "--input", str(data), "--output", str(out), "--run-id", run_id,
                      "--model", model, *MINING, *extra]) == 0
    return json.loads((out / run_id / "summary.json").read_text())


def _table(run, name) -> pd.DataFrame:
    path = run / name if name == "embeddings" else run / f"{name}.parquet"
    return pd.read_parquet(path)


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys).reset_index(drop=True)


def assert_same_tables(night, full) -> None:
    """Every table of two run folders equal (floats to a tolerance: other batches and
    tiles may change the last bits), and the counts of their summaries."""
    keys = {"embeddings": ["record_id"], "errors": ["source_uri", "record_id", "reason"],
            "shards": ["source_uri"], "exact_duplicates": ["record_id_b"],
            "duplicates": ["record_id_a", "record_id_b"],
            "near_duplicates": ["record_id_a", "record_id_b"],
            "groups": ["record_id"], "keep": ["record_id"], "drop": ["record_id"],
            "skipped": ["source_uri"]}
    for name, by in keys.items():
        a, b = _sorted(_table(night, name), by), _sorted(_table(full, name), by)
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b), name
        for column in a.columns:
            if column == "embedding":
                assert np.allclose(np.stack(a[column]), np.stack(b[column]), atol=1e-5)
            elif a[column].dtype.kind == "f":
                assert np.allclose(a[column], b[column], atol=1e-5), (name, column)
            else:
                assert a[column].tolist() == b[column].tolist(), (name, column)
    for text in ("keep.txt", "drop.txt"):
        assert sorted((night / text).read_text().splitlines()) == sorted(
            (full / text).read_text().splitlines())
    counts = [json.loads((r / "summary.json").read_text())["counts"] for r in (night, full)]
    tonight = ("files_read", "images_embedded")  # a night's own work, beside the totals
    assert {k: v for k, v in counts[0].items() if k not in tonight} == counts[1]


@pytest.fixture(scope="module")
def nights(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("nightly")
    data, out, full = root / "data", root / "out", root / "full"
    data.mkdir()
    j = {i: _jpg(i) for i in range(12)}
    write_tar(str(data / "a0.tar"), [(f"{i}.jpg", j[i]) for i in range(3)])
    write_tar(str(data / "a1.tar"), [(f"{i}.jpg", j[i]) for i in range(3, 6)])
    (data / "a2.jpg").write_bytes(j[6])
    (data / "broken.jpg").write_bytes(j[7][:150])  # a carried error row
    write_parquet_images(str(data / "p0.parquet"), [j[11], j[3]])  # j[3] is in a1.tar too
    runs = {"n1": _run(data, out, "n1", tiny_model, "--incremental")}

    write_tar(str(data / "b0.tar"), [("new.jpg", j[8]), ("copy-of-0.jpg", j[0]),
                                     ("edit-of-1.jpg", encode(random_image(1, (80, 60)))),
                                     ("new-again.jpg", j[8])])
    runs["n2"] = _run(data, out, "n2", tiny_model, "--incremental")
    runs["f2"] = _run(data, full, "f2", tiny_model)

    gone = [r for r in _table(out / "n2", "embeddings").itertuples()
            if r.source_uri.endswith("a1.tar")]
    os.remove(data / "a1.tar")
    write_tar(str(data / "c0.tar"), [("copy-of-4.jpg", j[4]), ("new.jpg", j[9])])
    runs["n3"] = _run(data, out, "n3", tiny_model, "--incremental")
    runs["f3"] = _run(data, full, "f3", tiny_model)

    write_tar(str(data / "a0.tar"), [("0.jpg", j[0]), ("1.jpg", j[10]), ("2.jpg", j[2])])
    stat = os.stat(data / "a0.tar")  # same size; make sure the stamp moves too
    os.utime(data / "a0.tar", (stat.st_atime, stat.st_mtime + 10))
    runs["n4"] = _run(data, out, "n4", tiny_model, "--incremental")
    runs["f4"] = _run(data, full, "f4", tiny_model)
    return {"data": data, "out": out, "full": full, "runs": runs, "gone": gone, "j": j}


def test_night2_embeds_only_the_new_content_and_reads_no_unchanged_file(nights):
    night = nights["runs"]["n2"]["incremental"]
    assert night["previous_run_id"] == "n1"
    assert not night["reembedded_in_full"] and not night["remined_in_full"]
    # b0.tar only; two distinct new images (the new one twice, the edit); the byte
    # copy of an old image reuses its vector
    assert night["files_read"] == 1 and night["files_carried"] == 5
    assert night["embedded"] == 2
    counts = nights["runs"]["n2"]["counts"]
    assert (counts["files_read"], counts["images_embedded"]) == (1, 2)
    assert nights["runs"]["n1"]["incremental"]["reembed_reason"] == "no previous run"


def test_night2_tables_equal_a_full_run(nights):
    assert_same_tables(nights["out"] / "n2", nights["full"] / "f2")
    pairs = sum(len(_table(nights["out"] / "n2", t)) for t in PAIR_TABLES)
    night = nights["runs"]["n2"]["incremental"]
    assert night["pairs_carried"] > 0 and night["pairs_new"] > 0
    assert night["pairs_carried"] + night["pairs_new"] == pairs


def test_a_nights_embeddings_folder_reads_as_one_table(nights, tmp_path, monkeypatch):
    """Its carried rows (`carried-*.parquet`) and newly embedded rows (`part-*.parquet`)
    have one schema: pandas, DuckDB and `datasets` read the folder as the README says."""
    import datasets
    import duckdb
    import pyarrow.parquet as pq

    folder = nights["out"] / "n2" / "embeddings"
    names = sorted(p.name for p in folder.glob("*.parquet"))
    assert any(n.startswith("carried") for n in names) and any(n.startswith("part") for n in names)
    assert len({pq.read_schema(folder / n) for n in names}) == 1
    rows = len(_table(nights["full"] / "f2", "embeddings"))
    assert len(pd.read_parquet(folder)) == rows
    assert duckdb.sql(f"select count(*) from '{folder}/*.parquet'").fetchall() == [(rows,)]
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = datasets.load_dataset("parquet", data_dir=str(folder), cache_dir=str(tmp_path))
    assert loaded["train"].num_rows == rows


def test_byte_copy_of_an_old_image_is_an_exact_copy(nights):
    run = nights["out"] / "n2"
    groups = _table(run, "groups")
    sha0 = hashlib.sha256(nights["j"][0]).hexdigest()
    exact = _table(run, "exact_duplicates")
    pair = exact[exact["sha256"] == sha0]
    assert len(pair) == 1
    uris = {pair.iloc[0]["source_uri_a"], pair.iloc[0]["source_uri_b"]}
    assert {os.path.basename(u) for u in uris} == {"a0.tar", "b0.tar"}
    copy = groups[groups["record_id"] == pair.iloc[0]["record_id_b"]]
    assert copy["kind"].tolist() == ["exact_copy"]
    assert not any(set(p) == set(pair.iloc[0][["record_id_a", "record_id_b"]])
                   for t in PAIR_TABLES
                   for p in _table(run, t)[["record_id_a", "record_id_b"]].itertuples(index=False))


def test_three_chained_nights_equal_full_runs(nights):
    assert_same_tables(nights["out"] / "n3", nights["full"] / "f3")
    night = nights["runs"]["n3"]["incremental"]
    assert night["files_gone"] == 1 and night["files_read"] == 1
    assert night["embedded"] == 1  # the copy of an image that left reuses its vector


def test_a_removed_shards_records_leave_every_table(nights):
    run = nights["out"] / "n3"
    gone_ids = {r.record_id for r in nights["gone"]}
    assert gone_ids
    for name in ("embeddings", "errors", "shards", "exact_duplicates", "groups", "keep",
                 "drop", *PAIR_TABLES):
        table = _table(run, name)
        for column in table.columns:
            if column.startswith(("source_uri", "keeper_source_uri")):
                assert not table[column].fillna("").str.endswith("a1.tar").any(), (name, column)
            if column.startswith(("record_id", "keeper_id")):
                assert not set(table[column]) & gone_ids, (name, column)
    for text in ("keep.txt", "drop.txt"):
        assert "a1.tar" not in (run / text).read_text()


def test_a_rewritten_file_is_read_again(nights):
    night = nights["runs"]["n4"]["incremental"]
    assert night["files_read"] == 1 and night["embedded"] == 1  # j[10] is new content
    assert_same_tables(nights["out"] / "n4", nights["full"] / "f4")


def test_a_model_change_embeds_everything_again(nights, tmp_path, caplog):
    from tools.stand_in import write_stand_in

    other = write_stand_in(str(tmp_path / "other-model"), "tiny")
    summary = _run(nights["data"], nights["out"], "n5", other, "--previous",
                   str(nights["out"] / "n4"))
    night = summary["incremental"]
    assert night["reembedded_in_full"] and night["remined_in_full"]
    assert "model" in night["reembed_reason"]
    distinct = len(_table(nights["out"] / "n5", "embeddings"))
    assert night["embedded"] == distinct == summary["counts"]["embedded"]
    assert night["files_read"] == summary["counts"]["files"] and night["files_carried"] == 0
    _run(nights["data"], tmp_path / "full", "f5", other)
    assert_same_tables(nights["out"] / "n5", tmp_path / "full" / "f5")


def test_a_lowered_threshold_mines_every_pair_again(nights, tmp_path, tiny_model):
    lower = ["--near-duplicate-threshold", "0.95"]
    summary = _run(nights["data"], nights["out"], "n6", tiny_model,
                   "--previous", str(nights["out"] / "n4"), *lower)
    night = summary["incremental"]
    assert night["remined_in_full"] and "lowered" in night["remine_reason"]
    assert not night["reembedded_in_full"] and night["files_read"] == 0
    _run(nights["data"], tmp_path / "full", "f6", tiny_model, *lower)
    assert_same_tables(nights["out"] / "n6", tmp_path / "full" / "f6")


def _files(folder) -> dict[str, str]:
    return {os.path.relpath(os.path.join(d, f), folder):
            hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, names in os.walk(folder) for f in names}


def test_a_killed_night_leaves_the_history_as_it_was(nights, tiny_model, monkeypatch):
    from transforms.mine import incremental

    out = nights["out"]
    last = latest_published(str(out))
    before = _files(out)

    def killed(self, *args, **kwargs):
        raise RuntimeError("killed mid-run (injected)")

    monkeypatch.setattr(incremental._MineNewFn, "process", killed)
    assert exit_code(["run", "--input", str(nights["data"]), "--output", str(out),
                      "--run-id", "k1", "--model", tiny_model, "--incremental", *MINING]) != 0
    monkeypatch.undo()
    after = _files(out)
    assert {k: v for k, v in after.items() if not k.startswith("_staging-k1")} == before
    assert not (out / "k1").exists()
    assert latest_published(str(out)) == last

    summary = _run(nights["data"], out, "k2", tiny_model, "--incremental")
    assert summary["incremental"]["previous"] == last
    assert_same_tables(out / "k2", nights["full"] / "f4")  # the inputs of n4, unchanged


def test_a_night_on_an_object_store(tiny_model, tmp_path):
    """The previous run on a gs://-like store: found, read and built on through Beam's
    FileSystems only (`memgs://` has no folders and no local paths)."""
    from pipelines.config import Config
    from pipelines.jobs import execute
    from pipelines.run_folder import read_table
    from tests.pipelines import object_store  # noqa: F401 - registers memgs://

    out = "memgs://bucket/nightly"
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(_jpg(20 + i))
    config = Config(inputs=(str(tmp_path),), model=tiny_model, output=out, mode="exact")
    first = execute(config.replace(run_id="g1"), [], incremental=True)
    (tmp_path / "3.jpg").write_bytes(_jpg(23))
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "0.jpg").read_bytes())
    second = execute(config.replace(run_id="g2"), [], incremental=True)
    night = second["incremental"]
    assert night["previous"] == first["run_folder"]
    assert (night["files_read"], night["files_carried"], night["embedded"]) == (2, 3, 1)
    assert read_table(f"{second['run_folder']}/embeddings").num_rows == 4
    assert read_table(f"{second['run_folder']}/exact_duplicates.parquet").num_rows == 1
    assert not [p for p in object_store.OBJECTS if "_incremental" in p]


def _empty_run(folder) -> str:
    """A published-looking run folder of empty tables (enough to build the graphs)."""
    import pyarrow.parquet as pq

    from transforms import schemas

    (folder / "embeddings").mkdir(parents=True)
    pq.write_table(schemas.embeddings_schema(512).empty_table(),
                   str(folder / "embeddings" / "part-0.parquet"))
    for name, schema in (("shards", schemas.SHARDS_SCHEMA), ("errors", schemas.ERRORS_SCHEMA),
                         ("exact_duplicates", schemas.EXACT_DUPLICATES_SCHEMA),
                         ("duplicates", schemas.PAIRS_SCHEMA),
                         ("near_duplicates", schemas.PAIRS_SCHEMA)):
        pq.write_table(schema.empty_table(), str(folder / f"{name}.parquet"))
    return str(folder)


def test_incremental_graphs_translate_for_dataflow(tmp_path):
    import pyarrow.parquet as pq
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines import embed_pipeline, mine_pipeline
    from tests.pipelines.test_dataflow_graph import (
        DRY_RUN,
        STAGING,
        _config,
        _dry_run,
        _labels,
    )
    from transforms.schemas import RECORD_IDS_SCHEMA

    previous = _empty_run(tmp_path / "previous")
    options = PipelineOptions(DRY_RUN + ["--sdk_location=container"])
    proto, _ = _dry_run(embed_pipeline.build_pipeline(_config(), STAGING, 512, options,
                                                      previous=previous))
    assert {"SplitUnchangedFiles", "ReadPreviousEmbeddings", "ReuseEmbeddings",
            "OnlyUnseenContent", "WriteNewIds", "WriteNotCarriedIds", "CarryVectors"} <= _labels(proto)
    ids = str(tmp_path / "ids.parquet")  # the embed job's id tables
    pq.write_table(RECORD_IDS_SCHEMA.empty_table(), ids)
    pipeline = mine_pipeline.build_pipeline(
        _config().replace(mode="exact"), f"{STAGING}/embeddings/*.parquet", STAGING,
        PipelineOptions(DRY_RUN + ["--sdk_location=container"]),
        incremental={"previous": previous, "mode": "exact", "new_ids": ids, "not_carried": ids})
    proto, _ = _dry_run(pipeline)
    assert {"MineNewAgainstAll", "CarryPairs", "WriteDuplicates", "WriteNearDuplicates",
            "WriteStats"} <= _labels(proto)
    pipeline = mine_pipeline.build_pipeline(
        _config().replace(mode="approximate"), f"{STAGING}/embeddings/*.parquet", STAGING,
        PipelineOptions(DRY_RUN + ["--sdk_location=container"]), n_records=1000,
        incremental={"previous": previous, "mode": "approximate", "new_ids": ids,
                     "not_carried": ids, "nprobe": 8, "trained_n": 900, "trained_fit": 0.5})
    proto, _ = _dry_run(pipeline)
    assert {"MineNewApproximate", "WriteDuplicates", "WriteNearDuplicates", "WriteCentroids",
            "WritePartitions", "WriteStats"} <= _labels(proto)
