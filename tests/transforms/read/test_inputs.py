"""Finding input files: every path read once or listed with its reason, and
files that must not be opened (FIFOs, devices, oversized) refused."""

from __future__ import annotations

import os
import signal

import apache_beam as beam
import pytest
from apache_beam.io.filesystem import FileMetadata, FileSystem
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import encode, random_image, write_parquet_images, write_tar
from transforms import records as R
from transforms.read.files import ListInputs, ReadRecords, list_inputs
from transforms.read.formats import read_image_file


def _found(*patterns):
    files, skipped = set(), set()
    for pattern in patterns:
        for entry in list_inputs(pattern):
            if isinstance(entry, FileMetadata):
                files.add(entry.path)
            else:
                skipped.add((entry["source_uri"], entry["reason"]))
    return files, skipped


@pytest.fixture
def tree(tmp_path):
    root = tmp_path.resolve()
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    jpg = encode(random_image(1))
    for name in ("a.jpg", "b.jfif", "c.jpe", "sub/d.JPG"):
        (data / name).write_bytes(jpg)
    (data / "e.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (data / "f.tgz").write_bytes(b"\x1f\x8b")
    (data / "g.tar.gz").write_bytes(b"\x1f\x8b")
    (data / "notes.txt").write_text("x")
    (data / "gone.jpg").symlink_to(root / "missing.jpg")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "h.png").write_bytes(encode(random_image(2), "PNG"))
    (data / "linked").symlink_to(root / "elsewhere")
    (data / "loop").symlink_to(data)  # into its own ancestor
    spark = root / "tables" / "t.parquet"
    write_parquet_images(str(spark / "part-00000.parquet"), [jpg])
    write_parquet_images(str(spark / "part-00001.parquet"), [jpg])
    (spark / "_SUCCESS").write_bytes(b"")
    (spark / ".part-00000.parquet.crc").write_bytes(b"c")
    return root


def test_directory_listing_reads_images_links_and_lists_the_rest(tree):
    data = tree / "data"
    files, skipped = _found(str(data))
    assert files == {str(data / n) for n in ("a.jpg", "b.jfif", "c.jpe", "sub/d.JPG")} | {
        str(tree / "elsewhere" / "h.png")}
    assert skipped == {(str(data / "e.heic"), R.UNSUPPORTED_FORMAT),
                       (str(data / "f.tgz"), R.UNSUPPORTED_FORMAT),
                       (str(data / "g.tar.gz"), R.UNSUPPORTED_FORMAT),
                       (str(data / "notes.txt"), R.NOT_AN_INPUT),
                       (str(data / "gone.jpg"), R.DANGLING_SYMLINK)}


def test_glob_matching_a_spark_folder_reads_its_parts(tree):
    spark = tree / "tables" / "t.parquet"
    files, skipped = _found(str(tree / "tables" / "*.parquet"))
    assert files == {str(spark / "part-00000.parquet"), str(spark / "part-00001.parquet")}
    assert skipped == {(str(spark / "_SUCCESS"), R.NOT_AN_INPUT),
                       (str(spark / ".part-00000.parquet.crc"), R.NOT_AN_INPUT)}


def test_globs_keep_beams_meaning(tree):
    data = tree / "data"
    assert _found(str(data / "*.jpg"))[0] == {str(data / "a.jpg")}
    assert _found(str(data / "**.JPG"))[0] == {str(data / "sub" / "d.JPG")}
    with pytest.raises(FileNotFoundError, match="matches no files"):
        list(list_inputs(str(data / "nothing-*.tar")))


def test_one_folder_under_several_spellings_is_read_once(tree, monkeypatch):
    monkeypatch.chdir(tree)
    (tree / "alias").symlink_to(tree / "data")
    with TestPipeline(runner="DirectRunner") as p:
        listed = p | ListInputs(["data", "./data/", "alias", str(tree / "data" / "*.jpg")])
        assert_that(listed["files"] | "CountFiles" >> beam.combiners.Count.Globally(),
                    equal_to([5]), label="Files")
        assert_that(listed["skipped"] | "CountSkipped" >> beam.combiners.Count.Globally(),
                    equal_to([5]), label="Skipped")


