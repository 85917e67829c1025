"""End-to-end reliability: a hostile corpus, retried transient I/O, SIGKILL, reruns.

One clean run of the hostile corpus (`tools/hostile_corpus.py`) is the
reference; the other runs (a retrying runner with injected storage failures
and different output sharding; a rerun after SIGKILL with other parallelism)
must publish the same tables.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.io.filesystems import FileSystems

from pipelines.config import load_config
from pipelines.jobs import execute
from tools import hostile_corpus as hc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def corpus_env(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("hostile")
    corpus = hc.build_corpus(str(root / "data"))
    config_path = str(root / "corpus.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump({"inputs": corpus.inputs, "model": tiny_model,
                        "max_image_pixels": hc.MAX_IMAGE_PIXELS, "max_file_bytes": hc.MAX_FILE_BYTES,
                        "max_error_fraction": 1.0,
                        "batch_size": 8}, f)
    config = load_config(config_path).replace(output=str(root / "out"), run_id="clean")
    clean = execute(config, [])
    return corpus, config, config_path, clean["run_folder"], root


def published_tables(run_folder: str) -> dict[str, list[tuple]]:
    """Every table of a run as sorted rows; embeddings split into ids and vectors."""
    out = {}
    for name in ("errors", "shards", "exact_duplicates", "duplicates", "near_duplicates"):
        table = pq.read_table(os.path.join(run_folder, f"{name}.parquet"))
        rows = [tuple(r.values()) for r in table.to_pylist()]
        out[name] = sorted(rows, key=repr)
    emb = pq.read_table(os.path.join(run_folder, "embeddings")).to_pylist()
    emb.sort(key=lambda r: r["record_id"])
    out["embedding_rows"] = [tuple(v for k, v in r.items() if k != "embedding") for r in emb]
    out["embedding_vectors"] = np.array([r["embedding"] for r in emb], dtype=np.float32)
    return out


def assert_same_tables(a: str, b: str) -> None:
    ta, tb = published_tables(a), published_tables(b)
    for name in ("errors", "shards", "exact_duplicates", "embedding_rows"):
        assert ta[name] == tb[name], name
    np.testing.assert_allclose(ta["embedding_vectors"], tb["embedding_vectors"], atol=1e-5)
    for name in ("duplicates", "near_duplicates"):  # same pairs, scores within tolerance
        assert [r[:2] for r in ta[name]] == [r[:2] for r in tb[name]], name
        np.testing.assert_allclose([r[2] for r in ta[name]], [r[2] for r in tb[name]],
                                   atol=1e-5)


def test_hostile_corpus_every_record_accounted_for(corpus_env):
    corpus, _, _, run_folder, _ = corpus_env
    figures = hc.compare_run(corpus, run_folder)  # raises naming any mismatch
    print("hostile corpus:", figures)
    assert figures["kinds_of_bad_input"] >= 20
    assert figures["records_lost"] == 0 and figures["records_duplicated"] == 0
    assert all(n >= 3 for n in corpus.kinds.values())
    assert os.path.exists(os.path.join(run_folder, "_SUCCESS"))


class _FlakyFile:
    """A file object that raises `exc` once, after `after` bytes were read."""

    def __init__(self, real, exc: Exception, after: int):
        self._real, self._exc, self._left = real, exc, after

    def read(self, n=-1):
        if self._exc is not None and (n < 0 or n >= self._left):
            exc, self._exc = self._exc, None
            raise exc
        data = self._real.read(n)
        self._left -= len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()


def test_transient_read_failures_are_retried_not_dead_lettered(corpus_env, monkeypatch):
    corpus, config, _, clean, _ = corpus_env
    data = os.path.dirname(corpus.inputs[1])
    plan = {  # uri -> exception raised once, and after how many bytes
        os.path.join(data, "tar", "00000.tar"): (ConnectionError("connection reset"), 40_000),
        os.path.join(data, "parquet", "hf-00000.parquet"): (TimeoutError("read timed out"), 0),
    }
    raised = []
    real_open = FileSystems.open

    def flaky_open(path, *args, **kwargs):
        f = real_open(path, *args, **kwargs)
        if path in plan:
            exc, after = plan.pop(path)
            raised.append(path)
            return _FlakyFile(f, exc, after)
        return f

    monkeypatch.setattr(FileSystems, "open", staticmethod(flaky_open))
    result = execute(config.replace(run_id="flaky", num_output_shards=3),
                     ["--runner=BundleBasedDirectRunner"])
    assert len(raised) == 2  # every failure was injected, and the run still succeeded
    assert len([f for f in os.listdir(os.path.join(result["run_folder"], "embeddings"))
                if f.endswith(".parquet")]) == 3
    assert_same_tables(clean, result["run_folder"])


def _run_cli(config_path: str, output: str, run_id: str, *beam_args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "-q", "run", "--config", config_path,
         "--output", output, "--run-id", run_id, *beam_args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)


def test_sigkill_mid_run_publishes_nothing_and_rerun_matches(corpus_env):
    _, config, config_path, clean, root = corpus_env
    output = str(root / "killed")
    staging = os.path.join(output, "_staging-nightly")
    proc = _run_cli(config_path, output, "nightly")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # Kill once the pipeline is writing its tables (Beam temp folders exist).
        if os.path.isdir(staging) and any("beam-temp" in d for _, dirs, _ in os.walk(staging)
                                          for d in dirs):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(output, "nightly"))
    assert not any("_SUCCESS" in files for _, _, files in os.walk(output))

    # Rerun the same run id with other parallelism and output sharding.
    rerun = execute(config.replace(output=output, run_id="nightly", num_output_shards=2),
                    ["--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    assert not os.path.exists(staging)
    assert not any("beam-temp" in d for _, dirs, _ in os.walk(rerun["run_folder"])
                   for d in dirs)
    assert sorted(os.listdir(os.path.join(rerun["run_folder"], "embeddings"))) == [
        "part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    assert_same_tables(clean, rerun["run_folder"])


def _small_config(tiny_model, root, inputs, **changes):
    return load_config(None).replace(inputs=inputs, model=tiny_model, output=str(root / "out"),
                                     batch_size=8, **changes)


def test_unreadable_files_count_in_the_error_budget(tmp_path, tiny_model):
    """Nine of ten shards gzip-compressed under a .tar name: no record error,
    but the run fails naming them, and publishes nothing."""
    import gzip

    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(10):
        raw = hc._tar(str(shards / f"{s}.tar"), [(f"k{s}.jpg", hc.valid_image(s))])
        if s:
            (shards / f"{s}.tar").write_bytes(gzip.compress(raw))
    config = _small_config(tiny_model, tmp_path, [str(shards / "*.tar")], run_id="budget")
    with pytest.raises(RuntimeError, match=r"9 of 10 input files failed as a whole .*1\.tar "
                                           r"\(corrupt: not a readable tar archive \(the file is "
                                           r"gzip-compressed"):
        execute(config, [])
    assert not os.path.exists(tmp_path / "out" / "budget")


def test_console_summary_names_files_that_failed_whole(tmp_path, tiny_model, capsys):
    from pipelines.cli import run

    data = tmp_path / "data"
    data.mkdir()
    hc._tar(str(data / "good.tar"), [("a.jpg", hc.valid_image(1))])
    hc._parquet(str(data / "no-image.parquet"),
                pa.table({"jpeg": pa.array([hc.valid_image(2)], pa.binary())}))
    (data / "notes.txt").write_text("sidecar")
    assert run(["embed", "--input", str(data), "--model", tiny_model, "--output",
                str(tmp_path / "out"), "--run-id", "r", "--max-error-fraction", "1.0"]) == 0
    out = capsys.readouterr().out
    assert f"files that failed as a whole: 1, e.g. {data / 'no-image.parquet'} " \
           "(schema_mismatch: column 'image' appears 0 times" in out
    assert "files not read: 1 {'not_an_input': 1} (listed in skipped.parquet)" in out
    skipped = pq.read_table(tmp_path / "out" / "r" / "skipped.parquet").to_pylist()
    assert [(r["source_uri"], r["reason"]) for r in skipped] == [
        (str((data / "notes.txt").resolve()), "not_an_input")]


def test_file_changed_between_the_two_reads_is_reported_not_published(tmp_path, tiny_model,
                                                                      monkeypatch):
    """a.jpg is rewritten (into a copy of b.jpg) after the index pass read it:
    the data pass must not publish rows the index does not describe."""
    data = tmp_path / "data"
    data.mkdir()
    a, b = data / "a.jpg", data / "b.jpg"
    a.write_bytes(hc.valid_image(1))
    b.write_bytes(hc.valid_image(2))
    opened = []
    real_open = FileSystems.open

    def open_and_change(path, *args, **kwargs):
        opened.append(path)
        if path.endswith("a.jpg") and opened.count(path) == 2:  # the data pass
            a.write_bytes(b.read_bytes())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", staticmethod(open_and_change))
    config = _small_config(tiny_model, tmp_path, [str(data)], run_id="changed")
    with pytest.raises(RuntimeError, match=r"1 input file\(s\) changed while the run read "
                                           r"them.*a\.jpg"):
        execute(config, [])
    assert not os.path.exists(tmp_path / "out" / "changed")
    errors = pq.read_table(tmp_path / "out" / "_staging-changed" / "errors.parquet").to_pylist()
    assert [(os.path.basename(e["source_uri"]), e["reason"]) for e in errors] == [
        ("a.jpg", "changed_during_run")]
