"""Alerts: a night's deltas checked against the configured limits.

A run given `--previous` has a `diff` section in its summary
(`pipelines.diff_pipeline`); `evaluate` compares it, and the run's sampled
recall, with the `alert_*` settings of the config. Each breach is one dict in
`summary.json` `alerts` and one line `clipdedup: alert: {json}` on stderr.
An alert is about the data, not a failed run: the run is published all the
same, and `--fail-on-alert` turns any alert into exit status `ALERT_EXIT_CODE`
(3; 2 is a user or data error, 1 a bug) for the scheduler to see.
"""

from __future__ import annotations

import json
import sys

from pipelines.config import Config

ALERT_EXIT_CODE = 3
PREFIX = "clipdedup: alert: "


def _alert(name: str, value: float, limit: float, message: str) -> dict:
    return {"name": name, "value": value, "limit": limit, "message": message}


def evaluate(config: Config, summary: dict) -> list[dict]:
    """The alerts a run's summary breaches, in a fixed order (empty when none)."""
    alerts = []
    d = summary.get("diff")
    if d:
        share, limit = d.get("new_duplicate_share"), config.alert_max_new_duplicate_share
        if limit is not None and share is not None and share > limit:
            alerts.append(_alert(
                "new_duplicate_share", share, limit,
                f"{d['new_duplicates_of_old']} of {d['records']['new']} new records duplicate "
                f"records of run {d.get('before_run')}"))
        rise, limit = d["errors"]["rate_change"], config.alert_max_error_rate_increase
        if limit is not None and rise is not None and rise > limit:
            alerts.append(_alert(
                "error_rate_increase", rise, limit,
                f"error rate {d['errors']['rate_before']:.4f} -> {d['errors']['rate_after']:.4f}"))
        change, limit = d.get("pair_count_change"), config.alert_max_pair_count_change
        if limit is not None and change is not None and abs(change) > limit:
            alerts.append(_alert(
                "pair_count_change", change, limit,
                f"pairs {d['pairs']['before']} -> {d['pairs']['after']}"))
    recall = summary.get("mining", {}).get("recall_sampled")
    if config.alert_on_low_recall and recall is not None and recall < config.recall_target:
        alerts.append(_alert("recall_below_target", recall, config.recall_target,
                             f"sampled recall {recall:.4f} of mode "
                             f"{summary.get('mining', {}).get('mode')}"))
    return alerts


def alert_line(alert: dict) -> str:
    """One machine-readable line: the prefix, then the alert as one JSON object."""
    return PREFIX + json.dumps(alert, sort_keys=True)


def report(alerts: list[dict], out=None) -> None:
    """Prints one line per alert (to `out`, default stderr)."""
    for alert in alerts:
        print(alert_line(alert), file=out or sys.stderr)


def exit_status(alerts: list[dict], fail_on_alert: bool) -> int:
    return ALERT_EXIT_CODE if alerts and fail_on_alert else 0
