"""report.html of a generated run: written by the run, by `clipdedup report`, and a
failing report never costs a run its tables."""

from __future__ import annotations

import json
import re

import pandas as pd

from pipelines.cli import exit_code
from tools.report import build
from tools.report.sample import ReportSettings


def _section(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}"')
    return page[start:page.index("</section></section>", start)]


def test_the_run_writes_a_self_contained_report(report_run):
    folder, summary = report_run
    assert summary["report"] == {"written": True, "path": "report.html"}
    assert summary["timings"]["report_seconds"] > 0
    assert not [p for p in folder.iterdir() if p.name.startswith("_report-")]
    page = (folder / "report.html").read_text()
    assert len(page) < 3 << 20
    assert "<script" not in page and not re.search(r'(src|href)="(?!data:)', page)
    assert "MODEL IS A STAND-IN" in page  # the tiny model has random weights
    c = summary["counts"]
    for label, key in (("read", "records_read"), ("embedded", "embedded"),
                       ("byte copies", "exact_copies_not_embedded"), ("errors", "record_errors"),
                       ("kept", "kept"), ("dropped", "dropped")):
        assert f'<div class="card">{label}<b>{c[key]:,}</b></div>' in page
    for section in ("counts", "histogram", "bands", "band-0_999", "band-0_98", "band-0_95",
                    "band-0_9", "groups", "errors", "byte-copies", "shards"):
        assert f'id="{section}"' in page
    shards = page[page.index('id="shards"'):]
    assert "0.tar" in shards and "shard_truncated" in shards  # cut short, its records still read
    errors = page[page.index('id="errors"'):page.index('id="byte-copies"')]
    assert "broken.jpg" in errors and "truncated" in errors


def test_sampled_pairs_are_the_runs_pairs_with_their_fates(report_run):
    folder, summary = report_run
    data = build.collect(str(folder), summary, ReportSettings(pairs_per_band=50),
                         str(folder / "embeddings"))
    pairs = pd.concat([pd.read_parquet(folder / "duplicates.parquet"),
                       pd.read_parquet(folder / "near_duplicates.parquet")])
    scores = {(a, b): s for a, b, s in pairs.itertuples(index=False)}
    drop = pd.read_parquet(folder / "drop.parquet").set_index("record_id")
    shown = [row for s in data["pairs"].samples for row in s.to_dict("records")]
    assert len(shown) == min(len(pairs), sum(min(50, n) for n in data["pairs"].band_counts))
    assert sum(data["pairs"].band_counts) == len(pairs) == data["pairs"].counts.sum()
    for row in shown:
        assert abs(scores[row["record_id_a"], row["record_id_b"]] - row["score"]) < 1e-6
        for rid in (row["record_id_a"], row["record_id_b"]):
            assert (rid in data["fates"]) == (rid in drop.index)
            assert data["thumbs"][rid]["thumbnail"]  # every input is still there
        assert 0.0 < row["ssim"] <= 1.0
    top_group = data["members"][data["members"].group_id == data["top"][0][0]]
    assert top_group.iloc[0].kind == "keeper"
    assert len(top_group) == min(data["top"][0][1], 12)
    copies = {g["record_id"]: g["copies"] for g in data["copy_groups"]}
    exact = pd.read_parquet(folder / "exact_duplicates.parquet")
    assert copies == exact.record_id_a.value_counts().to_dict()


def test_report_command_rewrites_the_same_sample(report_run, capsys):
    folder, _ = report_run
    before = (folder / "report.html").read_text()
    assert exit_code(["-q", "report", str(folder)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    after = (folder / "report.html").read_text()
    assert _section(after, "bands") == _section(before, "bands")
    assert exit_code(["-q", "report", str(folder), "--bands", "0.99", "--seed", "3"]) == 0
    other = (folder / "report.html").read_text()
    assert 'id="band-0_99"' in other and 'id="band-0_999"' not in other
    assert exit_code(["-q", "report", str(folder / "embeddings")]) == 2
    assert exit_code(["-q", "report", str(folder), "--bands", "2"]) == 2
    (folder / "report.html").write_text(before)


def test_a_failing_report_is_logged_and_the_run_still_publishes(report_run, tmp_path,
                                                                 monkeypatch, caplog):
    folder, _ = report_run

    def broken(*args, **kwargs):
        raise RuntimeError("the thumbnails job failed")

    monkeypatch.setattr(build, "collect", broken)
    assert exit_code(["mine", "--embeddings", str(folder / "embeddings"), "--output",
                      str(tmp_path), "--run-id", "m", "--near-duplicate-threshold", "0.9"]) == 0
    run = tmp_path / "m"
    assert (run / "_SUCCESS").exists() and (run / "groups.parquet").exists()
    assert not (run / "report.html").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["report"] == {"written": False,
                                 "error": "RuntimeError: the thumbnails job failed"}
    assert "report.html NOT WRITTEN" in caplog.text
    assert not [p for p in tmp_path.iterdir() if p.name != "m"]  # no staging, no lock left


def test_a_mine_only_run_finds_its_records_through_the_embeddings_it_mined(report_run,
                                                                           tmp_path):
    folder, _ = report_run
    assert exit_code(["-q", "mine", "--embeddings", str(folder / "embeddings"), "--output",
                      str(tmp_path), "--run-id", "m", "--near-duplicate-threshold", "0.9"]) == 0
    page = (tmp_path / "m" / "report.html").read_text()
    original = (folder / "report.html").read_text()
    assert page.count("<img ") == original.count("<img ") > 0
    assert 'class="missing"' not in page


def test_a_run_on_an_object_store_gets_its_report(report_run):
    """On gs:// (here memgs://, GCS's semantics: no folders, rename = copy + delete)."""
    from tests.pipelines import object_store

    folder, summary = report_run
    run = "memgs://bucket/out/r"
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "report.html":
            object_store.OBJECTS[f"{run}/{path.relative_to(folder)}"] = (path.read_bytes(), 0.0)
    try:
        assert build.write_report(run, summary) == f"{run}/report.html"
        page = object_store.OBJECTS[f"{run}/report.html"][0].decode()
        assert page.count("<img ") == (folder / "report.html").read_text().count("<img ")
        assert not [p for p in object_store.OBJECTS if "/_report-" in p or p.endswith(".tmp")]
    finally:
        for path in [p for p in object_store.OBJECTS if p.startswith(run + "/")]:
            del object_store.OBJECTS[path]


def test_report_false_writes_none(report_run, tmp_path):
    from pipelines.config import Config
    from pipelines.jobs import execute

    folder, _ = report_run
    summary = execute(Config(output=str(tmp_path), run_id="m", report=False,
                             near_duplicate_threshold=0.9), [], embed=False,
                      embeddings=str(folder / "embeddings"))
    assert "report" not in summary and "report_seconds" not in summary["timings"]
    assert not (tmp_path / "m" / "report.html").exists()
