"""`clipdedup calibrate` on a generated run: the sheet's bands hold exactly the
run's pairs, the draw is seeded, and the filled-in sheet reads back into
`clipdedup evaluate`.

The run has fewer records than a k-NN search returns, so every pair of it is
either in a pair table or found by the search: each band's population is
known exactly from the embeddings (brute force here).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import shutil
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from tests.conftest import encode, random_image, write_tar
from tools.labels import parse_labels

# The tiny stand-in scores these images 0.97-1.0: the thresholds are set inside that
# range so that some pairs fall below the mining threshold (found by k-NN only).
NEAR, DUP = 0.98, 0.999
EDGES = [-1.0, 0.975, NEAR, 0.99, DUP, 1.0]


@pytest.fixture(scope="module")
def published(tiny_model, tmp_path_factory):
    """Six images, two edited copies of each of two, a byte copy (tar member) and a
    broken file; run with the tiny stand-in."""
    root = tmp_path_factory.mktemp("calibrate")
    files = root / "data" / "files"
    files.mkdir(parents=True)
    for i in range(6):
        img = random_image(300 + i, (160, 120))
        (files / f"{i}.jpg").write_bytes(encode(img))
        if i < 2:
            (files / f"{i}-small.jpg").write_bytes(encode(img.resize((120, 90)), quality=70))
            (files / f"{i}-png.png").write_bytes(encode(img, "PNG"))
    (files / "broken.jpg").write_bytes(encode(random_image(9))[:100])
    write_tar(str(root / "data" / "0.tar"), [("copy.jpg", (files / "3.jpg").read_bytes())])
    out = root / "out"
    assert cli.run(["-q", "run", "--input", str(files), "--input", str(root / "data" / "0.tar"),
                    "--model", tiny_model, "--output", str(out), "--run-id", "r",
                    "--max-error-fraction", "0.5", "--near-duplicate-threshold", str(NEAR),
                    "--duplicate-threshold", str(DUP)]) == 0
    return out / "r"


def _all_pairs(run) -> dict[tuple[str, str], float]:
    table = pq.read_table(next((run / "embeddings").glob("*.parquet")))
    ids = table.column("record_id").to_pylist()
    x = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return {tuple(sorted((ids[i], ids[j]))): float(x[i] @ x[j])
            for i, j in itertools.combinations(range(len(ids)), 2)}


def _calibrate(run, out, *extra) -> tuple[list[dict], dict]:
    assert cli.exit_code(["-q", "calibrate", "--run", str(run), "--out", str(out), "--bands",
                          *map(str, EDGES), *extra]) == 0
    with open(out / "sheet.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((out / "calibration.json").read_text())


def _band(score: float) -> int:
    return min(int(np.searchsorted(EDGES, np.float32(score), side="right")) - 1, len(EDGES) - 2)


def test_bands_hold_every_pair_of_the_run(published, tmp_path):
    pairs = _all_pairs(published)
    rows, cal = _calibrate(published, tmp_path / "c", "--per-band", "4")
    want = [0] * (len(EDGES) - 1)
    for score in pairs.values():
        want[_band(score)] += 1
    assert [b["population_estimate"] for b in cal["bands"]] == want
    assert [b["sampled"] for b in cal["bands"]] == [min(4, n) for n in want]
    assert len(rows) == sum(min(4, n) for n in want) == cal["pairs"]
    tables = set()
    for name in ("duplicates", "near_duplicates"):
        t = pq.read_table(published / f"{name}.parquet")
        tables |= set(zip(t.column("record_id_a").to_pylist(), t.column("record_id_b").to_pylist()))
    for row in rows:
        pair = (row["record_id_a"], row["record_id_b"])
        assert row["label"] == "" and pair in pairs
        assert float(row["score"]) == pytest.approx(pairs[pair], abs=2e-6)
        band = cal["bands"][_band(pairs[pair])]
        assert row["band"] == band["band"]
        assert float(row["weight"]) == pytest.approx(band["population_estimate"] / band["sampled"],
                                                     rel=1e-5)
        # the tables hold the pairs at or above the mining threshold, k-NN the rest
        assert (row["found_by"] == "knn") == (pairs[pair] < NEAR) == (pair not in tables)
        assert row["source_uri_a"] and row["key_a"] and row["source_uri_b"]
    assert len({(r["record_id_a"], r["record_id_b"]) for r in rows}) == len(rows)
    assert {r["found_by"] for r in rows} >= {"knn", "near_duplicates"}  # both sources drawn


def test_same_seed_same_sheet(published, tmp_path):
    _calibrate(published, tmp_path / "a", "--per-band", "2", "--seed", "7", "--no-html")
    _calibrate(published, tmp_path / "b", "--per-band", "2", "--seed", "7", "--no-html")
    assert (tmp_path / "a" / "sheet.csv").read_bytes() == (tmp_path / "b" / "sheet.csv").read_bytes()
    sheets = set()
    for seed in range(6):  # some band holds more than 2 pairs, so the seed matters
        rows, _ = _calibrate(published, tmp_path / f"s{seed}", "--per-band", "2", "--seed",
                             str(seed), "--no-html")
        sheets.add(frozenset((r["record_id_a"], r["record_id_b"]) for r in rows))
    assert len(sheets) > 1


def test_filled_in_sheet_reads_back_into_evaluate(published, tmp_path):
    rows, cal = _calibrate(published, tmp_path / "c", "--per-band", "5")
    for row in rows[:-1]:  # the last one is left unlabelled
        row["label"] = "near_duplicate" if float(row["score"]) >= 0.99 else "different"
    files = published.parent.parent / "data" / "files"
    extra = [dict(label="duplicate", source_uri_a=str(published.parent.parent / "data" / "0.tar"),
                  key_a="copy", source_uri_b=str(files / "3.jpg")),  # a byte copy
             dict(label="different", source_uri_a=str(files / "broken.jpg"),
                  source_uri_b=str(files / "0.jpg"))]  # an image the run failed
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows + extra)
    assert cli.exit_code(["-q", "evaluate", "--run", str(published), "--labels",
                          str(tmp_path / "labels.csv"), "--out", str(tmp_path / "ev")]) == 0
    result = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    labelled = rows[:-1]
    assert result["label_counts"]["evaluated"] == len(labelled) + 1
    assert result["label_counts"]["rows_unlabelled"] == 1
    (failed,) = result["unresolved"]
    assert failed["side"] == "a" and failed["reason"].startswith("failed:decode:")
    copy = next(p for p in result["pairs"] if p["pair"] is None and p["label"] == "duplicate")
    assert copy["score"] == 1.0 and copy["pair_tables"] and copy["manifest"]
    scores = [float(r["score"]) for r in labelled]
    at = result["at_run_thresholds"]["pair_tables"]
    assert (at["tp"], at["fp"], at["fn"]) == (sum(s >= 0.99 for s in scores) + 1,
                                              sum(NEAR <= s < 0.99 for s in scores), 0)
    got = {(p["record_id_a"], p["record_id_b"]): p["score"] for p in result["pairs"]}
    for r in labelled:
        assert got[(r["record_id_a"], r["record_id_b"])] == pytest.approx(float(r["score"]),
                                                                          abs=2e-6)
    weights = {b["band"]: b["population_estimate"] / b["sampled"] for b in cal["bands"]
               if b["sampled"]}
    weighted = result["weighted"]["at_run_thresholds"]["pair_tables"]
    assert weighted["fp"] == pytest.approx(sum(weights[r["band"]] for r in labelled
                                               if NEAR <= float(r["score"]) < 0.99))


def test_page_shows_every_pair(published, tmp_path):
    rows, _ = _calibrate(published, tmp_path / "c", "--per-band", "3")
    page = (tmp_path / "c" / "sheet.html").read_text()
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', page)) == 2 * len(rows)
    assert 'class="missing"' not in page and "STAND-IN" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    for row in rows:
        assert f"name='{row['pair']}' value='different'" in page


def test_bad_flags_are_one_line_errors(published, tmp_path, capsys):
    for extra, message in ((["--bands", "0.5"], "at least two distinct edges"),
                           (["--per-band", "0"], "--per-band must be at least 1")):
        assert cli.exit_code(["-q", "calibrate", "--run", str(published), "--out",
                              str(tmp_path / "c"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("clipdedup: error:") and message in err[0]


# The page's labelling script run by node against the least DOM it touches: the
# radio buttons chosen per pair, the Blob it downloads captured.
_NODE_HARNESS = r"""
const fs = require('fs');
const html = fs.readFileSync(process.argv[2], 'utf8');
const data = id => html.match(new RegExp("<script type='application/json' id='" + id +
                                         "'>([\\s\\S]*?)</script>"))[1];
