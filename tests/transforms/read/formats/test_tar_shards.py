
from tests.conftest import encode, random_image, write_tar
from transforms import records as R
from transforms.read.formats.tar_shards import read_tar_shard, sample_key


def _read(path):
    with open(path, "rb") as f:
        return list(read_tar_shard(path, f))


def test_sample_key_splits_at_first_dot_of_basename():
    assert sample_key("a/b/000123.jpg") == ("a/b/000123", "jpg")
    assert sample_key("x.seg.PNG") == ("x", "seg.png")


def test_groups_members_by_key_and_skips_metadata(tmp_path):
    jpg = encode(random_image(1))
    path = write_tar(str(tmp_path / "s.tar"), [
        ("000.jpg", jpg), ("000.json", b"{}"), ("001.txt", b"caption"), ("001.png",
                                                                          encode(random_image(2), "PNG")),
    ])
    items = _read(path)
    assert [type(i) for i in items] == [R.ImageRecord, R.ImageRecord]
    assert [i.key for i in items] == ["000", "001"]
    assert items[0].data == jpg and items[0].file_size == len(jpg)


def test_duplicate_keys_keep_unique_ids(tmp_path):
    jpg = encode(random_image(1))
    path = write_tar(str(tmp_path / "s.tar"), [("k.jpg", jpg), ("other.jpg", jpg), ("k.jpg", jpg)])
    ids = [i.record_id for i in _read(path)]
    assert len(ids) == 3 and len(set(ids)) == 3


def test_unsafe_names_and_samples_without_image_are_errors(tmp_path):
    jpg = encode(random_image(1))
    path = write_tar(str(tmp_path / "s.tar"), [("../evil.jpg", jpg), ("/abs.jpg", jpg),
                                               ("meta.json", b"{}"), ("ok.jpg", jpg)])
    items = _read(path)
    reasons = [i["reason"] for i in items if isinstance(i, dict)]
    assert reasons == [R.BAD_MEMBER_NAME, R.BAD_MEMBER_NAME, R.NO_IMAGE_MEMBER]
    assert [i.key for i in items if isinstance(i, R.ImageRecord)] == ["ok"]


def test_corrupt_header_after_first_member_is_reported(tmp_path):
    jpg = encode(random_image(1))
    path = write_tar(str(tmp_path / "s.tar"), [("a.jpg", jpg), ("b.jpg", jpg), ("c.jpg", jpg)])
    data = bytearray(open(path, "rb").read())
    second_header = 512 + -(-len(jpg) // 512) * 512
    data[second_header:second_header + 100] = b"\xff" * 100  # garbage header
    open(path, "wb").write(bytes(data))
    items = _read(path)
    assert isinstance(items[0], R.ImageRecord)
    assert items[-1]["reason"] == R.SHARD_TRUNCATED and items[-1]["record_id"] is None


def test_truncated_shard_is_reported(tmp_path):
    jpg = encode(random_image(1), quality=95)
    path = write_tar(str(tmp_path / "s.tar"), [("a.jpg", jpg), ("b.jpg", jpg)])
    data = open(path, "rb").read()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: 512 + len(jpg) + 700])  # inside b's data
    items = _read(str(cut))
    assert any(isinstance(i, dict) and i["reason"] in (R.SHARD_TRUNCATED, R.TRUNCATED)
               for i in items)
    assert sum(isinstance(i, R.ImageRecord) for i in items) == 1


def test_not_a_tar(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"hello" * 10)
    items = _read(str(path))
    assert len(items) == 1 and items[0]["record_id"] is None


def test_image_less_key_repeated_non_adjacently_keeps_unique_ids(tmp_path):
    jpg = encode(random_image(1))
    path = write_tar(str(tmp_path / "s.tar"), [("k.json", b"{}"), ("other.jpg", jpg),
                                               ("k.txt", b"again")])
    errors = [i for i in _read(path) if isinstance(i, dict)]
    assert [e["reason"] for e in errors] == [R.NO_IMAGE_MEMBER, R.NO_IMAGE_MEMBER]
    assert len({e["record_id"] for e in errors}) == 2


def test_member_over_max_bytes_is_an_error_not_read(tmp_path):
    small, big = encode(random_image(1)), encode(random_image(2)) + bytes(5000)
    path = write_tar(str(tmp_path / "s.tar"), [("a.jpg", small), ("b.jpg", big)])
    with open(path, "rb") as f:
        items = list(read_tar_shard(path, f, max_member_bytes=len(small)))
    assert isinstance(items[0], R.ImageRecord)
    assert items[1]["reason"] == R.FILE_TOO_LARGE and items[1]["key"] == "b"


def test_gzip_compressed_tar_is_named_in_the_error(tmp_path):
    import gzip

    path = write_tar(str(tmp_path / "s.tar"), [("a.jpg", encode(random_image(1)))])
    raw = open(path, "rb").read()
    open(path, "wb").write(gzip.compress(raw))
    (item,) = _read(path)
    assert item["reason"] == R.CORRUPT and "gzip-compressed" in item["message"]
