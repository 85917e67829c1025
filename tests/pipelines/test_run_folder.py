"""Run folders: staged, published whole, `_SUCCESS` last, no leftovers reused."""

from __future__ import annotations

import os

import pytest

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


def test_start_discards_leftovers_of_a_killed_attempt(tmp_path):
    killed = RunFolder(str(tmp_path), "nightly")
    killed.start()
    _stage(killed, {"embeddings/beam-temp-part-x/1.parquet": "partial"})
    again = RunFolder(str(tmp_path), "nightly")
    again.start()
    assert _tree(again.staging) == []
    assert not os.path.exists(again.final)


def test_publish_moves_everything_and_writes_success_last(tmp_path):
    folder = RunFolder(str(tmp_path), "r1")
    folder.start()
    _stage(folder, {"embeddings/part-00000-of-00001.parquet": "x", "errors.parquet": "e"})
    assert not os.path.exists(folder.final)
    folder.publish({"run_id": "r1"})
    assert _tree(folder.final) == [SUCCESS, "embeddings/part-00000-of-00001.parquet",
                                   "errors.parquet", "summary.json"]
    assert not os.path.exists(folder.staging)


def test_republish_needs_overwrite_and_leaves_no_old_parts(tmp_path):
    first = RunFolder(str(tmp_path), "r1")
    first.start()
    _stage(first, {f"embeddings/part-0000{i}-of-00003.parquet": "x" for i in range(3)})
    first.publish({})
    with pytest.raises(RunExistsError):
        RunFolder(str(tmp_path), "r1").start()
    second = RunFolder(str(tmp_path), "r1")
    second.start(overwrite=True)
    _stage(second, {"embeddings/part-00000-of-00001.parquet": "y"})
    second.publish({}, overwrite=True)
    assert _tree(second.final) == [SUCCESS, "embeddings/part-00000-of-00001.parquet",
                                   "summary.json"]


def test_a_folder_killed_during_publish_is_replaced(tmp_path):
    half = RunFolder(str(tmp_path), "r1")
    os.makedirs(os.path.join(half.final, "embeddings"))  # renamed, but no _SUCCESS yet
    folder = RunFolder(str(tmp_path), "r1")
    folder.start()
    _stage(folder, {"errors.parquet": "e"})
    folder.publish({})
    assert _tree(folder.final) == [SUCCESS, "errors.parquet", "summary.json"]
