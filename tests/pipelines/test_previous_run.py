"""A run given `--previous`: changes.parquet, summary.json `diff` / `alerts`, exit 3, and
the stable keeper policy, end to end through `clipdedup mine`."""

import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import cli
from tests.pipelines.test_mine_cli import _embeddings_run


def _night2(src, dst, copy_of: str):
    """Night 1's embeddings plus `big`: a byte-different, slightly larger copy of `copy_of`."""
    table = pq.read_table(src / "embeddings")
    row = table.filter(pc.equal(table.column("record_id"), copy_of)).to_pylist()[0]
    row.update(record_id="big", key="big", sha256="hbig", width=33, height=33)
    os.makedirs(dst / "embeddings")
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([row], schema=table.schema)]),
                   dst / "embeddings" / "part-00000-of-00001.parquet")
    pq.write_table(pq.read_table(src / "exact_duplicates.parquet"), dst / "exact_duplicates.parquet")


def _mine(tmp_path, src, run_id, *extra):
    return cli.exit_code(["-q", "mine", "--embeddings", str(src / "embeddings"), "--mode", "exact",
                          "--output", str(tmp_path / "out"), "--run-id", run_id, *extra])


def test_a_night_with_previous_writes_changes_alerts_and_keeps_keepers(tmp_path, capsys):
    _embeddings_run(tmp_path / "n1", n=200)
    assert _mine(tmp_path, tmp_path / "n1", "night1") == 0
    night1 = tmp_path / "out" / "night1"
    keep1 = pq.read_table(night1 / "keep.parquet").to_pylist()
    keeper = next(r["record_id"] for r in keep1 if r["reason"] == "keeper")
    _night2(tmp_path / "n1", tmp_path / "n2", keeper)
    before = sorted(p.name for p in night1.iterdir())
    capsys.readouterr()

    stable = tmp_path / "stable.yaml"
    stable.write_text("keeper_policy: stable\n")
    assert _mine(tmp_path, tmp_path / "n2", "night2", "--previous", str(night1),
                 "--config", str(stable), "--fail-on-alert") == 3
    _, err = capsys.readouterr()
    run = tmp_path / "out" / "night2"
    assert (run / "_SUCCESS").exists()  # an alert is about the data: the run is published
    alerts = [json.loads(x.removeprefix("clipdedup: alert: ")) for x in err.splitlines()
              if x.startswith("clipdedup: alert: ")]
    assert [a["name"] for a in alerts] == ["new_duplicate_share"] and alerts[0]["value"] == 1.0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["alerts"] == alerts
    assert summary["groups"]["keeper_policy"] == "stable"
    d = summary["diff"]
    assert d["before_run"] == "night1" and d["changes_table"] == "changes.parquet"
    assert d["computed"] == "in_process" and summary["timings"]["diff_seconds"] > 0
    assert d["records"]["new"] == 1 and d["records"]["removed"] == 0
    assert d["records"]["kept_to_dropped"] == 0 and d["new_duplicates_of_old"] == 1
    assert len(pd.read_parquet(run / "changes.parquet")) == 1
    assert pq.read_table(run / "changes.parquet").to_pylist() == [{
        "record_id": "big", "source_uri": "mem://s", "key": "big", "change": "new",
        "status_before": None, "status_after": "dropped", "reason_before": None,
        "reason_after": "duplicate", "keeper_before": None, "keeper_after": keeper}]
    assert sorted(p.name for p in night1.iterdir()) == before  # the previous run is only read

    # The pure policy on the same night: the larger copy takes over (the churn stable avoids).
    assert _mine(tmp_path, tmp_path / "n2", "pure", "--previous", str(night1)) == 0
    pure = pd.read_parquet(tmp_path / "out" / "pure" / "changes.parquet").set_index("record_id")
    assert pure.loc[keeper, "change"] == "kept_to_dropped"
    assert pure.loc[keeper, "keeper_after"] == "big"
    assert pure.loc["big", "status_after"] == "kept"
    assert json.loads((tmp_path / "out" / "pure" / "summary.json").read_text())["groups"][
        "keeper_policy"] == "pure"


def test_previous_must_be_a_published_run(tmp_path, capsys):
    _embeddings_run(tmp_path / "n1", n=50)
    (tmp_path / "nothing").mkdir()
    assert _mine(tmp_path, tmp_path / "n1", "r", "--previous", str(tmp_path / "nothing")) == 2
    assert "is not a published run folder" in capsys.readouterr().err
    assert not (tmp_path / "out" / "r").exists()


def test_previous_cannot_be_the_run_it_would_replace(tmp_path, capsys):
    _embeddings_run(tmp_path / "n1", n=50)
    assert _mine(tmp_path, tmp_path / "n1", "r") == 0
    before = sorted(p.name for p in (tmp_path / "out" / "r").iterdir())
    assert _mine(tmp_path, tmp_path / "n1", "r", "--overwrite",
                 "--previous", str(tmp_path / "out" / "r")) == 2
    assert "is the run folder this run would replace" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out" / "r").iterdir()) == before
