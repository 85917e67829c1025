"""The run id lock: create-if-absent on local disk and on GCS, stale locks, `clean`."""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import subprocess

import pytest
from google.api_core.exceptions import NotFound, PreconditionFailed
from google.cloud import storage

from pipelines import run_lock
from pipelines.run_folder import RunFolder, clean
from pipelines.run_lock import LockHeldError, Owner, RunLock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _owner(host: str | None = None, pid: int | None = None) -> Owner:
    pid = pid or _dead_pid()
    return Owner(host or socket.gethostname(), pid, None, "2026-01-01T00:00:00+00:00",
                 "clipdedup run --run-id r1", f"token-{pid}")


def _plant(output: str, run_id: str, owner: Owner) -> None:
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, f"_lock-{run_id}"), "wb") as f:
        f.write(owner.dump(run_id))


def test_the_lock_names_its_owner_and_is_released(tmp_path):
    lock = RunLock(str(tmp_path), "r1")
    lock.acquire()
    raw = json.loads(open(lock.path).read())
    assert raw["pid"] == os.getpid() and raw["host"] == socket.gethostname()
    assert raw["run_id"] == "r1" and raw["started_at"] and raw["command"]
    with pytest.raises(LockHeldError, match="in use"):
        RunLock(str(tmp_path), "r1").acquire(force=True)  # alive here: never taken over
    RunLock(str(tmp_path), "r2").acquire()  # other run ids are free
    lock.release()
    assert not os.path.exists(lock.path)
    RunLock(str(tmp_path), "r1").acquire()


def test_a_dead_process_lock_on_this_host_is_taken_over(tmp_path, caplog):
    _plant(str(tmp_path), "r1", _owner())
    lock = RunLock(str(tmp_path), "r1")
    with caplog.at_level(logging.WARNING, "clipdedup"):
        lock.acquire()
    assert "its process is gone" in caplog.text
    assert Owner.parse(open(lock.path, "rb").read()).pid == os.getpid()


def test_a_reused_pid_is_not_taken_for_the_owner(tmp_path):
    me = Owner.me()
    _plant(str(tmp_path), "r1", Owner(me.host, os.getpid(), "1", me.started_at, "old", "x"))
    RunLock(str(tmp_path), "r1").acquire()  # pid alive, but started at another time


def test_a_lock_from_another_host_explains_how_to_remove_it(tmp_path):
    _plant(str(tmp_path), "r1", _owner(host="worker-7", pid=4242))
    with pytest.raises(LockHeldError) as err:
        RunFolder(str(tmp_path), "r1").start()
    message = str(err.value)
    assert "pid 4242 on host worker-7" in message and "possibly stale" in message
    assert f"clipdedup clean --output {tmp_path} --run-id r1 --force" in message
    assert sorted(os.listdir(tmp_path)) == ["_lock-r1"]


def _folder_of_killed_run(output: str, run_id: str, host: str | None = None) -> str:
    folder = RunFolder(output, run_id)
    folder.start()
    with open(folder.path("errors.parquet"), "w") as f:
        f.write("e")
    _plant(output, run_id, _owner(host=host))  # then the process died
    return folder.staging


def test_clean_removes_only_clipdedup_staging_folders_no_live_run_holds(tmp_path):
    out = str(tmp_path)
    dead = _folder_of_killed_run(out, "dead")
    remote = _folder_of_killed_run(out, "remote", host="worker-7")
    live = RunFolder(out, "live")
    live.start()
    os.makedirs(os.path.join(out, "_staging-foreign"))
    open(os.path.join(out, "_staging-foreign", "x"), "w").close()
    published = RunFolder(out, "done")
    published.start()
    published.publish({})
    published.release()

    lines = clean(out)
    text = "\n".join(lines)
    assert f"removed {dead}" in lines and not os.path.exists(dead)
    assert "removed the stale lock" in text and not os.path.exists(os.path.join(out, "_lock-dead"))
    assert os.path.isdir(remote) and "worker-7" in text and "--force" in text
    assert os.path.isdir(live.staging) and "in use" in text
    assert os.path.exists(os.path.join(out, "_staging-foreign", "x")) and "left alone" in text
    assert os.path.exists(os.path.join(out, "done", "_SUCCESS"))

    lines = clean(out, "remote", force=True)
    assert f"removed {remote}" in lines and not os.path.exists(remote)
    assert not os.path.exists(os.path.join(out, "_lock-remote"))
    assert os.path.isdir(live.staging) and os.path.exists(os.path.join(out, "done", "_SUCCESS"))
    assert clean(out, "nothing-here") == [f"nothing to clean in {out} for run id nothing-here"]
    live.release()


# ---- gs://: the same lock through google-cloud-storage preconditions --------------------

