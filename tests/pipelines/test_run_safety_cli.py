"""The run folder's safety through the whole CLI: run ids, two runs at once, failed runs,
`clipdedup clean`, and readers of a published run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipelines import cli, jobs
from pipelines.config import Config
from tests.conftest import encode, random_image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _main(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.exit_code(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("clipdedup: error:")]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("images")
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes(encode(random_image(i, (96, 80))))
    (folder / "copy-of-0.jpg").write_bytes((folder / "0.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes((folder / "1.jpg").read_bytes()[:150])
    return str(folder)


@pytest.mark.parametrize("run_id", [".", "..", "a/b", "/abs", "", "_staging-x", ".x",
                                    "../out"])
def test_a_run_id_that_is_a_path_is_refused_before_anything_is_created(
        tmp_path, monkeypatch, capsys, run_id):
    sibling = tmp_path / "out" / "published"
    sibling.mkdir(parents=True)
    (sibling / "_SUCCESS").write_text("{}")
    output = tmp_path / "out" / "runs"
    code, _, err = _main(monkeypatch, capsys, "run", "--input", str(tmp_path / "none"),
                         "--output", str(output), "--run-id", run_id, "-q")
    assert code == 2
    (line,) = _error_lines(err)
    assert "invalid run id" in line and "one plain name" in line
    assert not output.exists() and sorted(os.listdir(tmp_path / "out")) == ["published"]
    assert os.listdir(sibling) == ["_SUCCESS"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_run_that_fails_before_writing_anything_leaves_nothing(tmp_path, monkeypatch):
    def fails(*_):
        raise ValueError("the model cannot be loaded")

    monkeypatch.setattr(jobs, "_embed", fails)
    monkeypatch.setattr(jobs, "resolve_model", lambda config: None)  # checked elsewhere
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jpg").write_bytes(b"not read")
    output = tmp_path / "out"
    with pytest.raises(ValueError, match="cannot be loaded") as err:
        jobs.execute(Config(inputs=(str(data),), output=str(output), run_id="r"), [])
    assert not getattr(err.value, "__notes__", None)
    assert os.listdir(output) == []  # no staging, no lock, no write probe


def test_a_failed_run_keeps_its_staging_and_says_where_and_how_to_clean(
        images, tiny_model, tmp_path, monkeypatch, capsys):
    out = str(tmp_path)
    code, _, err = _main(monkeypatch, capsys, "embed", "--input", images, "--model", tiny_model,
                         "--output", out, "--run-id", "r", "--max-error-fraction", "0", "-q")
    assert code == 2
    (line,) = _error_lines(err)
    staging = os.path.join(out, "_staging-r")
    assert "broken.jpg" in line and f"kept in {staging}" in line
    assert f"clipdedup clean --output {out} --run-id r" in line
    assert pq.read_table(os.path.join(staging, "errors.parquet")).num_rows == 1
    assert sorted(os.listdir(out)) == ["_staging-r"]  # the lock was released

    code, printed, _ = _main(monkeypatch, capsys, "clean", "--output", out)
    assert code == 0 and printed.splitlines() == [f"removed {staging}"]
    assert os.listdir(out) == []


def test_clean_force_needs_a_run_id(tmp_path, monkeypatch, capsys):
    code, _, err = _main(monkeypatch, capsys, "clean", "--output", str(tmp_path), "--force")
    assert code == 2 and "--force needs --run-id" in _error_lines(err)[0]


def _cli(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "-q", *argv], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def two_runs(images, tiny_model, tmp_path_factory):
    """Two CLI runs with one run id started together; returns (procs, outputs, folder)."""
    out = str(tmp_path_factory.mktemp("together"))
    argv = ("run", "--input", images, "--model", tiny_model, "--output", out,
            "--run-id", "same", "--max-error-fraction", "0.5")
    procs = [_cli(*argv), _cli(*argv)]
    results = [p.communicate(timeout=600) for p in procs]
    return procs, results, out


def test_two_runs_with_one_run_id_exactly_one_publishes(two_runs):
    procs, results, out = two_runs
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], results
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    (line,) = _error_lines(results[loser][1])
    assert f"run id same is in use: locked by pid {procs[winner].pid} on host" in line
    assert "command: " in line and "--run-id same" in line
    assert sorted(os.listdir(out)) == ["same"]  # no staging, no lock left


def test_the_published_run_is_complete(two_runs):
    out = two_runs[2]
    run = os.path.join(out, "same")
    summary = json.loads(open(os.path.join(run, "summary.json")).read())
    success = json.loads(open(os.path.join(run, "_SUCCESS")).read())
    c = summary["counts"]
    assert success["run_id"] == "same" and success["counts"] == c
    shards = pq.read_table(os.path.join(run, "shards.parquet"))
    assert c["records_read"] == sum(shards.column("records_read").to_pylist()) == 8
    assert c["embedded"] == pq.read_table(os.path.join(run, "embeddings")).num_rows == 6
    assert c["record_errors"] == pq.read_table(os.path.join(run, "errors.parquet")).num_rows == 1
    assert c["exact_copies_not_embedded"] == pq.read_table(
        os.path.join(run, "exact_duplicates.parquet")).num_rows == 1
    assert c["kept"] + c["dropped"] == c["embedded"] + c["exact_copies_not_embedded"]


def test_readers_read_a_published_run_as_documented(two_runs, tmp_path, monkeypatch):
    """The README's incantations: pandas and DuckDB on the tables, `datasets` on a table
    (`data_dir` must name the embeddings folder: a run folder holds several tables)."""
    import datasets
    import duckdb
    import pandas as pd

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = os.path.join(two_runs[2], "same")
    counts = json.loads(open(os.path.join(run, "_SUCCESS")).read())["counts"]
    assert len(pd.read_parquet(os.path.join(run, "embeddings"))) == 6
    assert len(pd.read_parquet(os.path.join(run, "keep.parquet"))) == counts["kept"]
    assert duckdb.sql(f"select count(*) from '{run}/embeddings/*.parquet'").fetchall() == [(6,)]
    cache = str(tmp_path / "hf")
    emb = datasets.load_dataset("parquet", data_dir=os.path.join(run, "embeddings"),
                                cache_dir=cache)
    assert emb["train"].num_rows == 6 and "embedding" in emb["train"].column_names
    # One table per call: keep and drop have different columns, and `datasets`
    # wants the same columns in every split of one load.
    keep = datasets.load_dataset("parquet", cache_dir=cache,
                                 data_files={"keep": os.path.join(run, "keep.parquet")})
    drop = datasets.load_dataset("parquet", cache_dir=cache,
                                 data_files={"drop": os.path.join(run, "drop.parquet")})
    assert keep["keep"].num_rows == counts["kept"]
    assert drop["drop"].num_rows == counts["dropped"]