const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
const choices = JSON.parse(process.argv[3]);
let csv = null;
global.document = {
  getElementById: id => (id === 'done' ? {} : {textContent: data(id)}),
  querySelectorAll: () => [],
  querySelector: sel => {
    const pair = sel.match(/name="([^"]*)"/)[1];
    return choices[pair] ? {value: choices[pair]} : null;
  },
  addEventListener: () => {},
  createElement: () => ({click() {}}),
};
global.Blob = class { constructor(parts) { csv = parts.join(''); } };
global.URL = {createObjectURL: () => 'blob:labels'};
eval(script + '\ndownload();');
process.stdout.write(csv);
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_page_download_is_a_sheet_evaluate_reads(published, tmp_path):
    rows, _ = _calibrate(published, tmp_path / "c", "--per-band", "3")
    choices = {r["pair"]: ("duplicate", "near_duplicate", "different")[i % 3]
               for i, r in enumerate(rows[:-2])}  # the last two left unlabelled
    (tmp_path / "harness.js").write_text(_NODE_HARNESS)
    downloaded = subprocess.run(["node", str(tmp_path / "harness.js"),
                                 str(tmp_path / "c" / "sheet.html"), json.dumps(choices)],
                                check=True, capture_output=True, text=True).stdout
    pairs, unlabelled = parse_labels(downloaded)
    assert unlabelled == 2
    assert {p.name: p.label for p in pairs} == choices
    by_name = {r["pair"]: r for r in rows}
    assert all((p.a.record_id, p.b.record_id) == (by_name[p.name]["record_id_a"],
                                                  by_name[p.name]["record_id_b"]) for p in pairs)
    (tmp_path / "labels.csv").write_text(downloaded)
    assert cli.exit_code(["-q", "evaluate", "--run", str(published), "--labels",
                          str(tmp_path / "labels.csv"), "--out", str(tmp_path / "ev")]) == 0
    result = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert result["label_counts"]["evaluated"] == len(choices)
