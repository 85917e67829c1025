"""Run folders: staged, published whole, `_SUCCESS` last, only their own files deleted."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import subprocess

import pytest
from apache_beam.io.filesystems import FileSystems

from pipelines.run_folder import SUCCESS, RunExistsError, RunFolder


def _stage(folder: RunFolder, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def _tree(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def _data(root: str) -> dict[str, str]:
    """The files of a run that readers see (clipdedup's own markers left out)."""
    out = {}
    for rel in _tree(root):
        if rel not in (SUCCESS, "_clipdedup.json", "summary.json"):
            with open(os.path.join(root, rel)) as f:
                out[rel] = f.read()
    return out


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _as_if_killed(output: str, run_id: str) -> None:
    """Makes the lock of `run_id` look like a killed process's (same host, pid gone)."""
    path = os.path.join(output, f"_lock-{run_id}")
    if os.path.exists(path):
        with open(path, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": _dead_pid(), "pid_start": None,
                       "started_at": "2026-01-01T00:00:00+00:00", "command": "killed",
                       "token": "dead"}, f)


def _release(folder: RunFolder) -> None:
    getattr(folder, "release", lambda: None)()


def _publish(output: str, run_id: str, files: dict[str, str], overwrite: bool = False) -> str:
    folder = RunFolder(output, run_id)
    folder.start(overwrite=overwrite)
    _stage(folder, files)
    try:
        return folder.publish({"run_id": run_id, "counts": {"files": len(files)}},
                              overwrite=overwrite)
    finally:
        _release(folder)


def test_start_discards_leftovers_of_a_killed_attempt(tmp_path, caplog):
    killed = RunFolder(str(tmp_path), "nightly")
    killed.start()
    _stage(killed, {"embeddings/beam-temp-part-x/1.parquet": "partial"})
    _as_if_killed(str(tmp_path), "nightly")
    again = RunFolder(str(tmp_path), "nightly")
    with caplog.at_level(logging.WARNING, "clipdedup"):
        again.start()
    assert "taking over the lock" in caplog.text and "process is gone" in caplog.text
    assert _tree(again.staging) == ["_clipdedup.json"]
    assert not os.path.exists(again.final)
    again.release()
    assert not os.path.exists(again.lock.path)


def test_publish_moves_everything_and_writes_success_last(tmp_path):
    folder = RunFolder(str(tmp_path), "r1")
    folder.start()
    _stage(folder, {"embeddings/part-00000-of-00001.parquet": "x", "errors.parquet": "e"})
    assert not os.path.exists(folder.final)
    folder.publish({"run_id": "r1", "counts": {"records_read": 3, "embedded": 2}})
    folder.release()
    assert _tree(folder.final) == [SUCCESS, "_clipdedup.json",
                                   "embeddings/part-00000-of-00001.parquet",
                                   "errors.parquet", "summary.json"]
    assert os.listdir(tmp_path) == ["r1"]  # no staging, no lock, no trash


def test_success_says_which_run_and_its_counts(tmp_path):
    run = _publish(str(tmp_path), "r1", {"errors.parquet": "e"})
    success = json.loads(open(os.path.join(run, SUCCESS)).read())
    assert success["run_id"] == "r1" and success["counts"] == {"files": 1}
    assert success["published_at"].endswith("+00:00")


def test_republish_needs_overwrite_and_leaves_no_old_parts(tmp_path):
    _publish(str(tmp_path), "r1",
             {f"embeddings/part-0000{i}-of-00003.parquet": "x" for i in range(3)})
    with pytest.raises(RunExistsError):
        RunFolder(str(tmp_path), "r1").start()
    run = _publish(str(tmp_path), "r1", {"embeddings/part-00000-of-00001.parquet": "y"},
                   overwrite=True)
    assert _tree(run) == [SUCCESS, "_clipdedup.json",
                          "embeddings/part-00000-of-00001.parquet", "summary.json"]
    assert os.listdir(tmp_path) == ["r1"]


def test_a_run_published_before_markers_is_still_replaced_by_overwrite(tmp_path):
    old = tmp_path / "r1"
    (old / "embeddings").mkdir(parents=True)
    (old / "embeddings" / "part-00000-of-00002.parquet").write_text("old")
    (old / "summary.json").write_text(json.dumps({"clipdedup_version": "0.1.0",
                                                  "run_id": "r1"}))
    (old / SUCCESS).write_text("")
    run = _publish(str(tmp_path), "r1", {"errors.parquet": "e"}, overwrite=True)
    assert _data(run) == {"errors.parquet": "e"}


