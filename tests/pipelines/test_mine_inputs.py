"""`clipdedup mine` on embeddings made elsewhere, on globs inside a run, on several inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from tools.synthetic import clustered_embeddings
from transforms.schemas import EXACT_DUPLICATES_SCHEMA, embeddings_schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _vectors(n=120, dim=8, seed=5):
    return clustered_embeddings(n, dim, topic_size=40, near_fraction=0.2,
                                duplicate_fraction=0.1, seed=seed)


def _mine(tmp_path, *args, run_id="m", mode="exact"):
    assert cli.run(["-q", "mine", *args, "--output", str(tmp_path / "out"), "--run-id", run_id,
                    "--mode", mode]) == 0
    return tmp_path / "out" / run_id


def _run_folder(root, prefix, n=60, seed=1):
    """A published-run-like folder: embeddings/ (two part files) + exact_duplicates.parquet."""
    x = _vectors(n, seed=seed)
    ids = [f"{prefix}{k:03d}" for k in range(n)]
    table = pa.table({
        "record_id": ids, "source_uri": [f"{root}/{prefix}.tar"] * n,
        "key": [f"{k:03d}" for k in range(n)], "sha256": [f"{prefix}h{k}" for k in range(n)],
        "width": pa.array(np.full(n, 32), pa.int32()), "height": pa.array(np.full(n, 32), pa.int32()),
        "file_size": pa.array(np.arange(n), pa.int64()), "model": ["m"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
    }, schema=embeddings_schema(x.shape[1]))
    os.makedirs(root / "embeddings")
    pq.write_table(table.slice(0, n // 2), root / "embeddings" / "part-00000-of-00002.parquet")
    pq.write_table(table.slice(n // 2), root / "embeddings" / "part-00001-of-00002.parquet")
    copy = f"{prefix}copy"
    pq.write_table(pa.table({
        "record_id_a": [ids[0]], "record_id_b": [copy], "sha256": [f"{prefix}h0"],
        "source_uri_a": [f"{root}/{prefix}.tar"], "key_a": ["000"],
        "source_uri_b": [f"{root}/files/{prefix} copy.jpg"], "key_b": [f"{root}/files/{prefix} copy.jpg"],
    }, schema=EXACT_DUPLICATES_SCHEMA), root / "exact_duplicates.parquet")
    return ids, copy


@pytest.mark.parametrize("layout", ["list<double>", "fixed_size_list<double>"])
def test_a_pandas_table_with_id_and_vector_only(tmp_path, layout):
    """No file_size, width, source_uri: ids and float64 vectors are enough."""
    x = _vectors().astype(np.float64) * 3.0  # not normalised either
    if layout == "list<double>":
        pd.DataFrame({"id": np.arange(len(x)) * 7, "vector": list(x)}).to_parquet(
            tmp_path / "vecs.parquet")
    else:
        pq.write_table(pa.table({"id": np.arange(len(x)) * 7, "vector": pa.FixedSizeListArray
                                 .from_arrays(pa.array(x.reshape(-1)), x.shape[1])}),
                       tmp_path / "vecs.parquet")
    run = _mine(tmp_path, "--embeddings", str(tmp_path / "vecs.parquet"),
                "--id-column", "id", "--embedding-column", "vector")
    keep, drop = pq.read_table(run / "keep.parquet"), pq.read_table(run / "drop.parquet")
    want = sorted(str(7 * k) for k in range(len(x)))
    assert sorted(keep.column("record_id").to_pylist() + drop.column("record_id").to_pylist()) == want
    assert drop.num_rows > 0 and keep.column("source_uri").null_count == keep.num_rows
    summary = json.loads((run / "summary.json").read_text())
    assert summary["groups"]["keeper_rule"] == "record_id"
    assert summary["groups"]["keeper_fields_left_out"] == ["area", "file_size"]
    # each line is the record's id when the table has no source_uri
    assert (run / "keep.txt").read_text().splitlines() == keep.column("record_id").to_pylist()
    # the report too: pandas' NaN for the missing source_uri was read as a file name
    report = (run / "report.html").read_text()
    assert "near_duplicate" in report and ">nan" not in report


@pytest.mark.parametrize("mode", ["exact", "distributed"])
def test_record_id_and_embedding_without_file_size(tmp_path, mode):
    """The reported table: `record_id` and `embedding` only (was: No match for FieldRef file_size)."""
    x = _vectors(60)
    ids = [f"img-{k}" for k in range(len(x))]
    pd.DataFrame({"record_id": ids, "embedding": list(x * 2)}).to_parquet(tmp_path / "e.parquet")
    run = _mine(tmp_path, "--embeddings", str(tmp_path / "e.parquet"), mode=mode)
    keep, drop = pq.read_table(run / "keep.parquet"), pq.read_table(run / "drop.parquet")
    assert sorted(keep.column("record_id").to_pylist() + drop.column("record_id").to_pylist()) \
        == sorted(ids)
    assert drop.num_rows > 0
    reference = _mine(tmp_path, "--embeddings", str(tmp_path / "e.parquet"), run_id="ref")
    assert pq.read_table(reference / "drop.parquet").equals(drop)


def test_missing_columns_fail_in_one_line_naming_them(tmp_path):
    x = _vectors(10)
    pd.DataFrame({"id": [f"a{k}" for k in range(10)], "vector": list(x)}).to_parquet(
        tmp_path / "vecs.parquet")

    def fails(*args):
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "mine", "-q", "--embeddings",
                               str(tmp_path / "vecs.parquet"), "--output", str(tmp_path / "o"),
                               *args], capture_output=True, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("clipdedup: error: ")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        return errors[0]

    assert "no id column 'record_id'" in fails() and "--id-column" in fails()
    assert "no vector column 'embedding'" in fails("--id-column", "id")
    assert "needs column file_size" in fails("--id-column", "id", "--embedding-column", "vector",
                                             "--keeper-rule=-file_size")
    assert not (tmp_path / "o").exists() or not any(
        (tmp_path / "o").glob("*/_SUCCESS"))


def test_a_glob_inside_a_run_keeps_its_exact_copies(tmp_path):
    ids, copy = _run_folder(tmp_path / "run1", "a")
    (tmp_path / "run1" / "_SUCCESS").write_text("{}")
    for n, spec in enumerate(([str(tmp_path / "run1" / "embeddings" / "*.parquet")],
                              [str(tmp_path / "run1")],
                              [str(tmp_path / "run1" / "embeddings" / "part-00000-of-00002.parquet"),
                               str(tmp_path / "run1" / "embeddings" / "part-00001-of-00002.parquet")])):
        run = _mine(tmp_path, *sum((["--embeddings", s] for s in spec), []), run_id=f"m{n}")
        drop = {r["record_id"]: r for r in pq.read_table(run / "drop.parquet").to_pylist()}
        assert drop[copy]["reason"] == "exact_copy"
        assert drop[copy]["source_uri"] == str(tmp_path / "run1" / "files" / "a copy.jpg")
        summary = json.loads((run / "summary.json").read_text())
        assert summary["groups"]["exact_copies"] == 1
        assert summary["groups"]["exact_duplicates_source"] == str(
            tmp_path / "run1" / "exact_duplicates.parquet")
        assert str(tmp_path / "run1" / "files" / "a copy.jpg") in (
            run / "drop.txt").read_text().splitlines()


def test_several_embeddings_are_mined_together(tmp_path):
    ids_a, copy_a = _run_folder(tmp_path / "run1", "a", seed=1)
    ids_b, copy_b = _run_folder(tmp_path / "run2", "b", seed=1)  # same vectors: cross-run pairs
    run = _mine(tmp_path, "--embeddings", str(tmp_path / "run1" / "embeddings"),
                "--embeddings", str(tmp_path / "run2" / "embeddings" / "*.parquet"))
    keep = pq.read_table(run / "keep.parquet").column("record_id").to_pylist()
    drop = pq.read_table(run / "drop.parquet").column("record_id").to_pylist()
    assert sorted(keep + drop) == sorted(ids_a + ids_b + [copy_a, copy_b])
    dup = pq.read_table(run / "duplicates.parquet").to_pylist()
    assert any(p["record_id_a"][0] != p["record_id_b"][0] for p in dup)  # a run1-run2 pair
    assert len(set((run / "keep.txt").read_text().splitlines())) == len(keep)


def test_an_id_in_two_inputs_is_an_error_naming_both(tmp_path):
    _run_folder(tmp_path / "run1", "a")
    os.makedirs(tmp_path / "again")
    os.link(tmp_path / "run1" / "embeddings" / "part-00000-of-00002.parquet",
            tmp_path / "again" / "part.parquet")
    with pytest.raises(ValueError, match=r"id 'a000' \(record_id\) appears twice, in .*again.* and "
                                         r".*run1.*; ids must be unique across all embeddings inputs"):
        cli.run(["-q", "mine", "--embeddings", str(tmp_path / "run1" / "embeddings"),
                 "--embeddings", str(tmp_path / "again"), "--output", str(tmp_path / "out")])


@pytest.mark.parametrize("mode", ["exact", "approximate", "distributed"])
def test_vectors_with_nan_or_infinity_fail_in_one_line_naming_a_record(tmp_path, mode):
    """Such a row scored NaN against all (exact published without it, exit 0) and made
    k-means fail with a faiss traceback (approximate, exit 1)."""
    x = _vectors(40)
    x[3, 2] = np.nan
    x[7] = np.inf
    pd.DataFrame({"record_id": [f"r{k:02d}" for k in range(40)], "embedding": list(x)}
                 ).to_parquet(tmp_path / "e.parquet")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "mine", "-q", "--embeddings",
                           str(tmp_path / "e.parquet"), "--output", str(tmp_path / "o"),
                           "--mode", mode, "--run-id", "r"],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("clipdedup: error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "NaN or infinite" in errors[0] and "'r03'" in errors[0]
    assert not (tmp_path / "o" / "r").exists()
