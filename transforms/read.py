"""Stage 1: find input files and read image records out of them.

`MatchInputs` turns the user's globs and directories into file metadata
through Beam's `fileio`, so local paths, `gs://` and `s3://` behave the same;
a pattern that matches nothing fails the run instead of reading nothing.
`ReadRecords` opens each file, picks the reader by extension (tar shard,
Parquet, image file) and emits `ImageRecord`s, plus, when `report=True`, an
`errors` output (rows of `ERRORS_SCHEMA`) and a `shards` output (one row of
`SHARDS_SCHEMA` per file). Reading bytes is never wrapped in an exception
handler: storage errors propagate and the runner retries the bundle.
"""

from __future__ import annotations

import logging
import os

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import formats
from transforms import records as R
from transforms.metrics import Progress, counter

log = logging.getLogger(__name__)

ERRORS, SHARDS = "errors", "shards"


def expand_input(pattern: str) -> str:
    """A directory becomes a recursive glob of everything below it."""
    if pattern.endswith("/") or (FileSystems.get_scheme(pattern) is None
                                 and os.path.isdir(pattern)):
        return FileSystems.join(pattern.rstrip("/"), "**")
    return pattern


class MatchInputs(beam.PTransform):
    """Globs/directories -> `FileMetadata` of every input file, each once.

    Files whose extension is not an input kind (`.json`, `.txt` beside images)
    are skipped and counted (`files_skipped`). Fails if a pattern matches
    nothing.
    """

    def __init__(self, patterns: list[str] | tuple[str, ...]):
        super().__init__()
        if not patterns:
            raise ValueError("no inputs given: pass --input (a glob or a directory)")
        self._patterns = [expand_input(p) for p in patterns]

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[fileio.FileMetadata]:
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
            | "KeyByPath" >> beam.Map(lambda m: (m.path, m))
            | "OncePerFile" >> beam.CombinePerKey(lambda ms: next(iter(ms)))
            | "Values" >> beam.Values()
            | "KnownKinds" >> beam.Filter(_is_input_file)
        )


def _is_input_file(metadata: fileio.FileMetadata) -> bool:
    if formats.input_kind(metadata.path) is not None:
        return True
    counter("files_skipped").inc()
    log.info("skipping %s: not a tar, Parquet or image file", metadata.path)
    return False


class _ReadFileFn(beam.DoFn):
    def __init__(self, image_column: str, key_column: str | None, with_data: bool,
                 report: bool):
        self._image_column = image_column
        self._key_column = key_column
        self._with_data = with_data
        self._report = report
        self._progress = None

    def setup(self):
        self._progress = Progress("read", enabled=self._report)

    def _reader(self, kind: str, uri: str, fileobj):
        if kind == formats.TAR:
            return formats.read_tar_shard(uri, fileobj)
        if kind == formats.PARQUET:
            return formats.read_parquet_file(uri, fileobj, self._image_column, self._key_column)
        return formats.read_image_file(uri, fileobj)

    def process(self, metadata: fileio.FileMetadata):
        uri = metadata.path
        kind = formats.input_kind(uri)
        images = errors = shard_errors = 0
        with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for item in self._reader(kind, uri, f):
                if isinstance(item, R.ImageRecord) and item.file_size == 0:
                    item = R.record_error(item, R.READ, R.EMPTY_FILE, "zero bytes")
                if isinstance(item, R.ImageRecord):
                    images += 1
                    yield item if self._with_data else item.without_data()
                    continue
                errors += 1
                shard_errors += item["record_id"] is None
                if self._report:
                    yield beam.pvalue.TaggedOutput(ERRORS, item)
        if not self._report:
            return
        records = images + errors - shard_errors  # a whole-shard error is not a record
        counter("files_read").inc()
        counter("records_read").inc(records)
        counter("read_failed").inc(records - images)
        self._progress.add(records)
        yield beam.pvalue.TaggedOutput(SHARDS, {
            "source_uri": uri, "input_kind": kind, "records_read": records,
            "images_found": images, "errors": errors, "ended_cleanly": shard_errors == 0})


class ReadRecords(beam.PTransform):
    """`FileMetadata` -> `ImageRecord` (main), error rows, shard status rows.

    Args:
        image_column / key_column: Parquet columns (see `formats.parquet_files`).
        with_data: keep the encoded bytes on each record (False for the index
            pass, which only needs ids and hashes).
        report: also emit the `errors` and `shards` outputs; the second read
            of the same files passes False so nothing is reported twice.
    """

    def __init__(self, image_column: str = "image", key_column: str | None = None,
                 with_data: bool = True, report: bool = True):
        super().__init__()
        self._fn = _ReadFileFn(image_column, key_column, with_data, report)

    def expand(self, files: beam.PCollection[fileio.FileMetadata]):
        return files | "ReadFiles" >> beam.ParDo(self._fn).with_outputs(
            ERRORS, SHARDS, main="records")
