"""keep.txt / drop.txt lines: unique, one line per record, decodable."""

from transforms.manifest.manifest_text import encode_part, manifest_lines, split_line, text


def test_image_files_are_their_uri_tar_members_and_rows_uri_hash_key():
    lines = manifest_lines(["r1", "r2", "r3"], ["/d/a.jpg", "s/0.tar", "t.parquet"],
                           ["/d/a.jpg", "000", "17"])
    assert lines == ["/d/a.jpg", "s/0.tar#000", "t.parquet#17"]


def test_keys_repeated_across_files_or_inside_one_still_give_unique_lines():
    ids = ["r1", "r2", "r3", "r4"]
    uris = ["s/0.tar", "s/1.tar", "s/1.tar", None]
    keys = ["000", "000", "000", None]
    lines = manifest_lines(ids, uris, keys)
    assert lines[0] == "s/0.tar#000"  # same key in another shard: the uri tells them apart
    assert lines[1:3] == ["s/1.tar#000#r2", "s/1.tar#000#r3"]  # same key in one shard
    assert lines[3] == "r4"  # no source_uri: the record id
    assert len(set(lines)) == len(lines)


def test_line_breaks_and_separators_are_percent_encoded_and_decode_back():
    uri, key = "gs://b/x#1%.tar", "a\nb\rc\u2028d\x85e#f"
    (line,) = manifest_lines(["r"], [uri], [key])
    assert line == "gs://b/x%231%25.tar#a%0Ab%0Dc%E2%80%A8d%C2%85e%23f"
    assert len(text([line]).decode().splitlines()) == 1
    assert split_line(line) == [uri, key]
    assert encode_part("plain/path with space.jpg") == "plain/path with space.jpg"
