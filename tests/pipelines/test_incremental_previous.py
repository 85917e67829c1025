"""Which run an incremental night builds on, and what of it may be reused (launcher side,
no Beam job; `pipelines/previous_run.py`)."""

import json

import pytest

from pipelines import previous_run
from pipelines.summary_text import print_summary

SUMMARY = {"run_id": "a", "stages": ["embed", "mine"], "model": "m", "embedding_dim": 512,
           "image_size": 224, "near_duplicate_threshold": 0.9, "mining": {"mode": "exact"},
           "config": {"device": "cuda:0", "backend": "torch", "image_column": "image",
                      "key_column": None, "max_file_bytes": 1, "max_image_pixels": 2}}


def _publish(out, run_id, published_at, summary=SUMMARY):
    folder = out / run_id
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").write_text(json.dumps({"published_at": published_at}))
    (folder / "summary.json").write_text(json.dumps(dict(summary, run_id=run_id)))
    return str(folder)


def test_latest_published_skips_staging_and_unpublished_folders(tmp_path):
    assert previous_run.latest_published(str(tmp_path / "none")) is None
    _publish(tmp_path, "z-old", "2026-12-01T00:00:00+00:00")
    newest = _publish(tmp_path, "a-new", "2026-12-02T00:00:00+00:00")
    (tmp_path / "_staging-b").mkdir()
    (tmp_path / "_staging-b" / "_SUCCESS").write_text("{}")  # never a run
    (tmp_path / "c").mkdir()  # no _SUCCESS: killed
    assert previous_run.latest_published(str(tmp_path)) == newest
    assert previous_run.latest_published(str(tmp_path), exclude_run_id="a-new").endswith("z-old")


def test_load_refuses_what_is_not_a_published_run_of_both_stages(tmp_path):
    with pytest.raises(ValueError, match="not a published run"):
        previous_run.load(str(tmp_path))
    folder = _publish(tmp_path, "mine-only", "t", dict(SUMMARY, stages=["mine"]))
    with pytest.raises(ValueError, match="both stages"):
        previous_run.load(folder)


def test_what_forces_a_full_reembed_or_remine(tmp_path):
    before = previous_run.load(_publish(tmp_path, "r", "t"))
    assert previous_run.reembed_reason(before, dict(SUMMARY)) is None
    assert previous_run.reembed_reason(
        before, dict(SUMMARY, config=dict(SUMMARY["config"], device="cuda:1"))) is None
    assert "model 'm' -> 'n'" in previous_run.reembed_reason(before, dict(SUMMARY, model="n"))
    changed = dict(SUMMARY, config=dict(SUMMARY["config"], max_image_pixels=3))
    assert "max_image_pixels" in previous_run.reembed_reason(before, changed)
    assert previous_run.remine_reason(before, "exact", 0.9) is None
    assert previous_run.remine_reason(before, "exact", 0.95) is None  # raised: carried, filtered
    assert "lowered" in previous_run.remine_reason(before, "exact", 0.85)
    assert "mode" in previous_run.remine_reason(before, "approximate", 0.9)


def test_the_console_says_what_a_night_did_again_and_why(capsys):
    summary = {"run_id": "n", "run_folder": "out/n", "counts": {}, "timings": {
        "total_seconds": 1.0}, "incremental": {
        "previous": "out/p", "files_read": 1, "files_carried": 4, "files_gone": 0,
        "embedded": 2, "embeddings_reused": 8, "reembed_reason": None,
        "remine_reason": "near_duplicate_threshold lowered 0.9 -> 0.8"}}
    print_summary(summary)
    out = capsys.readouterr().out
    assert "incremental on out/p: files read 1, carried 4" in out
    assert "remine: near_duplicate_threshold lowered" in out