@pytest.fixture
def deadline():
    """Fails a test that blocks (a FIFO opened for reading) instead of hanging."""
    def expired(*_):
        raise TimeoutError("blocked reading a file")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifo_device_and_oversized_files_are_error_rows(tmp_path, deadline):
    root = tmp_path.resolve()
    os.mkfifo(root / "pipe.jpg")
    (root / "zero.jpg").symlink_to("/dev/zero")
    (root / ".jpg").symlink_to("/dev/zero")
    (root / "big.jpg").write_bytes(encode(random_image(1)) + bytes(3000))
    (root / "ok.jpg").write_bytes(encode(random_image(2)))
    os.mkfifo(root / "pipe.tar")
    with TestPipeline(runner="DirectRunner") as p:
        out = (p | ListInputs([str(root)]))["files"] | ReadRecords(max_file_bytes=2000)
        assert_that(out.records | beam.Map(lambda r: os.path.basename(r.key)),
                    equal_to(["ok.jpg"]), label="Records")
        assert_that(out.errors | beam.Map(lambda e: (os.path.basename(e["source_uri"]),
                                                     e["reason"], e["record_id"] is None)),
                    equal_to([("pipe.jpg", R.NOT_A_REGULAR_FILE, False),
                              ("zero.jpg", R.NOT_A_REGULAR_FILE, False),
                              (".jpg", R.NOT_A_REGULAR_FILE, False),
                              ("big.jpg", R.FILE_TOO_LARGE, False),
                              ("pipe.tar", R.NOT_A_REGULAR_FILE, True)]), label="Errors")
        assert_that(out.shards | beam.Map(lambda s: s["records_read"]) | beam.CombineGlobally(sum),
                    equal_to([5]), label="Records read")


def test_image_reader_stops_at_the_cap():
    """Even past the listing's checks (a remote file whose size grew), an
    image file is never read beyond max_bytes + 1."""
    class Endless:
        def read(self, n=-1):
            assert n > 0, "unbounded read"
            return bytes(n)

    (item,) = read_image_file("x.jpg", Endless(), max_bytes=100)
    assert item["reason"] == R.FILE_TOO_LARGE


def test_tar_and_parquet_of_any_size_are_read(tmp_path):
    blob = encode(random_image(1))
    write_tar(str(tmp_path / "s.tar"), [("a.jpg", blob)])
    with TestPipeline(runner="DirectRunner") as p:
        out = (p | ListInputs([str(tmp_path / "s.tar")]))["files"] | ReadRecords(
            max_file_bytes=len(blob) + 1)
        assert_that(out.records | beam.Map(lambda r: r.key), equal_to(["a"]))


class _Bucket(FileSystem):
    """A flat object store (no folders) under `objects://`, listing as GCS does."""

    OBJECTS: dict[str, int] = {}

    @classmethod
    def scheme(cls):
        return "objects"

    def has_dirs(self):
        return False

    def _list(self, prefix):
        for path, size in sorted(self.OBJECTS.items()):
            if path.startswith(prefix):
                yield FileMetadata(path, size, 0.0)

    def exists(self, path):
        return path in self.OBJECTS

    def metadata(self, path):
        return FileMetadata(path, self.OBJECTS[path], 0.0)

    def join(self, base, *parts):
        return "/".join([base.rstrip("/"), *parts])

    def _unused(self, *args, **kwargs):
        raise NotImplementedError

    split = mkdirs = create = open = copy = rename = delete = size = last_updated = _unused


def test_remote_globs_read_objects_below_a_matched_folder(monkeypatch):
    b = "objects://bucket"
    monkeypatch.setattr(_Bucket, "OBJECTS", {
        f"{b}/a.parquet": 1, f"{b}/t.parquet/part-0.parquet": 1, f"{b}/t.parquet/_SUCCESS": 1,
        f"{b}/deep/x.parquet": 1, f"{b}/notes.parquet.txt": 1, f"{b}/s/p.parquet/part-1.parquet": 1})
    files, skipped = _found(f"{b}/*.parquet")
    assert files == {f"{b}/a.parquet", f"{b}/t.parquet/part-0.parquet"}
    assert skipped == {(f"{b}/t.parquet/_SUCCESS", R.NOT_AN_INPUT)}
    assert _found(f"{b}/s/p.parquet")[0] == {f"{b}/s/p.parquet/part-1.parquet"}
    assert len(_found(f"{b}/")[0]) == 4