class _Bucket:
    """An in-memory GCS bucket honouring generation preconditions like the service."""

    def __init__(self):
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.generations = 0
        self.before_delete = None  # hook: runs inside delete(), to race a takeover

    def blob(self, name):
        return _Blob(self, name)

    def get_blob(self, blob_name, client=None, if_generation_match=None):
        if blob_name not in self.objects:
            return None
        blob = _Blob(self, blob_name)
        blob.generation = self.objects[blob_name][1]
        return blob


class _Blob:
    def __init__(self, bucket: _Bucket, name: str):
        self.bucket, self.name, self.generation = bucket, name, None

    def _check(self, if_generation_match):
        current = self.bucket.objects.get(self.name)
        gen = current[1] if current else 0
        if if_generation_match is not None and if_generation_match != gen:
            raise PreconditionFailed(f"412 {self.name}: generation {gen}")

    def upload_from_string(self, data, content_type="text/plain", client=None,
                           predefined_acl=None, if_generation_match=None):
        self._check(if_generation_match)
        self.bucket.generations += 1
        self.generation = self.bucket.generations
        self.bucket.objects[self.name] = (bytes(data), self.generation)

    def download_as_bytes(self, client=None, if_generation_match=None):
        if self.name not in self.bucket.objects:
            raise NotFound(self.name)
        self._check(if_generation_match)
        return self.bucket.objects[self.name][0]

    def delete(self, client=None, if_generation_match=None):
        if self.bucket.before_delete:
            hook, self.bucket.before_delete = self.bucket.before_delete, None
            hook()
        if self.name not in self.bucket.objects:
            raise NotFound(self.name)
        self._check(if_generation_match)
        del self.bucket.objects[self.name]


def test_the_fake_bucket_takes_the_arguments_the_real_client_takes():
    for fake, real in ((_Blob.upload_from_string, storage.Blob.upload_from_string),
                       (_Blob.download_as_bytes, storage.Blob.download_as_bytes),
                       (_Blob.delete, storage.Blob.delete),
                       (_Bucket.get_blob, storage.Bucket.get_blob)):
        assert set(inspect.signature(fake).parameters) <= set(
            inspect.signature(real).parameters), fake.__qualname__


@pytest.fixture
def bucket(monkeypatch):
    bucket = _Bucket()

    class Client:
        def bucket(self, name):
            assert name == "my-bucket"
            return bucket

    monkeypatch.setattr(run_lock, "_gcs_client", Client)
    return bucket


def test_gcs_lock_is_create_if_absent(bucket):
    first = RunLock("gs://my-bucket/out", "r1")
    first.acquire()
    assert list(bucket.objects) == ["out/_lock-r1"]
    with pytest.raises(LockHeldError, match=f"in use: locked by pid {os.getpid()}"):
        RunLock("gs://my-bucket/out/", "r1").acquire()
    first.release()
    assert bucket.objects == {}


def test_gcs_stale_lock_is_taken_over_only_at_its_generation(bucket):
    bucket.objects["out/_lock-r1"] = (_owner().dump("r1"), 7)
    bucket.generations = 7
    lock = RunLock("gs://my-bucket/out", "r1")

    # Another process takes the stale lock between our read and our delete.
    def race():
        bucket.generations += 1
        bucket.objects["out/_lock-r1"] = (Owner.me().dump("r1"), bucket.generations)
    bucket.before_delete = race
    with pytest.raises(LockHeldError, match="in use"):
        lock.acquire()
    assert bucket.objects["out/_lock-r1"][1] == 8  # theirs survived our delete

    bucket.objects["out/_lock-r1"] = (_owner().dump("r1"), 20)
    lock.acquire()
    assert Owner.parse(bucket.objects["out/_lock-r1"][0]).pid == os.getpid()
    lock.release()
    assert bucket.objects == {}


def test_gcs_release_leaves_a_lock_that_was_taken_from_us(bucket):
    lock = RunLock("gs://my-bucket/out", "r1")
    lock.acquire()
    bucket.objects["out/_lock-r1"] = (_owner(host="worker-7", pid=1).dump("r1"), 99)
    lock.release()
    assert "out/_lock-r1" in bucket.objects


def test_an_unreadable_lock_is_not_taken_over_without_force(tmp_path):
    (tmp_path / "_lock-r1").write_bytes(b"")  # killed between O_EXCL create and write
    with pytest.raises(LockHeldError, match="--run-id r1 --force"):
        RunLock(str(tmp_path), "r1").acquire()
    assert clean(str(tmp_path), "r1", force=True) == [
        f"removed the stale lock {tmp_path}/_lock-r1 of an unreadable lock file"]
    assert os.listdir(tmp_path) == []
