"""One run at a time per run id: a create-if-absent lock file.

Two runs with one run id would share `_staging-<run_id>/`: each deletes or
overwrites the other's tables, the checks pass in one and the other
publishes. So a run first creates `<output>/_lock-<run_id>`, a small JSON
naming its owner (host, pid, the process's start time, start time, command),
and only if it did not exist: `os.open(O_CREAT | O_EXCL)` on local disk, an
upload with `if_generation_match=0` on `gs://` (GCS then refuses to replace
an existing object). Other filesystems fall back to check-then-create, which
is not atomic (a warning says so).

A lock whose owner ran on this host and whose process is gone (SIGKILL, OOM,
power loss) is stale and taken over with a warning. A lock from another host
cannot be checked from here: the error says how to remove it when its run
is known to be dead (`clipdedup clean ... --force`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shlex
import socket
import sys
import time
import uuid

from pipelines.run_names import lock_name

log = logging.getLogger("clipdedup")


class LockHeldError(RuntimeError):
    """Another run holds the run id."""


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux), so a reused pid is not taken for its owner."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclasses.dataclass(frozen=True)
class Owner:
    """Who holds a lock, as written in the lock file."""

    host: str
    pid: int
    pid_start: str | None
    started_at: str
    command: str
    token: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()),
                   dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                   shlex.join(sys.argv), uuid.uuid4().hex)

    @classmethod
    def parse(cls, data: bytes) -> Owner | None:
        try:
            raw = json.loads(data)
            return cls(str(raw["host"]), int(raw["pid"]), raw.get("pid_start"),
                       str(raw["started_at"]), str(raw.get("command", "?")), str(raw["token"]))
        except (ValueError, KeyError, TypeError):
            return None

    def dump(self, run_id: str) -> bytes:
        return json.dumps(dict(dataclasses.asdict(self), run_id=run_id), indent=1).encode()

    def describe(self) -> str:
        return (f"pid {self.pid} on host {self.host} since {self.started_at} "
                f"(command: {self.command})")

    def is_alive(self) -> bool | None:
        """True/False for an owner on this host; None where it cannot be told (another host)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            pass
        start = _process_start(self.pid)
        return not (self.pid_start and start and start != self.pid_start)


