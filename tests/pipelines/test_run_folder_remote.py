"""Run folders on an object store (`memgs://`, GCS semantics): folders are prefixes,
renames go object by object, and the same guarantees hold."""

from __future__ import annotations

import itertools
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from pipelines.run_folder import SUCCESS, ForeignFolderError, RunFolder, clean, read_table
from tests.pipelines import object_store
from tests.pipelines.object_store import OBJECTS, MemGcsFileSystem

OUT = "memgs://bucket/out"
SCHEMA = pa.schema([("record_id", pa.string())])


@pytest.fixture(autouse=True)
def empty_store():
    OBJECTS.clear()
    yield
    OBJECTS.clear()


def _put(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def _parquet(ids: list[str]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"record_id": ids}, schema=SCHEMA), sink)
    return sink.getvalue().to_pybytes()


def _under(prefix: str) -> dict[str, bytes]:
    prefix = prefix.rstrip("/") + "/"
    return {p[len(prefix):]: d for p, (d, _) in OBJECTS.items() if p.startswith(prefix)}


def _data(prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in _under(prefix).items()
            if k not in (SUCCESS, "_clipdedup.json", "summary.json")}


def _publish(files: dict[str, bytes], overwrite: bool = False) -> str:
    folder = RunFolder(OUT, "r1")
    folder.start(overwrite=overwrite)
    for name, data in files.items():
        _put(folder.path(name), data)
    try:
        return folder.publish({"counts": {"n": len(files)}}, overwrite=overwrite)
    finally:
        folder.release()


def test_the_object_store_has_no_folders():
    _put(f"{OUT}/a/b.txt", b"x")
    assert not FileSystems.exists(f"{OUT}/a") and FileSystems.exists(f"{OUT}/a/b.txt")
    assert object_store.MemGcsFileSystem.scheme() == FileSystems.get_scheme(OUT)


def test_merge_parts_and_publish_on_an_object_store():
    folder = RunFolder(OUT, "r1")
    folder.start()
    for i in range(3):
        _put(folder.path(f"errors/part-0000{i}-of-00003.parquet"), _parquet([f"id{i}"]))
    _put(folder.path("errors/beam-temp-x/stale.parquet"), _parquet(["stale"]))
    folder.merge_parts("errors", SCHEMA)
    assert sorted(_under(folder.staging)) == ["_clipdedup.json", "errors.parquet"]
    run = folder.publish({"counts": {"record_errors": 3}})
    folder.release()
    assert sorted(_under(run)) == [SUCCESS, "_clipdedup.json", "errors.parquet", "summary.json"]
    assert read_table(f"{run}/errors.parquet").column("record_id").to_pylist() == [
        "id0", "id1", "id2"]
    assert json.loads(_under(run)[SUCCESS])["counts"] == {"record_errors": 3}
    assert sorted(OBJECTS) == sorted(f"{run}/{n}" for n in _under(run))  # nothing else left


def test_a_prefix_that_is_not_a_run_is_never_deleted():
    _put(f"{OUT}/r1/photos/cat.jpg", b"precious")
    with pytest.raises(ForeignFolderError):
        _publish({"errors.parquet": b"e"}, overwrite=True)
    assert sorted(OBJECTS) == [f"{OUT}/r1/photos/cat.jpg"]


class Killed(BaseException):
    pass


OLD = {f"embeddings/part-0000{i}-of-00003.parquet": b"old%d" % i for i in range(3)}
OLD["errors.parquet"] = b"old-e"
NEW = {"embeddings/part-00000-of-00001.parquet": b"new", "errors.parquet": b"new-e"}


def test_overwrite_killed_at_any_object_operation_never_leaves_success_beside_missing_tables(
        monkeypatch):
    completed = False
    for step in range(80):
        OBJECTS.clear()
        _publish(OLD)
        folder = RunFolder(OUT, "r1")
        folder.start(overwrite=True)
        for name, data in NEW.items():
            _put(folder.path(name), data)
        count = itertools.count()

        def hit():
            if next(count) == step:
                raise Killed

        real_create, real_rename = MemGcsFileSystem.create, MemGcsFileSystem.rename
        real_delete = MemGcsFileSystem.delete
        with monkeypatch.context() as m:
            m.setattr(MemGcsFileSystem, "create", lambda s, *a, **k: (hit(), real_create(
                s, *a, **k))[1])
            m.setattr(MemGcsFileSystem, "rename", lambda s, srcs, dsts: [
                (hit(), real_rename(s, [a], [b])) for a, b in zip(srcs, dsts)])
            m.setattr(MemGcsFileSystem, "delete", lambda s, paths: [
                (hit(), real_delete(s, [p])) for p in paths])
            try:
                folder.publish({"counts": {}}, overwrite=True)
                completed = True
            except Killed:
                pass
        prefixes = {p[:-len(SUCCESS) - 1] for p in OBJECTS if p.endswith("/" + SUCCESS)}
        for prefix in prefixes:
            assert _data(prefix) in (OLD, NEW), f"killed at step {step}: {sorted(_under(prefix))}"
        if completed:
            folder.release()
            assert _data(f"{OUT}/r1") == NEW
            break
        folder.lock._held = None  # the killed process is gone: its lock is stale...
        OBJECTS.pop(f"{OUT}/_lock-r1")  # ...and, on another host, removed by clean --force
        run = _publish(NEW, overwrite=True)
        assert _data(run) == NEW, step
        assert sorted(OBJECTS) == sorted(f"{run}/{n}" for n in _under(run)), step
    assert completed and step > 5


def test_clean_on_an_object_store():
    folder = RunFolder(OUT, "dead")
    folder.start()
    _put(folder.path("errors.parquet"), b"e")
    folder.lock._held = None
    OBJECTS.pop(f"{OUT}/_lock-dead")  # killed; its lock already removed
    _put(f"{OUT}/_staging-foreign/x", b"not ours")
    lines = clean(OUT)
    assert f"removed {folder.staging}" in lines
    assert sorted(OBJECTS) == [f"{OUT}/_staging-foreign/x"]


def test_a_whole_run_publishes_on_an_object_store(tiny_model, tmp_path):
    """The launcher's path on gs://: staging, merges, checks, publish, lock, all by prefix."""
    from pipelines.config import Config
    from pipelines.jobs import execute
    from tests.conftest import encode, random_image

    for i in range(4):
        (tmp_path / f"{i}.jpg").write_bytes(encode(random_image(i, (96, 80))))
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "0.jpg").read_bytes())
    summary = execute(Config(inputs=(str(tmp_path),), model=tiny_model, output=OUT,
                             run_id="r1"), [])
    run, c = summary["run_folder"], summary["counts"]
    assert (c["records_read"], c["embedded"], c["exact_copies_not_embedded"]) == (5, 4, 1)
    assert read_table(f"{run}/shards.parquet").num_rows == 5
    assert read_table(f"{run}/embeddings").num_rows == 4
    assert sorted(OBJECTS) == sorted(f"{run}/{n}" for n in _under(run))  # no staging, no lock
    assert json.loads(_under(run)[SUCCESS])["counts"] == c
