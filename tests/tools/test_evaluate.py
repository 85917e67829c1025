"""`clipdedup evaluate` on a run whose every score is planted: the figures are known.

The embeddings are built from orthonormal directions, so each labelled pair's
cosine is set by construction (0.995, 0.93, c^2 - s^2 = 0.7298, ...), the run
is mined by `clipdedup mine` itself, and the expected precision / recall below
are counted by hand from the table in `LABELS`.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from tools.evaluate import confusion, lowest_threshold_at, sweep
from tools.labels import LabelFileError, parse_labels
from transforms.schemas import EXACT_DUPLICATES_SCHEMA, embeddings_schema

DIM = 16
C, S = 0.93, math.sqrt(1 - 0.93 ** 2)


def _vectors() -> dict[str, np.ndarray]:
    e = np.eye(DIM, dtype=np.float64)

    def at(cos, base, other, sign=1.0):
        return cos * e[base] + sign * math.sqrt(1 - cos ** 2) * e[other]

    return {"a0": e[0], "a1": at(0.995, 0, 1), "a2": at(C, 0, 2), "a3": at(C, 0, 2, -1.0),
            "b0": e[5], "b1": at(0.88, 5, 6), "c0": e[8], "c1": at(0.95, 8, 9),
            "d0": e[12], "d1": e[13]}


# (a, b, label, weight, what the pair is); a0copy is a byte copy of a0 (never embedded)
LABELS = [
    ("a0.jpg", "a1.jpg", "duplicate", 1, "0.995: duplicates table"),
    ("a0.jpg", "a2.jpg", "near_duplicate", 1, "0.93: near_duplicates table"),
    ("a2.jpg", "a3.jpg", "near_duplicate", 1, "0.7298: no table, but a0's group holds both"),
    ("b0.jpg", "b1.jpg", "near_duplicate", 1, "0.88: below the mining threshold"),
    ("c0.jpg", "c1.jpg", "different", 3, "0.95: a false positive"),
    ("d0.jpg", "d1.jpg", "different", 1, "0: a true negative"),
    ("a0copy.jpg", "a0.jpg", "duplicate", 1, "a byte copy: score 1"),
]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    vectors = _vectors()
    ids = sorted(vectors)
    x = np.stack([vectors[i] for i in ids]).astype(np.float32)
    n = len(ids)
    sizes = [1000 if i == "a0" else 100 for i in ids]  # a0 is the keeper of its group
    table = pa.table({
        "record_id": ids, "source_uri": ["mem://planted"] * n, "key": [f"{i}.jpg" for i in ids],
        "sha256": [f"h-{i}" for i in ids], "width": pa.array(sizes, pa.int32()),
        "height": pa.array(sizes, pa.int32()), "file_size": pa.array([10] * n, pa.int64()),
        "model": ["planted"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM),
    }, schema=embeddings_schema(DIM))
    src = root / "src"
    os.makedirs(src / "embeddings")
    pq.write_table(table, src / "embeddings" / "part-00000-of-00001.parquet")
    pq.write_table(pa.table({"record_id_a": ["a0"], "record_id_b": ["a0copy"], "sha256": ["h-a0"],
                             "source_uri_a": ["mem://planted"], "key_a": ["a0.jpg"],
                             "source_uri_b": ["mem://copies"], "key_b": ["a0copy.jpg"]},
                            schema=EXACT_DUPLICATES_SCHEMA), src / "exact_duplicates.parquet")
    assert cli.run(["-q", "mine", "--embeddings", str(src / "embeddings"), "--output",
                    str(root / "out"), "--run-id", "r", "--mode", "exact",
                    "--near-duplicate-threshold", "0.9", "--duplicate-threshold", "0.99"]) == 0
    run = root / "out" / "r"
    groups = pq.read_table(run / "groups.parquet").to_pylist()
    by_group = {}
    for g in groups:
        by_group.setdefault(g["group_id"], set()).add(g["record_id"])
    # what the expected manifest figures rest on
    assert sorted(map(sorted, by_group.values())) == [["a0", "a0copy", "a1", "a2", "a3"],
                                                      ["c0", "c1"]]
    labels = root / "labels.csv"
    rows = ["a,b,label,weight,notes"] + [f'{a},{b},{label},{w},"{why}"'
                                          for a, b, label, w, why in LABELS]
    rows += ["ghost.jpg,a0.jpg,different,1,not in the run",
             "mem://planted,a1.jpg,different,1,a path naming every record (ambiguous)",
             "a0,a0.jpg,duplicate,1,one record named twice",
             "a1.jpg,a3.jpg,,1,not labelled yet"]
    labels.write_text("\n".join(rows) + "\n")
    return run, labels


def _evaluate(run, labels, out, *extra) -> dict:
    assert cli.exit_code(["-q", "evaluate", "--run", str(run), "--labels", str(labels),
                          "--out", str(out), *extra]) == 0
    return json.loads((out / "evaluation.json").read_text())


def _pr(m: dict) -> tuple:
    return m["tp"], m["fp"], m["fn"], m["tn"], m["precision"], m["recall"]


def test_planted_precision_and_recall_at_the_run_thresholds(planted, tmp_path, caplog):
    run, labels = planted
    result = _evaluate(run, labels, tmp_path / "ev")
    at = result["at_run_thresholds"]
    assert _pr(at["pair_tables"]) == (3, 1, 2, 1, 0.75, 0.6)
    assert at["pair_tables"]["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert _pr(at["manifest"]) == (4, 1, 1, 1, 0.8, 0.8)  # a2/a3: grouped, though no pair row
    assert _pr(at["duplicates_table"]) == (2, 0, 0, 5, 1.0, 1.0)
    assert _pr(at["scores_at_near_duplicate_threshold"]) == (3, 1, 2, 1, 0.75, 0.6)
    assert result["missed_by_mining"] == 0
    assert result["model"] == "planted (from the embeddings table)"  # a mine-only run
    scores = {(p["record_id_a"], p["record_id_b"]): p["score"] for p in result["pairs"]}
    assert scores[("a2", "a3")] == pytest.approx(C * C - S * S, abs=1e-6)
    assert scores[("b0", "b1")] == pytest.approx(0.88, abs=1e-6)  # below every table, scored
    assert scores[("a0copy", "a0")] == 1.0
    by_pair = {(p["record_id_a"], p["record_id_b"]): p for p in result["pairs"]}
    assert by_pair[("a2", "a3")]["manifest"] and not by_pair[("a2", "a3")]["pair_tables"]
    assert (tmp_path / "ev" / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_planted_sweep_and_lowest_threshold_at_a_target(planted, tmp_path):
    run, labels = planted
    result = _evaluate(run, labels, tmp_path / "ev", "--target-precision", "0.8")
    curve = {round(p["threshold"], 4): (p["precision"], p["recall"])
             for p in result["curves"]["near_duplicate"]}
    want = {1.0: (1, 0.2), 0.995: (1, 0.4), 0.95: (2 / 3, 0.4), 0.93: (0.75, 0.6),
            0.9: (0.75, 0.6), 0.88: (0.8, 0.8), 0.7298: (5 / 6, 1.0), 0.0: (5 / 7, 1.0)}
    assert sorted(curve) == sorted(want)  # every labelled score, and the run's 0.9
    for t, (precision, recall) in want.items():
        assert curve[t] == pytest.approx((precision, recall)), t
    # precision is not monotonic: 0.7298 meets 0.8 although 0.93 above it does not
    near = result["suggested"]["near_duplicate_threshold"]
    assert near["threshold"] == pytest.approx(C * C - S * S, abs=1e-6) and near["recall"] == 1.0
    dup = result["suggested"]["duplicate_threshold"]
    # the run's own 0.99 is on the curve, but only labelled scores are suggested
    assert dup["threshold"] == pytest.approx(0.995) and dup["down_to"] == pytest.approx(0.95)
    strict = _evaluate(run, labels, tmp_path / "ev2", "--target-precision", "0.84")
    assert strict["suggested"]["near_duplicate_threshold"]["threshold"] == pytest.approx(0.995)


def test_planted_retrieval_at_k(planted, tmp_path):
    run, labels = planted
    retrieval = _evaluate(run, labels, tmp_path / "ev", "-k", "1", "5")["retrieval"]
    # queries: a0 {a1, a2}, a1 {a0}, a2 {a0, a3}, a3 {a2}, b0 {b1}, b1 {b0}
    assert retrieval["queries"] == 6
    assert retrieval["k"]["1"]["recall"] == pytest.approx(4 / 6)  # a3's nearest is a0
    assert retrieval["k"]["1"]["precision"] == pytest.approx(5 / 6)
    assert retrieval["k"]["5"]["recall"] == pytest.approx(1.0)
    assert retrieval["k"]["5"]["precision"] == pytest.approx(8 / 30)


def test_unknown_and_ambiguous_images_are_reported(planted, tmp_path, caplog):
    run, labels = planted
    with caplog.at_level("WARNING", logger="clipdedup"):
        result = _evaluate(run, labels, tmp_path / "ev")
    assert result["label_counts"] == dict(rows_labelled=10, rows_unlabelled=1, repeated=0,
                                          unresolved_pairs=3, evaluated=7, by_label=dict(
                                              duplicate=2, near_duplicate=3, different=2))
    reasons = {(u["line"], u["side"]): u["reason"] for u in result["unresolved"]}
    assert reasons[(9, "a")] == "not_in_run"
    assert reasons[(10, "a")].startswith("ambiguous: source_uri names 10 records")
    assert reasons[(11, "a,b")] == "same_record"
    assert any("3 labelled pairs are not evaluated: they name images this run" in r.message
               for r in caplog.records)


def test_weights_give_the_run_wide_estimate(planted, tmp_path):
    run, labels = planted
    weighted = _evaluate(run, labels, tmp_path / "ev")["weighted"]["at_run_thresholds"]
    assert weighted["pair_tables"]["fp"] == 3.0  # the c0/c1 false positive weighs 3
    assert weighted["pair_tables"]["precision"] == pytest.approx(3 / 6)


def test_labels_by_record_id_and_location(planted, tmp_path):
    run, _ = planted
    labels = tmp_path / "by-id.csv"
    labels.write_text("record_id_a;source_uri_b;key_b;label\n"
                      "a0;mem://planted;a1.jpg;Duplicate\n"
                      "c0;mem://planted;c1.jpg;near-duplicate\n"
                      "d0;mem://copies;a0copy.jpg;different\n")
    result = _evaluate(run, labels, tmp_path / "ev")
    assert result["label_counts"]["evaluated"] == 3 and not result["unresolved"]
    assert _pr(result["at_run_thresholds"]["pair_tables"]) == (2, 0, 0, 1, 1.0, 1.0)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("a,b,verdict\nx,y,duplicate\n", "no 'label' column"),
    ("a,label\nx,duplicate\n", "no column names image b"),
    ("a,b,label\nx,y,same\n", "line 2: label 'same' is not one of"),
    ("a,b,label,weight\nx,y,duplicate,-1\n", "line 2: weight must be a positive number"),
    ("a,b,label\nx,y,duplicate,extra\n", "line 2: more cells than header columns"),
    ("a,b,label\nx,,duplicate\n", "line 2: image b is not named"),
])
def test_bad_label_files(text, message):
    with pytest.raises(LabelFileError, match=message):
        parse_labels(text)


def test_bad_label_files_are_one_line_errors(planted, tmp_path, capsys):
    run, _ = planted
    cases = {"conflict.csv": ("a,b,label\na0.jpg,a1.jpg,duplicate\na1.jpg,a0.jpg,different\n",
                              "line 2 and line 3 label the same pair"),
             "latin1.csv": ("a,b,label\ncaf\xe9,a1.jpg,duplicate\n", "not UTF-8 text"),
             "blank.csv": ("a,b,label\na0.jpg,a1.jpg,\n", "no labelled pairs"),
             "none.csv": ("a,b,label\nx.jpg,y.jpg,duplicate\n", "none of the 1 labelled pairs"),
             "bad.csv": ("a,b,label\nx,y,maybe\n", "label 'maybe' is not one of")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_bytes(text.encode("latin-1"))
        assert cli.exit_code(["-q", "evaluate", "--run", str(run), "--labels",
                              str(tmp_path / name), "--out", str(tmp_path / "ev")]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("clipdedup: error:") and message in err[0], err
    assert cli.exit_code(["-q", "evaluate", "--run", str(run), "--labels",
                          str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv: no such file" in capsys.readouterr().err


def test_confusion_and_sweep_by_hand():
    truth = np.array([True, True, False, False])
    m = confusion(np.array([True, False, True, False]), truth)
    assert (m["tp"], m["fp"], m["fn"], m["tn"], m["precision"], m["recall"], m["f1"]) == (
        1, 1, 1, 1, 0.5, 0.5, 0.5)
    assert confusion(np.zeros(4, bool), truth)["precision"] is None
    points = sweep(np.array([0.9, 0.8, 0.7, 0.6], np.float32), truth)
    assert [(round(p["threshold"], 2), p["precision"]) for p in points] == [
        (0.9, 1.0), (0.8, 1.0), (0.7, 2 / 3), (0.6, 0.5)]
    assert lowest_threshold_at(points, 0.99)["threshold"] == pytest.approx(0.8)
    assert lowest_threshold_at(points, 1.01) is None
