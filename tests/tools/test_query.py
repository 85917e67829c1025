"""`clipdedup query` on a generated run: the copies of a query image come first."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.cli import exit_code
from pipelines.cli import run as cli_run
from tests.conftest import encode, random_image, write_parquet_images, write_tar

QUERY_SEED, EDITED_SEED = 100, 200


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Eight unrelated images, plus a byte copy of the query image (a tar member)
    and an edited copy (resized, re-encoded) of another image (a Parquet row)."""
    root = tmp_path_factory.mktemp("query-data")
    query = encode(random_image(QUERY_SEED, (160, 120)))
    edited = encode(random_image(EDITED_SEED, (160, 120)).resize((120, 90)), quality=70)
    others = [encode(random_image(i, (160, 120))) for i in range(8)]
    write_tar(str(root / "0.tar"), [(f"{i:03d}.jpg", others[i]) for i in range(4)]
              + [("query-copy.jpg", query)])
    (root / "files").mkdir()
    for i in range(4, 8):
        (root / "files" / f"{i}.jpg").write_bytes(others[i])
    write_parquet_images(str(root / "pq" / "0.parquet"), [edited], "struct")
    queries = root / "queries"
    queries.mkdir()
    (queries / "query.jpg").write_bytes(query)
    (queries / "original.png").write_bytes(encode(random_image(EDITED_SEED, (160, 120)), "PNG"))
    (queries / "broken.jpg").write_bytes(query[:150])
    return root


@pytest.fixture(scope="module")
def published(dataset, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("query-out")
    assert cli_run(["run", "--input", str(dataset / "0.tar"), "--input", str(dataset / "files"),
                    "--input", str(dataset / "pq"), "--model", tiny_model, "--output",
                    str(out), "--run-id", "r", "-q"]) == 0
    return out / "r"


def _json_hits(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_byte_copy_and_edited_copy_come_first(published, dataset, capsys):
    q = dataset / "queries"
    assert exit_code(["-q", "query", "--run", str(published), "--image", str(q / "query.jpg"),
                      "--image", str(q / "original.png"), "-k", "3", "--json"]) == 0
    hits = _json_hits(capsys.readouterr().out)
    by_query = {}
    for h in hits:
        by_query.setdefault(h["query"], []).append(h)
    copy, edited = by_query[str(q / "query.jpg")], by_query[str(q / "original.png")]
    assert [h["rank"] for h in copy] == [1, 2, 3]
    assert copy[0]["key"] == "query-copy" and copy[0]["source_uri"].endswith("0.tar")
    assert copy[0]["score"] == pytest.approx(1.0, abs=1e-4)  # the same bytes
    assert copy[1]["score"] < copy[0]["score"]
    assert edited[0]["source_uri"].endswith("0.parquet") and edited[0]["key"] == "img0.jpg"
    assert edited[0]["score"] > 0.99 and edited[0]["score"] > edited[1]["score"]
    assert {"record_id", "width", "height", "file_size"} <= set(edited[0])


def test_k_is_honoured_and_capped_by_the_run(published, dataset, capsys):
    image = str(dataset / "queries" / "query.jpg")
    assert exit_code(["-q", "query", "--run", str(published), "--image", image, "-k", "2",
                      "--json"]) == 0
    assert len(_json_hits(capsys.readouterr().out)) == 2
    assert exit_code(["-q", "query", "--run", str(published), "--image", image, "-k", "50",
                      "--json"]) == 0
    assert len(_json_hits(capsys.readouterr().out)) == 10  # every embedded record, once


def test_table_and_html_page(published, dataset, tmp_path, capsys):
    page = tmp_path / "hits.html"
    assert exit_code(["-q", "query", "--run", str(published), "--image",
                      str(dataset / "queries" / "original.png"), "-k", "10",
                      "--html", str(page)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s+[\d.]+\s", line)]
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    assert "STAND-IN" in out and "img0.jpg" in out
    text = page.read_text()
    # the query and its 10 hits (tar members, image files, a Parquet row) as inline thumbnails
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', text)) == 11
    assert 'class="missing"' not in text and "STAND-IN" in text
    assert "http://" not in text and "https://" not in text  # self-contained


def test_missing_run_and_bad_image_are_one_line_errors(published, dataset, tmp_path, capsys):
    image = str(dataset / "queries" / "query.jpg")
    assert exit_code(["-q", "query", "--run", str(tmp_path / "nope"), "--image", image]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clipdedup: error:") and "_SUCCESS" in err[0]
    assert exit_code(["-q", "query", "--run", str(published), "--image",
                      str(dataset / "queries" / "broken.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg: cannot be decoded (" in err[0]
    assert exit_code(["-q", "query", "--run", str(published), "--image",
                      str(tmp_path / "absent.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.jpg: no such file" in err[0]
    assert exit_code(["-q", "query", "--run", str(published), "--image", image, "-k", "0"]) == 2
    assert "-k must be at least 1" in capsys.readouterr().err


def test_compare_with_the_runs_model(published, dataset, tiny_model, capsys):
    q = dataset / "queries"
    assert exit_code(["-q", "compare", str(q / "query.jpg"), str(q / "query.jpg"), "--run",
                      str(published), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["cosine"] == pytest.approx(1.0, abs=1e-5) and same["model"] == tiny_model
    assert same["model_is_stand_in"] is True
    assert exit_code(["-q", "compare", str(q / "query.jpg"), str(q / "original.png"), "--run",
                      str(published), "--json"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["cosine"] < same["cosine"] and other["ssim"] < 0.9
