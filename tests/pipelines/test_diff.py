"""`clipdedup diff` and `diff_runs` on two planted run folders with a known answer."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from pipelines.diff_pipeline import diff_runs
from transforms import schemas


def _loc(rid):
    return {"record_id": rid, "source_uri": f"mem://{rid}.tar", "key": f"{rid}.jpg"}


def write_run(folder, run_id, keep, drop, duplicates, near, errors, counts):
    """A published run folder: keep {id: reason}, drop {id: (reason, keeper)}, pairs, errors."""
    folder.mkdir(parents=True)
    keep_rows = [dict(_loc(r), reason=why, keeper_id=r) for r, why in keep.items()]
    drop_rows = [dict(_loc(r), reason=why, keeper_id=k, keeper_source_uri=f"mem://{k}.tar",
                      keeper_key=f"{k}.jpg") for r, (why, k) in drop.items()]
    error_rows = [dict(_loc(r), stage="decode", reason="truncated", message="m") if r else
                  {"record_id": None, "source_uri": "mem://broken.tar", "key": None,
                   "stage": "read", "reason": "not_a_tar", "message": "m"} for r in errors]
    for name, rows, schema in (("keep", keep_rows, schemas.KEEP_SCHEMA),
                               ("drop", drop_rows, schemas.DROP_SCHEMA),
                               ("errors", error_rows, schemas.ERRORS_SCHEMA)):
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{name}.parquet")
    for name, pairs in (("duplicates", duplicates), ("near_duplicates", near)):
        pq.write_table(pa.Table.from_pylist(
            [{"record_id_a": min(a, b), "record_id_b": max(a, b), "score": 0.95} for a, b in pairs],
            schema=schemas.PAIRS_SCHEMA), folder / f"{name}.parquet")
    (folder / "summary.json").write_text(json.dumps({"run_id": run_id, "counts": counts}))
    (folder / "_SUCCESS").write_text("{}")
    return str(folder)


def planted(tmp_path):
    a = write_run(tmp_path / "out" / "A", "A",
                  keep={"k1": "keeper", "k2": "keeper", "gone": "unique", "s": "unique"},
                  drop={"d1": ("duplicate", "k1"), "d2": ("near_duplicate", "k2"),
                        "f": ("near_duplicate", "k2"), "c": ("near_duplicate", "k1")},
                  duplicates=[("d1", "k1")], near=[("d2", "k2"), ("f", "k2"), ("c", "k1")],
                  errors=["e1"], counts={"records_read": 10, "record_errors": 1})
    b = write_run(tmp_path / "out" / "B", "B",
                  keep={"k1": "keeper", "d2": "keeper", "new1": "keeper", "e1": "unique"},
                  drop={"d1": ("duplicate", "k1"), "k2": ("duplicate", "d2"),
                        "s": ("near_duplicate", "new1"), "new2": ("near_duplicate", "k1"),
                        "new3": ("near_duplicate", "new1"), "c": ("near_duplicate", "d2")},
                  duplicates=[("d1", "k1"), ("k2", "d2")],
                  near=[("new2", "k1"), ("s", "new1"), ("new3", "new1"), ("c", "d2")],
                  errors=["f", "new4", None], counts={"records_read": 12, "record_errors": 3})
    return a, b


WANT_CHANGES = {
    "gone": ("removed", "kept", None, "gone", None),
    "d2": ("dropped_to_kept", "dropped", "kept", "k2", "d2"),
    "k2": ("kept_to_dropped", "kept", "dropped", "k2", "d2"),
    "s": ("kept_to_dropped", "kept", "dropped", "s", "new1"),
    "new1": ("new", None, "kept", None, "new1"),
    "new2": ("new", None, "dropped", None, "k1"),
    "new3": ("new", None, "dropped", None, "new1"),
    "new4": ("new", None, "error", None, None),
    "e1": ("no_longer_failing", "error", "kept", None, "e1"),
    "f": ("now_failing", "dropped", "error", "k2", None),
    "c": ("keeper_changed", "dropped", "dropped", "k1", "d2"),
}


def _check_changes(path):
    frame = pd.read_parquet(path)  # pandas reads it as-is
    frame = frame.astype(object).where(frame.notna(), None)
    assert list(frame.columns) == schemas.CHANGES_SCHEMA.names
    got = {r.record_id: (r.change, r.status_before, r.status_after, r.keeper_before,
                         r.keeper_after) for r in frame.itertuples()}
    assert got == WANT_CHANGES
    assert len(frame) == len(WANT_CHANGES)
    row = frame.set_index("record_id").loc["new2"]
    assert (row.source_uri, row.key, row.reason_after) == ("mem://new2.tar", "new2.jpg",
                                                           "near_duplicate")
    assert frame.set_index("record_id").loc["f"].reason_after == "truncated"


# 0: the Beam job; a million: the same functions in the launcher
BOTH_PATHS = pytest.mark.parametrize("max_rows, computed", [(0, "beam_job"),
                                                            (10**6, "in_process")])


@pytest.mark.parametrize("max_rows, computed, rows_per_bucket", [
    (0, "beam_job", 500_000), (0, "beam_job", 2), (10**6, "in_process", 500_000)])
def test_diff_of_planted_runs(tmp_path, monkeypatch, max_rows, computed, rows_per_bucket):
    # 2 rows a bucket: every record and pair of the job lands in a bucket of its own or few
    monkeypatch.setattr("pipelines.diff_pipeline.ROWS_PER_BUCKET", rows_per_bucket)
    a, b = planted(tmp_path)
    d = diff_runs(a, b, changes=str(tmp_path / "changes.parquet"), in_process_max_rows=max_rows)
    assert d["computed"] == computed
    assert d["records"] == {"before": 9, "after": 12, "new": 4, "removed": 1,
                            "kept_to_dropped": 2, "dropped_to_kept": 1, "keeper_changed": 1,
                            "now_failing": 1, "no_longer_failing": 1}
    assert (d["new_duplicates_of_old"], d["new_duplicate_share"]) == (3, 0.75)
    assert d["pairs"] == {"before": 4, "after": 6, "new": 4, "vanished": 2, "changed_kind": 1}
    assert d["pair_count_change"] == 0.5
    assert d["errors"]["rate_before"] == pytest.approx(0.1)
    assert d["errors"]["rate_after"] == pytest.approx(0.25)
    assert d["errors"]["rate_change"] == pytest.approx(0.15)
    assert (d["before_run"], d["after_run"]) == ("A", "B")
    _check_changes(tmp_path / "changes.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["changes.parquet", "out"]  # no leftovers


@BOTH_PATHS
def test_a_run_against_itself_has_no_changes(tmp_path, max_rows, computed):
    a, _ = planted(tmp_path)
    d = diff_runs(a, a, changes=str(tmp_path / "changes.parquet"), in_process_max_rows=max_rows)
    assert d["computed"] == computed
    assert d["records"] == dict(dict.fromkeys(d["records"], 0), before=9, after=9)
    assert d["pairs"] == {"before": 4, "after": 4, "new": 0, "vanished": 0, "changed_kind": 0}
    assert d["new_duplicate_share"] is None and d["errors"]["rate_change"] == 0
    assert len(pd.read_parquet(tmp_path / "changes.parquet")) == 0


def test_cli_diff_json_alerts_and_exit_code(tmp_path, capsys):
    a, b = planted(tmp_path)
    changes = tmp_path / "c.parquet"
    assert cli.exit_code(["diff", a, b, "--json", "--changes", str(changes)]) == 0
    out, err = capsys.readouterr()
    got = json.loads(out)
    assert got["records"]["new"] == 4 and got["changes_table"] == str(changes)
    _check_changes(changes)
    # default limits: share 0.75 > 0.5 and error rate +0.15 > 0.01; pairs +50% is not > 0.5
    lines = [line for line in err.splitlines() if line.startswith("clipdedup: alert: ")]
    alerts = [json.loads(line.removeprefix("clipdedup: alert: ")) for line in lines]
    assert [x["name"] for x in alerts] == ["new_duplicate_share", "error_rate_increase"]
    assert alerts[0]["value"] == 0.75 and alerts[0]["limit"] == 0.5
    assert [x["name"] for x in got["alerts"]] == ["new_duplicate_share", "error_rate_increase"]

    assert cli.exit_code(["diff", a, b, "--fail-on-alert"]) == 3
    out, _ = capsys.readouterr()
    assert "new 4, removed 1, kept->dropped 2" in out and "pairs: 4 -> 6 (+50.0%)" in out

    config = tmp_path / "quiet.yaml"
    config.write_text("alert_max_new_duplicate_share: null\nalert_max_error_rate_increase: 0.2\n"
                      "alert_max_pair_count_change: 0.4\ndiff_in_process_max_rows: 0\n")
    assert cli.exit_code(["diff", a, b, "--config", str(config), "--fail-on-alert"]) == 3
    _, err = capsys.readouterr()
    assert [json.loads(x.removeprefix("clipdedup: alert: "))["name"]
            for x in err.splitlines() if x.startswith("clipdedup: alert:")] == ["pair_count_change"]


def test_cli_diff_refuses_an_unpublished_folder(tmp_path, capsys):
    a, b = planted(tmp_path)
    (tmp_path / "out" / "B" / "_SUCCESS").unlink()
    assert cli.exit_code(["diff", a, b]) == 2
    assert "is not a published run folder" in capsys.readouterr().err


def test_diff_job_and_stable_keepers_translate_for_dataflow(tmp_path):
    """The diff job and the mine job reading the previous keep table ship to Dataflow.

    ReadFromParquet lists its pattern while the graph is built (gs:// would need
    credentials): local planted runs stand in; the outputs go to gs://.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines import diff_pipeline, mine_pipeline
    from tests.pipelines.test_dataflow_graph import DRY_RUN, STAGING, _config, _dry_run, _labels

    a, b = planted(tmp_path)
    proto, _ = _dry_run(diff_pipeline.build_pipeline(a, b, f"{STAGING}/_diff",
                                                     PipelineOptions(DRY_RUN)))
    assert {"BeforeStatuses", "AfterStatuses", "DiffRecords", "DiffPairs", "WriteChanges",
            "CountFacts", "WriteDiffCounts"} <= _labels(proto)
    pipeline = mine_pipeline.build_pipeline(
        _config().replace(keeper_policy="stable"), f"{STAGING}/embeddings/*.parquet", STAGING,
        PipelineOptions(DRY_RUN), previous_keep=f"{a}/keep.parquet")
    proto, _ = _dry_run(pipeline)
    assert {"ReadPreviousKeep", "BuildGroups/PreviousKept", "BuildGroups/LabelMembers"} <= (
        _labels(proto))


@BOTH_PATHS
def test_a_pair_without_a_record_id_is_a_one_line_error(tmp_path, capsys, max_rows, computed):
    """It failed the job with "cannot hash a null string" (the bucket's hash)."""
    a, b = planted(tmp_path)
    pq.write_table(pa.table({"record_id_a": ["k1", None], "record_id_b": ["new2", "s"],
                             "score": pa.array([0.95, 0.95], pa.float32())}),
                   tmp_path / "out" / "B" / "near_duplicates.parquet")
    config = tmp_path / "c.yaml"
    config.write_text(f"diff_in_process_max_rows: {max_rows}\n")
    assert cli.exit_code(["diff", a, b, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "the after run's near_duplicates table has 1 pair without a record id" in err
    assert "Traceback" not in err
