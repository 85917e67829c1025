"""The whole CLI: every manifest row located, keep.txt/drop.txt one line per record,
with keys and file names holding line breaks, `%` and `#`, and keys repeated."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import run
from tests.conftest import encode, random_image, write_tar
from transforms.manifest.manifest_text import split_line


@pytest.fixture(scope="module")
def published(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    jpgs = [encode(random_image(i, (96, 64))) for i in range(6)]
    (root / "files").mkdir()
    (root / "files" / "line\nbreak.jpg").write_bytes(jpgs[0])
    (root / "files" / "100% #1.jpg").write_bytes(jpgs[0])  # byte copy of the file above
    (root / "shards").mkdir()
    write_tar(str(root / "shards" / "0.tar"), [("a\rb.jpg", jpgs[1]), ("c.jpg", jpgs[2])])
    write_tar(str(root / "shards" / "1.tar"), [("c.jpg", jpgs[3])])  # same key, other shard
    (root / "pq").mkdir()
    pq.write_table(pa.table({"image": pa.array([jpgs[4], jpgs[5], jpgs[2]], pa.binary()),
                             "name": ["two\nlines", "same", "same"]}), root / "pq" / "0.parquet")
    config = root / "config.yaml"
    config.write_text("key_column: name\n")
    out = tmp_path_factory.mktemp("out")
    assert run(["run", "--config", str(config), "--input", str(root / "files"),
                "--input", str(root / "shards"), "--input", str(root / "pq"),
                "--model", tiny_model, "--output", str(out), "--run-id", "r", "-q",
                # the random stand-in finds everything similar: group byte copies only
                "--duplicate-threshold", "1.0", "--near-duplicate-threshold", "1.0"]) == 0
    return root, out / "r"


def _rows_and_lines(run_folder, name):
    rows = pq.read_table(run_folder / f"{name}.parquet").to_pylist()
    text = (run_folder / f"{name}.txt").read_bytes().decode("utf-8")
    assert text == "" or text.endswith("\n")
    return rows, text.split("\n")[:-1]


def test_every_line_maps_back_to_its_row(published):
    root, run_folder = published
    summary = json.loads((run_folder / "summary.json").read_text())
    assert summary["counts"]["records_read"] == 8 and summary["counts"]["record_errors"] == 0
    all_lines = []
    for name in ("keep", "drop"):
        rows, lines = _rows_and_lines(run_folder, name)
        assert len(lines) == len(rows)
        for row, line in zip(rows, lines):
            parts = split_line(line)
            assert parts[0] == row["source_uri"]
            assert parts[1:2] == ([] if row["key"] == row["source_uri"] else [row["key"]])
            assert parts[2:] in ([], [row["record_id"]])
        all_lines += lines
    assert len(all_lines) == len(set(all_lines)) == 8
    # the two rows keyed "same" in one Parquet file are told apart by their record ids
    same = [line for line in all_lines if line.split("#")[1:2] == ["same"]]
    assert len(same) == 2 and all(len(line.split("#")) == 3 for line in same)
    assert any("line%0Abreak.jpg" in line for line in all_lines)
    assert any(line.endswith("#a%0Db") for line in all_lines)


def test_byte_copies_are_located_in_drop_and_exact_duplicates(published):
    """Copies are never embedded: only these rows say where they are."""
    root, run_folder = published
    files = [str(root / "files" / "line\nbreak.jpg"), str(root / "files" / "100% #1.jpg")]
    tar, rows = str(root / "shards" / "0.tar"), str(root / "pq" / "0.parquet")
    exact = pq.read_table(run_folder / "exact_duplicates.parquet").to_pylist()
    assert {frozenset([(e["source_uri_a"], e["key_a"]), (e["source_uri_b"], e["key_b"])])
            for e in exact} == {frozenset((f, f) for f in files),
                                frozenset([(tar, "c"), (rows, "same")])}
    drop, drop_lines = _rows_and_lines(run_folder, "drop")
    by_id = {r["record_id"]: (r, line) for r, line in zip(drop, drop_lines)}
    for e in exact:
        row, line = by_id[e["record_id_b"]]
        assert row["reason"] == "exact_copy" and row["keeper_id"] == e["record_id_a"]
        assert (row["source_uri"], row["key"]) == (e["source_uri_b"], e["key_b"])
        assert (row["keeper_source_uri"], row["keeper_key"]) == (e["source_uri_a"], e["key_a"])
        assert split_line(line)[:2] in ([e["source_uri_b"]], [e["source_uri_b"], e["key_b"]])
    assert "100%25 %231.jpg" in "".join(drop_lines + _rows_and_lines(run_folder, "keep")[1])
    groups = pq.read_table(run_folder / "groups.parquet")
    assert groups.column("source_uri").null_count == 0 and groups.num_rows == 4
