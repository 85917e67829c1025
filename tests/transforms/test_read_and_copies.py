import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import encode, random_image, write_parquet_images, write_tar
from transforms.byte_copies import FindByteCopies, SkipByteCopies
from transforms.read.files import MatchInputs, ReadRecords


@pytest.fixture
def dataset(tmp_path):
    a, b = encode(random_image(1)), encode(random_image(2))
    (tmp_path / "shards").mkdir()
    write_tar(str(tmp_path / "shards" / "0.tar"), [("x.jpg", a), ("y.jpg", b), ("z.json", b"{}")])
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "copy.jpg").write_bytes(a)
    (tmp_path / "files" / "notes.txt").write_text("not an input")
    write_parquet_images(str(tmp_path / "pq" / "0.parquet"), [b, None], "struct")
    return tmp_path, a, b


def test_read_counts_and_reports(dataset):
    root, _, _ = dataset
    with TestPipeline(runner="DirectRunner") as p:
        files = p | MatchInputs([str(root / "shards" / "*.tar"), str(root / "files"),
                                 str(root / "pq" / "*.parquet")])
        out = files | ReadRecords(with_data=False)
        assert_that(out.records | beam.Map(lambda r: (r.key, r.data)),
                    equal_to([("x", None), ("y", None), (str(root / "files" / "copy.jpg"), None),
                              ("img0.jpg", None)]), label="Records")
        assert_that(out.errors | beam.Map(lambda e: e["reason"]),
                    equal_to(["no_image_member", "missing_bytes"]), label="Errors")
        assert_that(out.shards | beam.Map(lambda s: (s["input_kind"], s["records_read"],
                                                     s["images_found"])),
                    equal_to([("tar", 3, 2), ("image", 1, 1), ("parquet", 2, 1)]),
                    label="Shards")


def test_match_fails_on_empty_glob(tmp_path):
    with pytest.raises(Exception, match="No files matched|matched no files|MatchAll|match"):
        with TestPipeline(runner="DirectRunner") as p:
            _ = p | MatchInputs([str(tmp_path / "nothing-*.tar")])


def test_byte_copies_star_around_smallest_id(dataset):
    root, _, _ = dataset
    with TestPipeline(runner="DirectRunner") as p:
        files = p | MatchInputs([str(root / "shards" / "*.tar"), str(root / "files"),
                                 str(root / "pq" / "*.parquet")])
        records = (files | "Index" >> ReadRecords(with_data=False)).records
        pairs = records | FindByteCopies()
        assert_that(pairs | beam.Map(lambda r: r["record_id_a"] < r["record_id_b"]),
                    equal_to([True, True]), label="Ordered")
        kept = records | SkipByteCopies(pairs) | beam.combiners.Count.Globally()
        assert_that(kept, equal_to([2]), label="OnePerSha")
