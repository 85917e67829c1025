"""Run folders: staged while running, checked, then published whole.

A run first takes the lock of its run id (`pipelines/run_lock.py`), then
writes into `<output>/_staging-<run_id>/` (readers skip names that start with
`_`, and Beam's `beam-temp-*` leftovers of a killed attempt stay in there).
When every table is written and the conservation check passes, small tables
are merged into single Parquet files, `summary.json` is written, the folder
becomes `<output>/<run_id>/`, and `_SUCCESS` (JSON: run id, time, counts) is
written last. A folder without `_SUCCESS` is never a finished run.

Only folders holding this run id's `_clipdedup.json` marker (or, for runs
published before the marker existed, a clipdedup `summary.json`) are ever
deleted or replaced; markers are removed last, so a folder half deleted by a
kill is still recognised. `--overwrite` removes the old run's `_SUCCESS`
first, moves the old run aside, moves the new one in, writes `_SUCCESS`, and
only then deletes the old files: a reader never sees `_SUCCESS` beside
missing or mixed tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.run_lock import LockHeldError, RunLock
from pipelines.run_names import (
    LOCK_PREFIX,
    MARKER,
    STAGING_PREFIX,
    SUCCESS,
    TRASH_PREFIX,
    staging_name,
    trash_name,
    validate_run_id,
)
from transforms.parquet_open import open_parquet

# Rows per merge step and per row group of a merged table (~131k: a few MB per step).
MERGE_BATCH_ROWS = 1 << 17
SUMMARY = "summary.json"

log = logging.getLogger("clipdedup")


class RunExistsError(RuntimeError):
    """The run folder is already published; pass --overwrite to replace it."""


class ForeignFolderError(RuntimeError):
    """A folder clipdedup did not make is where a run folder would go."""


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def part_files(folder: str) -> list[str]:
    """Parquet part files directly inside `folder` (Beam temp folders excluded), sorted."""
    # No exists() check first: on object stores a folder is only a prefix, never "exists".
    pattern = FileSystems.join(folder, "*.parquet")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_table(folder_or_file: str, columns: list[str] | None = None):
    """Reads a table written as one Parquet file or as a folder of part files."""
    import pyarrow as pa

    paths = part_files(folder_or_file) or [folder_or_file]
    if not FileSystems.exists(paths[0]):
        raise FileNotFoundError(f"no Parquet files at {folder_or_file}")
    return pa.concat_tables([open_parquet(path).read(columns=columns) for path in paths])


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write(path: str, data: dict) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def _read_json(path: str) -> dict | None:
    """A small JSON object of ours, or None (missing, not JSON, or not a small regular
    file: a FIFO named like a marker in someone else's folder must not hang a run)."""
    if _is_local(path):
        if not os.path.isfile(path) or os.path.getsize(path) > 1 << 20:
            return None
    elif not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        raw = f.read()
    try:
        data = json.loads(raw)
    except ValueError:  # not a marker of ours
        return None
    return data if isinstance(data, dict) else None


def _contents(folder: str) -> list[str]:
    """Every file under `folder` (an empty list if it does not exist)."""
    if _is_local(folder):
        return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]
    return [m.path for m in FileSystems.match([folder.rstrip("/") + "/**"])[0].metadata_list]


def _exists(folder: str) -> bool:
    return os.path.lexists(folder) if _is_local(folder) else bool(_contents(folder))


def is_ours(folder: str, run_id: str) -> bool:
    """True if `folder` was made by clipdedup for `run_id`: its marker says so, or (runs
    published before the marker) its summary.json does."""
    marker = _read_json(FileSystems.join(folder, MARKER))
    if marker is not None:
        return marker.get("run_id") == run_id
    summary = _read_json(FileSystems.join(folder, SUMMARY))
    return bool(summary and "clipdedup_version" in summary and summary.get("run_id") == run_id)


def remove_marked(folder: str, run_id: str) -> bool:
    """Deletes `folder` if its marker names `run_id`, the marker last; False if not ours."""
    if _is_local(folder) and os.path.islink(folder):
        return False
    if _is_local(folder) and os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)  # nothing to lose (a kill after its marker went, or before it came)
        return True
    marker = _read_json(FileSystems.join(folder, MARKER))
    if marker is None or marker.get("run_id") != run_id:
        return False
    if _is_local(folder):
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name == MARKER:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        os.unlink(os.path.join(folder, MARKER))
        os.rmdir(folder)
    else:
        files = _contents(folder)
        rest = [p for p in files if not p.endswith("/" + MARKER)]
        if rest:
            FileSystems.delete(rest)
        FileSystems.delete([FileSystems.join(folder, MARKER)])
    return True