def test_a_folder_killed_during_publish_is_replaced(tmp_path):
    half = RunFolder(str(tmp_path), "r1")
    half.start()
    _stage(half, {"embeddings/part-00000-of-00001.parquet": "half"})
    os.replace(half.staging, half.final)  # renamed, then killed before _SUCCESS
    _as_if_killed(str(tmp_path), "r1")
    run = _publish(str(tmp_path), "r1", {"errors.parquet": "e"})
    assert _tree(run) == [SUCCESS, "_clipdedup.json", "errors.parquet", "summary.json"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_run_is_never_deleted(tmp_path, overwrite):
    mine = tmp_path / "r1"
    (mine / "photos").mkdir(parents=True)
    (mine / "photos" / "cat.jpg").write_text("precious")
    with pytest.raises(RuntimeError, match="not a clipdedup run.*left alone"):
        _publish(str(tmp_path), "r1", {"errors.parquet": "e"}, overwrite=overwrite)
    assert _tree(mine) == ["photos/cat.jpg"]
    assert sorted(os.listdir(tmp_path)) == ["r1"]  # no staging, no lock left behind


def test_a_foreign_staging_folder_is_never_deleted(tmp_path):
    foreign = tmp_path / "_staging-r1"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not clipdedup's")
    with pytest.raises(RuntimeError, match="not made by clipdedup"):
        RunFolder(str(tmp_path), "r1").start()
    assert _tree(foreign) == ["notes.txt"]


@pytest.mark.parametrize("run_id", [".", "..", "a/b", "/abs", "", "_staging-x", ".hidden",
                                    "../sibling", "a\\b", "x" * 129, "tab\there"])
def test_a_run_id_must_be_one_plain_name(tmp_path, run_id):
    output = tmp_path / "out"
    with pytest.raises(ValueError, match="invalid run id"):
        RunFolder(str(output), run_id)
    assert not output.exists()


def test_a_second_run_with_the_same_id_fails_fast_and_touches_nothing(tmp_path):
    first = RunFolder(str(tmp_path), "r1")
    first.start()
    _stage(first, {"errors.parquet": "e"})
    with pytest.raises(RuntimeError, match=f"in use: locked by pid {os.getpid()} on host "
                                           f"{socket.gethostname()} since .*command: "):
        RunFolder(str(tmp_path), "r1").start()
    assert _tree(first.staging) == ["_clipdedup.json", "errors.parquet"]
    first.publish({})
    first.release()
    assert _data(first.final) == {"errors.parquet": "e"}


def test_abandon_removes_an_empty_staging_folder_and_keeps_one_with_files(tmp_path):
    empty = RunFolder(str(tmp_path), "empty")
    empty.start()
    assert empty.abandon() is None
    empty.release()
    assert os.listdir(tmp_path) == []
    worth = RunFolder(str(tmp_path), "worth")
    worth.start()
    _stage(worth, {"errors.parquet": "e"})
    note = worth.abandon()
    worth.release()
    assert worth.staging in note and f"clipdedup clean --output {tmp_path} --run-id worth" in note
    assert _tree(worth.staging) == ["_clipdedup.json", "errors.parquet"]


class Killed(BaseException):
    """A kill at one moment of the swap."""


def _kill_at(monkeypatch, step: int) -> None:
    """Makes the `step`-th file operation raise Killed, as a SIGKILL would stop the swap.
    rmtree deletes file by file with `_SUCCESS` last (directory order may do that)."""
    count = itertools.count()

    def hit():
        if next(count) == step:
            raise Killed

    def wrap(real):
        return lambda *a, **k: (hit(), real(*a, **k))[1]

    real_unlink = os.unlink

    def rmtree(path, ignore_errors=False, **_):
        files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        for p in sorted(files, key=lambda p: (os.path.basename(p) == SUCCESS, p)):
            hit()
            real_unlink(p)
        for d, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
            os.rmdir(d)

    for module, name in ((os, "replace"), (os, "rename"), (os, "unlink"), (os, "rmdir")):
        monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(FileSystems, "create", staticmethod(wrap(FileSystems.create)))
    monkeypatch.setattr(FileSystems, "delete", staticmethod(wrap(FileSystems.delete)))


OLD = {f"embeddings/part-0000{i}-of-00003.parquet": f"old{i}" for i in range(3)}
OLD.update({"errors.parquet": "old-e", "shards.parquet": "old-s"})
NEW = {"embeddings/part-00000-of-00001.parquet": "new", "errors.parquet": "new-e",
       "shards.parquet": "new-s"}


def test_overwrite_killed_at_any_moment_never_leaves_success_beside_missing_tables(
        tmp_path, monkeypatch):
    completed = False
    for step in range(60):
        out = str(tmp_path / str(step))
        _publish(out, "r1", OLD)
        folder = RunFolder(out, "r1")
        folder.start(overwrite=True)
        _stage(folder, NEW)
        with monkeypatch.context() as m:
            _kill_at(m, step)
            try:
                folder.publish({"counts": {}}, overwrite=True)
                completed = True
            except Killed:
                pass
        for d, _, files in os.walk(out):  # whatever says "complete" is complete
            if SUCCESS in files:
                assert _data(d) in (OLD, NEW), f"killed at step {step}: {_tree(d)}"
        if completed:
            _release(folder)
            assert sorted(os.listdir(out)) == ["r1"]
            assert _data(os.path.join(out, "r1")) == NEW
            break
        # The next run after the kill cleans up and publishes.
        _as_if_killed(out, "r1")
        run = _publish(out, "r1", NEW, overwrite=True)
        assert _data(run) == NEW and sorted(os.listdir(out)) == ["r1"], step
    assert completed and step > 3


def test_a_fifo_named_like_the_marker_does_not_hang_a_run(tmp_path):
    foreign = tmp_path / "r1"
    foreign.mkdir()
    os.mkfifo(foreign / "_clipdedup.json")
    with pytest.raises(RuntimeError, match="not a clipdedup run"):
        RunFolder(str(tmp_path), "r1").start()
    assert os.listdir(foreign) == ["_clipdedup.json"]


def test_merge_parts_streams_a_text_column_into_lines_of_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms.schemas import KEEP_SCHEMA

    folder = RunFolder(str(tmp_path / "out"), "r1")
    folder.start()
    os.makedirs(folder.path("keep"))
    with_line = KEEP_SCHEMA.append(pa.field("line", pa.string()))
    rows = [{"record_id": f"r{k}", "source_uri": "u", "key": f"k{k}", "reason": "unique",
             "keeper_id": f"r{k}", "line": f"u#k{k}"} for k in range(7)]
    for part, chunk in enumerate((rows[:3], rows[3:])):
        with pq.ParquetWriter(folder.path(f"keep/part-{part}.parquet"), with_line) as writer:
            for row in chunk:  # one row group per row
                writer.write_table(pa.Table.from_pylist([row], with_line))
    folder.merge_parts("keep", KEEP_SCHEMA, text_column="line")
    table = pq.read_table(folder.path("keep.parquet"))
    assert table.schema.equals(KEEP_SCHEMA)
    lines = open(folder.path("keep.txt")).read().splitlines()
    assert lines == [f"u#{key}" for key in table.column("key").to_pylist()]
    assert sorted(table.column("record_id").to_pylist()) == sorted(r["record_id"] for r in rows)
    assert not os.path.exists(folder.path("keep"))
    folder.release()


def test_merge_parts_cuts_a_large_row_group_into_batches(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines import run_folder
    from transforms.schemas import KEEP_SCHEMA

    monkeypatch.setattr(run_folder, "MERGE_BATCH_ROWS", 1_000)
    folder = RunFolder(str(tmp_path / "out"), "r1")
    folder.start()
    os.makedirs(folder.path("keep"))
    with_line = KEEP_SCHEMA.append(pa.field("line", pa.string()))
    n = 4_500
    part = pa.table({"record_id": [f"r{k}" for k in range(n)], "source_uri": ["u"] * n,
                     "key": [f"k{k}" for k in range(n)], "reason": ["unique"] * n,
                     "keeper_id": [f"r{k}" for k in range(n)], "line": [f"u#k{k}" for k in range(n)]},
                    schema=with_line)
    pq.write_table(part, folder.path("keep/part-0.parquet"), row_group_size=n)  # one row group
    folder.merge_parts("keep", KEEP_SCHEMA, text_column="line")
    merged = pq.ParquetFile(folder.path("keep.parquet"))
    assert [merged.metadata.row_group(i).num_rows for i in range(merged.num_row_groups)] == [
        1_000] * 4 + [500]
    assert merged.read().equals(part.drop_columns(["line"]))
    assert open(folder.path("keep.txt")).read().splitlines() == part.column("line").to_pylist()
    folder.release()
