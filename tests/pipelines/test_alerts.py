"""Alert limits against a summary's diff and recall; the line format; the exit status."""

import io
import json

import pytest

from pipelines import alerts
from pipelines.config import Config, load_config


def _summary(share=0.2, rate_change=0.0, pair_change=0.1, recall=None):
    return {"diff": {"before_run": "A", "records": {"new": 10},
                     "new_duplicates_of_old": round(share * 10), "new_duplicate_share": share,
                     "errors": {"rate_before": 0.01, "rate_after": 0.01 + rate_change,
                                "rate_change": rate_change},
                     "pairs": {"before": 100, "after": 110}, "pair_count_change": pair_change},
            "mining": {"mode": "approximate", "recall_sampled": recall}}


def test_nothing_breached_no_alerts():
    assert alerts.evaluate(Config(), _summary(recall=0.995)) == []
    assert alerts.evaluate(Config(), {"mining": {}}) == []  # no previous run, no recall


def test_each_limit_and_its_alert():
    found = alerts.evaluate(Config(), _summary(share=0.8, rate_change=0.03, pair_change=-0.6,
                                               recall=0.95))
    assert [(a["name"], a["value"], a["limit"]) for a in found] == [
        ("new_duplicate_share", 0.8, 0.5), ("error_rate_increase", 0.03, 0.01),
        ("pair_count_change", -0.6, 0.5), ("recall_below_target", 0.95, 0.99)]
    assert found[0]["message"] == "8 of 10 new records duplicate records of run A"


def test_null_limits_turn_alerts_off():
    config = Config(alert_max_new_duplicate_share=None, alert_max_error_rate_increase=None,
                    alert_max_pair_count_change=None, alert_on_low_recall=False)
    assert alerts.evaluate(config, _summary(share=1.0, rate_change=0.5, pair_change=9,
                                            recall=0.1)) == []


def test_lines_are_one_json_object_each_and_the_exit_status():
    found = alerts.evaluate(Config(), _summary(share=0.8, recall=0.9))
    out = io.StringIO()
    alerts.report(found, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(x.startswith("clipdedup: alert: {") for x in lines)
    assert [json.loads(x.removeprefix(alerts.PREFIX)) for x in lines] == found
    assert alerts.exit_status(found, True) == 3 != 2
    assert alerts.exit_status(found, False) == alerts.exit_status([], True) == 0


def test_config_checks_the_new_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("keeper_policy: sticky\nalert_max_new_duplicate_share: 2\n")
    with pytest.raises(ValueError) as exc:
        load_config(str(path))
    assert "keeper_policy must be one of pure, stable" in str(exc.value)
    assert "alert_max_new_duplicate_share must be within [0, 1]" in str(exc.value)
    path.write_text("keeper_policy: stable\nalert_max_pair_count_change: null\n")
    config = load_config(str(path))
    assert (config.keeper_policy, config.alert_max_pair_count_change) == ("stable", None)