class _LocalStore:
    """The lock as a local file; a version is the file's bytes."""

    def __init__(self, path: str):
        self.path = path

    def create(self, data: bytes) -> bool:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def read(self) -> tuple[bytes, object] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, data

    def delete(self, version) -> bool:
        """Removes the lock only if it is still `version`: moved aside first, so a lock
        created meanwhile by someone else is put back instead of lost."""
        folder, name = os.path.split(self.path)
        aside = os.path.join(folder, f".{name}.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        with open(aside, "rb") as f:
            moved = f.read()
        if moved != version:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                log.warning("lock %s changed hands while it was being taken over", self.path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True


def _gcs_client():
    from google.cloud import storage

    return storage.Client()


class _GcsStore:
    """The lock as a GCS object; a version is the object's generation."""

    def __init__(self, path: str):
        bucket, _, self.name = path[len("gs://"):].partition("/")
        try:
            self.bucket = _gcs_client().bucket(bucket)
        except Exception as exc:  # noqa: BLE001 - credentials, project: one line, not a traceback
            raise RuntimeError(f"cannot reach gs://{bucket} to take the run lock: {exc}") from exc

    def create(self, data: bytes) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self.bucket.blob(self.name).upload_from_string(
                data, content_type="application/json", if_generation_match=0)
        except PreconditionFailed:
            return False
        return True

    def read(self) -> tuple[bytes, object] | None:
        from google.api_core.exceptions import NotFound

        blob = self.bucket.get_blob(self.name)
        if blob is None:
            return None
        try:
            return blob.download_as_bytes(if_generation_match=blob.generation), blob.generation
        except NotFound:
            return None

    def delete(self, version) -> bool:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        try:
            self.bucket.blob(self.name).delete(if_generation_match=version)
        except (NotFound, PreconditionFailed):
            return False
        return True


class _FileSystemsStore:
    """Any other Beam filesystem (s3://, ...): check-then-create, not atomic."""

    def __init__(self, path: str):
        self.path = path
        log.warning("%s: this filesystem has no create-if-absent; the run lock is best-effort",
                    path)

    def create(self, data: bytes) -> bool:
        from apache_beam.io.filesystems import FileSystems

        if FileSystems.exists(self.path):
            return False
        with FileSystems.create(self.path) as f:
            f.write(data)
        return True

    def read(self) -> tuple[bytes, object] | None:
        from apache_beam.io.filesystems import FileSystems

        if not FileSystems.exists(self.path):
            return None
        with FileSystems.open(self.path) as f:
            data = f.read()
        return data, data

    def delete(self, version) -> bool:
        from apache_beam.io.filesystems import FileSystems

        current = self.read()
        if current is None or current[1] != version:
            return False
        FileSystems.delete([self.path])
        return True


def _store(path: str):
    if path.startswith("gs://"):
        return _GcsStore(path)
    if "://" in path and not path.startswith("file://"):
        return _FileSystemsStore(path)
    return _LocalStore(path[len("file://"):] if path.startswith("file://") else path)


class RunLock:
    """The lock of one run id in one output folder.

    Args:
        output: the output folder (local or remote).
        run_id: a validated run id.
    """

    def __init__(self, output: str, run_id: str):
        self.output = output
        self.run_id = run_id
        self.path = output.rstrip("/") + "/" + lock_name(run_id)
        self._store = None
        self._held: Owner | None = None

    @property
    def store(self):
        if self._store is None:
            self._store = _store(self.path)
        return self._store

    @property
    def held(self) -> bool:
        return self._held is not None

    def holder(self) -> str | None:
        """Who holds the lock, in words; None if there is no lock."""
        current = self.store.read()
        if current is None:
            return None
        owner = Owner.parse(current[0])
        return owner.describe() if owner else "an unreadable lock file"

    def acquire(self, force: bool = False) -> None:
        """Takes the lock, or raises LockHeldError naming its owner.

        Args:
            force: also take over a lock whose owner cannot be checked (another
                host); an owner alive on this host is never taken over.
        """
        me = Owner.me()
        data = me.dump(self.run_id)
        for _ in range(5):
            if self.store.create(data):
                self._held = me
                return
            current = self.store.read()
            if current is None:  # released meanwhile
                continue
            owner = Owner.parse(current[0])
            if owner is not None and owner.token == me.token:  # our own create, retried
                self._held = me
                return
            if owner is None and not force and time.time() - self._mtime() < 10:
                time.sleep(0.2)  # being written right now (O_EXCL creates it empty first)
                continue
            alive = owner.is_alive() if owner else None
            if alive or (alive is None and not force):
                raise LockHeldError(self._held_message(owner, alive))
            log.warning("run id %s: taking over the lock of %s (%s)", self.run_id,
                        owner.describe() if owner else "an unreadable lock file",
                        "its process is gone" if alive is False else "--force")
            self.store.delete(current[1])
        raise LockHeldError(
            f"run id {self.run_id}: could not take the lock {self.path} (it is unreadable or "
            "kept changing); if no run is using it, remove it with `clipdedup clean --output "
            f"{self.output} --run-id {self.run_id} --force`")

    def release(self) -> None:
        """Removes the lock if this process still holds it."""
        if self._held is None:
            return
        me, self._held = self._held, None
        current = self.store.read()
        owner = Owner.parse(current[0]) if current else None
        if owner is None or owner.token != me.token:
            log.warning("run id %s: the lock %s was taken from this run", self.run_id, self.path)
            return
        self.store.delete(current[1])

    def _mtime(self) -> float:
        try:
            return os.path.getmtime(self.path)
        except OSError:
            return 0.0

    def _held_message(self, owner: Owner | None, alive: bool | None) -> str:
        who = owner.describe() if owner else f"an unreadable lock file {self.path}"
        if alive:
            return (f"run id {self.run_id} is in use: locked by {who}; wait for that run to "
                    "end or choose another --run-id")
        return (f"run id {self.run_id} is locked by {who}; the lock is possibly stale (it "
                "cannot be checked from this host): if that run is no longer running, remove "
                f"it with `clipdedup clean --output {self.output} --run-id {self.run_id} "
                "--force`")
