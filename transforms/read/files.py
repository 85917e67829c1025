"""Stage 1, read: find input files and read image records out of them.

`ListInputs` turns the user's globs and directories into file metadata, each
file once, plus a row (`SKIPPED_SCHEMA`) for every path it found but will not
read, with the reason; a pattern that finds nothing fails the run. Remote
patterns (`gs://`, `s3://`) go through Beam's `FileSystems.match`. Local ones
are walked here, because Beam's local glob (`os.walk` without following links,
then a regex on each file path) silently drops symlinked sub-directories,
dangling symlinks (their size raises and the error is swallowed) and the part
files of a folder a glob matches (a Spark `x.parquet/`). Here a directory a
pattern matches is read recursively, symlinked directories are followed (not
into their own ancestors), and every local file is named by its canonical
path, so one folder given under two spellings is read once. Remote patterns
(`list_remote`) read the objects below a "folder" a glob matches, too.

`ReadRecords` opens each file, picks the reader by extension (tar shard,
Parquet, image file) and emits `ImageRecord`s, plus, when `report=True`, an
`errors` output (rows of `ERRORS_SCHEMA`) and a `shards` output (one row of
`SHARDS_SCHEMA` per file). Both passes emit a `fingerprints` output (uri, a
digest of every record id + sha256 found), so a file that changed between
the passes is detected. Reading bytes is never wrapped in an exception
handler: storage errors propagate and the runner retries the bundle.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems

from transforms import records as R
from transforms.metrics import Progress, counter
from transforms.read import formats

log = logging.getLogger(__name__)

ERRORS, SHARDS, SKIPPED, FINGERPRINTS = "errors", "shards", "skipped", "fingerprints"
DEFAULT_MAX_FILE_BYTES = 256 << 20
_GLOB_CHARS = re.compile(r"[*?[]")


def expand_input(pattern: str) -> str:
    """A directory becomes a recursive glob of everything below it."""
    if pattern.endswith("/") or (FileSystems.get_scheme(pattern) is None
                                 and os.path.isdir(pattern)):
        return FileSystems.join(pattern.rstrip("/"), "**")
    return pattern


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def skipped_row(uri: str, reason: str, message: str) -> dict[str, str]:
    """A row of `skipped.parquet` (`schemas.SKIPPED_SCHEMA`)."""
    return {"source_uri": uri, "reason": reason, "message": message}


def _local_entry(path: str) -> FileMetadata | dict[str, str] | None:
    """Metadata of a found local path under its canonical name (None: it vanished).

    A regular file is named by its real path (one file reached by two names
    is read once); a link to nothing, a FIFO or a device keeps its own name
    in its real folder (its target, e.g. /dev/zero, says nothing about what
    the user gave) and the reader reports it.
    """
    named = os.path.join(os.path.realpath(os.path.dirname(path) or "."),
                         os.path.basename(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return skipped_row(named, R.DANGLING_SYMLINK,
                               f"symlink to missing {os.readlink(path)!r}")
        return None  # removed while listing, as Beam's own listing treats it
    if stat.S_ISREG(st.st_mode):
        return FileMetadata(os.path.realpath(path), st.st_size, st.st_mtime)
    return FileMetadata(named, 0, st.st_mtime)


def _walk(folder: str, take: re.Pattern | None, depth_left: float,
          ancestors: frozenset[str]) -> Iterator[FileMetadata | dict[str, str]]:
    """Entries below `folder` whose path `take` matches (every one if None)."""
    with os.scandir(folder or ".") as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = os.path.join(folder, entry.name)
        if entry.is_dir():  # follows symlinks
            real = os.path.realpath(path)
            if real in ancestors:  # a link into its own ancestor: read there already
                continue
            whole = take is None or take.match(path) is not None
            if whole or depth_left > 0:
                yield from _walk(path, None if whole else take, depth_left - 1,
                                 ancestors | {real})
        elif take is None or take.match(path):
            found = _local_entry(path)
            if found is not None:
                yield found


def list_local(pattern: str) -> Iterator[FileMetadata | dict[str, str]]:
    """Files (metadata) and skipped rows a local path, directory or glob finds."""
    if not _GLOB_CHARS.search(pattern):
        if os.path.isdir(pattern):
            yield from _walk(pattern.rstrip("/") or "/", None, 0,
                             frozenset({os.path.realpath(pattern)}))
        elif os.path.lexists(pattern):
            found = _local_entry(pattern)
            if found is not None:
                yield found
        return
    prefix = _GLOB_CHARS.split(pattern, 1)[0]
    root = os.path.dirname(prefix)
    rest = pattern[len(root):].lstrip("/")
    depth = float("inf") if "**" in rest else rest.count("/")
    if root and not os.path.isdir(root):
        return
    take = re.compile(FileSystem.translate_pattern(pattern))
    yield from _walk(root, take, depth, frozenset({os.path.realpath(root or ".")}))


def _under_match(path: str, take: re.Pattern) -> bool:
    """`path`, or a folder above it, matches `take`."""
    return take.match(path) is not None or any(
        take.match(path[:i]) for i, c in enumerate(path) if c == "/")


def list_remote(pattern: str) -> list[FileMetadata]:
    """Objects a `gs://`/`s3://` pattern finds, the objects below a "folder"
    it names or matches included (a Spark `x.parquet/` written to a bucket).

    One listing: the glob is widened to `pattern**` (object stores list every
    name below the glob's prefix anyway) and filtered here.
    """
    def match(p: str) -> list[FileMetadata]:
        return FileSystems.match([p])[0].metadata_list

    if not _GLOB_CHARS.search(pattern):
        return match(expand_input(pattern)) or match(pattern.rstrip("/") + "/**")
    if pattern.endswith("**"):
        return match(pattern)
    take = re.compile(FileSystem.translate_pattern(pattern))
    return [m for m in match(pattern + "**") if _under_match(m.path, take)]


def list_inputs(pattern: str) -> Iterator[FileMetadata | dict[str, str]]:
    """What `pattern` finds: `FileMetadata` to read, or skipped rows.

    Raises:
        FileNotFoundError: the pattern finds nothing at all.
    """
    found = False
    entries = list_local(pattern) if _is_local(pattern) else list_remote(pattern)
    for entry in entries:
        found = True
        if isinstance(entry, FileMetadata) and formats.input_kind(entry.path) is None:
            entry = skipped_row(entry.path, *formats.skip_reason(entry.path))
        yield entry
    if not found:
        raise FileNotFoundError(f"input {pattern!r} matches no files")


class _ListFn(beam.DoFn):
    def process(self, pattern: str):
        for entry in list_inputs(pattern):
            if isinstance(entry, FileMetadata):
                yield entry
            else:
                counter("files_skipped").inc()
                log.debug("skipping %s: %s", entry["source_uri"], entry["message"])
                yield beam.pvalue.TaggedOutput(SKIPPED, entry)


class ListInputs(beam.PTransform):
    """Globs/directories -> {"files": `FileMetadata` of each input file once,
    "skipped": rows of `SKIPPED_SCHEMA`, each path once}.

    Fails if a pattern finds nothing.
    """

    def __init__(self, patterns: list[str] | tuple[str, ...]):
        super().__init__()
        if not patterns:
            raise ValueError("no inputs given: pass --input (a glob or a directory)")
        self._patterns = list(patterns)

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        listed = (pbegin
                  | "Patterns" >> beam.Create(self._patterns)
                  | "List" >> beam.ParDo(_ListFn()).with_outputs(SKIPPED, main="files"))
        files = (listed.files
                 | "KeyByPath" >> beam.Map(lambda m: (m.path, m))
                 | "OncePerFile" >> beam.CombinePerKey(
                     lambda ms: min(ms, key=lambda m: (m.size_in_bytes, m.last_updated_in_seconds)))
                 | "Values" >> beam.Values())
        skipped = (listed[SKIPPED]
                   | "AsTuples" >> beam.Map(lambda r: (r["source_uri"], r["reason"], r["message"]))
                   | "OncePerPath" >> beam.Distinct()
                   | "AsRows" >> beam.MapTuple(skipped_row))
        return {"files": files, "skipped": skipped}


class MatchInputs(beam.PTransform):
    """Globs/directories -> `FileMetadata` of every input file, each once
    (`ListInputs` without the skipped rows)."""

    def __init__(self, patterns: list[str] | tuple[str, ...]):
        super().__init__()
        self._list = ListInputs(patterns)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[fileio.FileMetadata]:
        return (pbegin | "ListInputs" >> self._list)["files"]


def listed_as(metadata: FileMetadata) -> dict[str, Any]:
    """The `file_size` and `last_modified` columns of a shard row: the file as the
    listing saw it, so the next night's listing compares like with like."""
    return {"file_size": metadata.size_in_bytes,
            "last_modified": metadata.last_updated_in_seconds}


class _ReadFileFn(beam.DoFn):
    def __init__(self, image_column: str, key_column: str | None, with_data: bool,
                 report: bool, max_file_bytes: int):
        self._image_column = image_column
        self._key_column = key_column
        self._with_data = with_data
        self._report = report
        self._max_bytes = max_file_bytes
        self._progress = None

    def setup(self):
        self._progress = Progress("read", enabled=self._report)

    def _reader(self, kind: str, uri: str, fileobj):
        if kind == formats.TAR:
            return formats.read_tar_shard(uri, fileobj, self._max_bytes)
        if kind == formats.PARQUET:
            return formats.read_parquet_file(uri, fileobj, self._image_column, self._key_column)
        return formats.read_image_file(uri, fileobj, self._max_bytes)

    def _refusal(self, kind: str, metadata: FileMetadata) -> dict[str, Any] | None:
        """An error row for a file that must not be opened, else None."""
        uri, size = metadata.path, metadata.size_in_bytes
        problem = None
        if _is_local(uri):
            st = os.stat(uri)  # a storage call: its OSError propagates
            size = st.st_size
            if not stat.S_ISREG(st.st_mode):
                problem = (R.NOT_A_REGULAR_FILE, "not a regular file (a FIFO, device or socket)")
        if problem is None and kind == formats.IMAGE and size > self._max_bytes:
            problem = (R.FILE_TOO_LARGE, f"{size} bytes > max_file_bytes {self._max_bytes}")
        if problem is None:
            return None
        if kind == formats.IMAGE:  # one file, one record
            return R.error_row(R.READ, *problem, source_uri=uri, key=uri,
                               record_id=R.make_record_id(uri, "file"))
        return R.error_row(R.READ, *problem, source_uri=uri)

    def _items(self, kind: str, metadata: FileMetadata):
        refused = self._refusal(kind, metadata)
        if refused is not None:
            yield refused
            return
        with FileSystems.open(metadata.path,
                              compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for item in self._reader(kind, metadata.path, f):
                if isinstance(item, R.ImageRecord) and item.file_size == 0:
                    item = R.record_error(item, R.READ, R.EMPTY_FILE, "zero bytes")
                yield item

    def process(self, metadata: FileMetadata):
        uri = metadata.path
        kind = formats.input_kind(uri)
        images = errors = shard_errors = 0
        digest = hashlib.sha256()
        for item in self._items(kind, metadata):
            if isinstance(item, R.ImageRecord):
                digest.update(f"{item.record_id} {item.sha256}\n".encode())
                images += 1
                yield item if self._with_data else item.without_data()
                continue
            digest.update(f"{item['record_id']} {item['reason']}\n".encode())
            errors += 1
            shard_errors += item["record_id"] is None
            if self._report:
                yield beam.pvalue.TaggedOutput(ERRORS, item)
        yield beam.pvalue.TaggedOutput(FINGERPRINTS, (uri, digest.hexdigest()))
        if not self._report:
            return
        records = images + errors - shard_errors  # a whole-shard error is not a record
        counter("files_read").inc()
        counter("records_read").inc(records)
        counter("read_failed").inc(records - images)
        self._progress.add(records)
        yield beam.pvalue.TaggedOutput(SHARDS, {
            "source_uri": uri, "input_kind": kind, "records_read": records,
            "images_found": images, "errors": errors, "ended_cleanly": shard_errors == 0,
            **listed_as(metadata)})


class ReadRecords(beam.PTransform):
    """`FileMetadata` -> `ImageRecord` (main), error rows, shard status rows,
    (uri, digest) fingerprints.

    Args:
        image_column / key_column: Parquet columns (see `formats.parquet_files`).
        with_data: keep the encoded bytes on each record (False for the index
            pass, which only needs ids and hashes).
        report: also emit the `errors` and `shards` outputs; the second read
            of the same files passes False so nothing is reported twice.
        max_file_bytes: image files and tar members larger than this are
            `file_too_large` errors, never read into memory.
    """

    def __init__(self, image_column: str = "image", key_column: str | None = None,
                 with_data: bool = True, report: bool = True,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        super().__init__()
        self._fn = _ReadFileFn(image_column, key_column, with_data, report, max_file_bytes)

    def expand(self, files: beam.PCollection[FileMetadata]):
        return files | "ReadFiles" >> beam.ParDo(self._fn).with_outputs(
            ERRORS, SHARDS, FINGERPRINTS, main="records")


def changed_files(joined: tuple[str, dict[str, list[str]]]) -> Iterator[dict[str, Any]]:
    """Whole-file `changed_during_run` error rows from (uri, {pass: [digest]})."""
    uri, digests = joined
    if list(digests["index"]) != list(digests["data"]):
        counter("files_changed").inc()
        yield R.error_row(R.READ, R.CHANGED_DURING_RUN,
                          "the file changed while the run read it: the data pass found other "
                          "records or bytes than the index pass", source_uri=uri)


class FindChangedFiles(beam.PTransform):
    """Fingerprints of the index and data passes -> error rows of files that differ."""

    def __init__(self, index_fingerprints: beam.PCollection):
        super().__init__()
        self._index = index_fingerprints

    def expand(self, data_fingerprints: beam.PCollection) -> beam.PCollection[dict]:
        return ({"index": self._index, "data": data_fingerprints}
                | "JoinByUri" >> beam.CoGroupByKey()
                | "Differ" >> beam.FlatMap(changed_files))