class RunFolder:
    """The staging and final folders of one run, and the lock of its run id."""

    def __init__(self, output: str, run_id: str):
        self.output = output
        self.run_id = validate_run_id(run_id)
        self.final = FileSystems.join(output, run_id)
        self.staging = FileSystems.join(output, staging_name(run_id))
        self.token = uuid.uuid4().hex[:12]
        self.lock = RunLock(output, run_id)
        self._staged = False

    def path(self, name: str) -> str:
        return FileSystems.join(self.staging, name)

    def start(self, overwrite: bool = False) -> None:
        """Takes the run id's lock, checks the run is new (or may be replaced), clears
        this run id's leftovers of a killed attempt and makes an empty staging folder.

        Raises:
            LockHeldError: another run holds the run id.
            RunExistsError: the run is published and `overwrite` is false.
            ForeignFolderError: a folder clipdedup did not make is in the way.
        """
        self.lock.acquire()
        try:
            self._check_final(overwrite)
            if _exists(self.staging):
                if not remove_marked(self.staging, self.run_id):
                    raise ForeignFolderError(
                        f"{self.staging} exists but was not made by clipdedup (no {MARKER}); "
                        "it is left alone: remove it yourself or choose another --run-id")
                log.warning("run %s: removed the staging folder of a killed attempt",
                            self.run_id)
            self._empty_trash()
            FileSystems.mkdirs(self.staging)
            self._staged = True
            self._mark(self.staging)
        except BaseException:
            self.lock.release()
            raise

    def release(self) -> None:
        """Gives the run id back (call in a `finally`)."""
        self.lock.release()

    def abandon(self) -> str | None:
        """After a failure: removes the staging folder if nothing but its marker is in
        it; else returns a note saying where the failed run's files are."""
        if not self._staged:
            return None
        try:
            return self._abandon()
        except OSError as exc:  # never hide the run's own error behind this one
            return f"the failed run's staging folder {self.staging} could not be checked: {exc}"

    def _abandon(self) -> str | None:
        if _exists(self.staging):
            if not [p for p in _contents(self.staging) if not p.endswith(MARKER)]:
                remove_marked(self.staging, self.run_id)
                return None
            return (f"the failed run's files are kept in {self.staging}; remove them with "
                    f"`clipdedup clean --output {self.output} --run-id {self.run_id}`")
        if _exists(self.final) and not FileSystems.exists(self._success_path()):
            return (f"{self.final} is not published (no {SUCCESS}); "
                    "rerun with the same --run-id to replace it")
        return None

    def merge_parts(self, table: str, schema, text_column: str | None = None) -> str:
        """Merges the part files of `table` into `<table>.parquet`, `MERGE_BATCH_ROWS` at a time.

        With `text_column`, the parts hold that extra string column: it is left
        out of `<table>.parquet` and written to `<table>.txt`, one line per row,
        so line k of the text is row k of the table.
        """
        folder = self.path(table)
        target = self.path(f"{table}.parquet.tmp")
        text_target = self.path(f"{table}.txt.tmp")
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(FileSystems.create(target))
            writer = stack.enter_context(pq.ParquetWriter(sink, schema))
            text = (stack.enter_context(FileSystems.create(text_target))
                    if text_column else None)
            for path in part_files(folder):
                # Batches, not row groups: a part's row group can hold millions of rows.
                for batch in open_parquet(path).iter_batches(MERGE_BATCH_ROWS, use_threads=False):
                    rows = pa.Table.from_batches([batch])
                    if text is not None:
                        lines = rows.column(text_column).to_pylist()
                        text.write("".join(line + "\n" for line in lines).encode("utf-8"))
                        rows = rows.drop_columns([text_column])
                    writer.write_table(rows.select(schema.names).cast(schema))
        self._delete_tree(folder)
        FileSystems.rename([target], [self.path(f"{table}.parquet")])
        if text_column:
            FileSystems.rename([text_target], [self.path(f"{table}.txt")])
        return self.path(f"{table}.parquet")

    def publish(self, summary: dict, overwrite: bool = False) -> str:
        """Writes summary.json, puts the old run (if any) aside, moves staging to the
        final folder, writes `_SUCCESS`, then deletes the old run."""
        _write(self.path(SUMMARY), summary)
        self._check_final(overwrite)
        if _exists(self.final):
            self._move_aside()
        self._move_into_place()
        _write(self._success_path(), {"run_id": self.run_id, "published_at": _now(),
                                      "counts": summary.get("counts", {})})
        self._staged = False
        try:
            self._empty_trash()
        except OSError as exc:  # the run is published; the old files are only clutter
            log.warning("run %s: could not delete the replaced run (%s); "
                        "`clipdedup clean --output %s` removes it", self.run_id, exc, self.output)
        return self.final

    def _success_path(self) -> str:
        return FileSystems.join(self.final, SUCCESS)

    def _check_final(self, overwrite: bool) -> None:
        if not _exists(self.final):
            return
        published = FileSystems.exists(self._success_path())
        if published and not overwrite:
            raise RunExistsError(
                f"{self.final} is a published run; choose another --run-id or pass --overwrite")
        if not is_ours(self.final, self.run_id):
            raise ForeignFolderError(
                f"{self.final} exists but is not a clipdedup run of this run id (no {MARKER} "
                f"or clipdedup {SUMMARY}); it is left alone, even with --overwrite: "
                "choose another --run-id or move it away")

    def _mark(self, folder: str) -> None:
        _write(FileSystems.join(folder, MARKER),
               {"clipdedup": "run folder", "run_id": self.run_id, "created_at": _now(),
                "token": self.token, "lock": self.lock.path})

    def _move_aside(self) -> None:
        """The old run stops being a run first (`_SUCCESS` removed), then moves out."""
        marker = _read_json(FileSystems.join(self.final, MARKER))
        if marker is None:  # published before markers: mark it, so a kill leaves it ours
            self._mark(self.final)
        if FileSystems.exists(self._success_path()):
            FileSystems.delete([self._success_path()])
        if _is_local(self.final):
            os.rename(self.final, FileSystems.join(self.output, trash_name(self.run_id,
                                                                             self.token)))
        else:  # no rename on object stores: delete, marker last
            remove_marked(self.final, self.run_id)

    def _move_into_place(self) -> None:
        if _is_local(self.staging):
            os.replace(self.staging, self.final)
            return
        # Object stores rename file by file: mark the target first and unmark the
        # source last, so a kill mid-way leaves two folders that are both ours.
        self._mark(self.final)
        prefix = self.staging.rstrip("/") + "/"
        sources = [p for p in _contents(self.staging) if not p.endswith("/" + MARKER)]
        FileSystems.rename(sources, [self.final.rstrip("/") + "/" + s[len(prefix):]
                                     for s in sources])
        FileSystems.delete([FileSystems.join(self.staging, MARKER)])

    def _empty_trash(self) -> None:
        """Deletes this run id's old runs moved aside by an overwrite (also a killed one's)."""
        if not _is_local(self.output) or not os.path.isdir(self.output):
            return
        prefix = trash_name(self.run_id, "")
        for name in sorted(os.listdir(self.output)):
            if name.startswith(prefix):
                remove_marked(os.path.join(self.output, name), self.run_id)

    def delete_tree(self, path: str) -> None:
        """Deletes `path` (a folder inside this run's staging folder) and what is in it."""
        if not path.startswith(self.staging.rstrip("/") + "/"):
            raise ValueError(f"{path} is not inside {self.staging}")
        self._delete_tree(path)

    def _delete_tree(self, path: str) -> None:
        if _is_local(path):
            shutil.rmtree(path, ignore_errors=True)
        elif files := _contents(path):  # objects under the prefix (it is no object itself)
            FileSystems.delete(files)


def _folders(output: str, prefix: str) -> list[str]:
    if _is_local(output):
        if not os.path.isdir(output):
            return []
        return [os.path.join(output, n) for n in sorted(os.listdir(output))
                if n.startswith(prefix) and os.path.isdir(os.path.join(output, n))]
    pattern = FileSystems.join(output, prefix + "*", MARKER)
    return sorted(m.path[:-len(MARKER) - 1]
                  for m in FileSystems.match([pattern])[0].metadata_list)


def _lock_ids(output: str) -> list[str]:
    if _is_local(output):
        names = os.listdir(output) if os.path.isdir(output) else []
    else:
        pattern = FileSystems.join(output, LOCK_PREFIX + "*")
        names = [m.path.rsplit("/", 1)[-1] for m in FileSystems.match([pattern])[0].metadata_list]
    return [n[len(LOCK_PREFIX):] for n in names if n.startswith(LOCK_PREFIX)]


def clean(output: str, run_id: str | None = None, force: bool = False) -> list[str]:
    """Removes clipdedup's staging and trash folders (and stale locks) under `output`.

    A folder is removed only if its marker names its run id and that run id's
    lock can be taken: no lock, or one whose process is gone on this host, or
    (with `force`) one held on another host. Published runs and folders
    without a marker are never touched.

    Returns:
        One line per folder or lock removed or left alone, saying why.
    """
    by_id: dict[str, list[str]] = {}
    lines = []
    for prefix in (STAGING_PREFIX, TRASH_PREFIX):
        for folder in _folders(output, prefix):
            name = folder.rstrip("/").rsplit("/", 1)[-1]
            if run_id is not None and name != staging_name(run_id) and not name.startswith(
                    trash_name(run_id, "")):
                continue
            marker = _read_json(FileSystems.join(folder, MARKER))
            if marker is None or not isinstance(marker.get("run_id"), str):
                lines.append(f"left alone {folder}: no {MARKER}, not made by clipdedup")
                continue
            by_id.setdefault(marker["run_id"], []).append(folder)
    for lock_id in _lock_ids(output):
        by_id.setdefault(lock_id, [])
    for rid in sorted(by_id):
        if run_id is not None and rid != run_id:
            continue
        try:
            validate_run_id(rid)
        except ValueError:
            continue
        lock = RunLock(output, rid)
        stale = lock.holder()
        try:
            lock.acquire(force=force)
        except LockHeldError as exc:
            lines.append(f"left alone {', '.join(by_id[rid]) or lock.path}: {exc}")
            continue
        try:
            for folder in by_id[rid]:
                if remove_marked(folder, rid):
                    lines.append(f"removed {folder}")
        finally:
            lock.release()
        if stale is not None:
            lines.append(f"removed the stale lock {lock.path} of {stale}")
    if not lines:
        lines.append(f"nothing to clean in {output}"
                     + (f" for run id {run_id}" if run_id else ""))
    return lines
