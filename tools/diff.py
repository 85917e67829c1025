"""`clipdedup diff RUN_A RUN_B`: what changed between two published runs.

    clipdedup diff out/20261201T020000Z out/20261202T020000Z
    clipdedup diff A B --json --changes changes.parquet --config local --fail-on-alert

Prints new / removed records, status changes (kept -> dropped, dropped ->
kept, keeper changed, now failing, no longer failing), new / vanished pairs
and the error-rate change; `--changes` writes the per-record table (the
`changes.parquet` a run with `--previous` publishes). The alert limits of
`--config` are checked too (`pipelines.alerts`). Runs as a Beam job
(`pipelines.diff_pipeline`): Beam flags such as `--runner` pass through.
"""

from __future__ import annotations

import json

from pipelines import alerts


def add_parser(sub) -> None:
    p = sub.add_parser("diff", help="what changed between two published runs")
    p.add_argument("before", metavar="RUN_A", help="the earlier published run folder")
    p.add_argument("after", metavar="RUN_B", help="the later published run folder")
    p.add_argument("--changes", help="also write the per-record changes table (Parquet) here; "
                                     "on a remote runner a gs:// path (the job writes beside it)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--config", help="YAML config whose alert_* limits are checked")
    p.add_argument("--fail-on-alert", action="store_true",
                   help=f"exit {alerts.ALERT_EXIT_CODE} when an alert limit is breached")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def text(d: dict, before: str, after: str) -> str:
    """The diff dict as a few lines."""
    r, p, e = d["records"], d["pairs"], d["errors"]
    rates = ("n/a" if e["rate_change"] is None else
             f"{e['rate_before']:.4f} -> {e['rate_after']:.4f} ({e['rate_change']:+.4f})")
    share = d["new_duplicate_share"]
    lines = [
        f"diff {before} -> {after}",
        f"  records: {r['before']} -> {r['after']}: new {r['new']}, removed {r['removed']}, "
        f"kept->dropped {r['kept_to_dropped']}, dropped->kept {r['dropped_to_kept']}, "
        f"keeper changed {r['keeper_changed']}, now failing {r['now_failing']}, "
        f"no longer failing {r['no_longer_failing']}",
        f"  new records duplicating old ones: {d['new_duplicates_of_old']} of {r['new']}"
        + ("" if share is None else f" ({share:.1%})"),
        f"  pairs: {p['before']} -> {p['after']} ({_percent(d['pair_count_change'])}): "
        f"new {p['new']}, vanished {p['vanished']}, changed kind {p['changed_kind']}",
        f"  error rate: {rates}",
    ]
    if d.get("changes_table"):
        lines.append(f"  changes: {d['changes_table']}")
    return "\n".join(lines)


def run(args, beam_args: list[str]) -> int:
    """The `diff` subcommand; returns the exit status."""
    from pipelines.config import load_config
    from pipelines.diff_pipeline import diff_runs, read_summary
    from pipelines.jobs import pipeline_options

    config = load_config(args.config)
    d = diff_runs(args.before, args.after, pipeline_options(beam_args), changes=args.changes,
                  in_process_max_rows=config.diff_in_process_max_rows)
    found = alerts.evaluate(config, {"diff": d, "mining": read_summary(args.after).get("mining", {})})
    if args.json:
        print(json.dumps(dict(d, alerts=found), sort_keys=True))
    else:
        print(text(d, args.before, args.after))
    alerts.report(found)
    return alerts.exit_status(found, args.fail_on_alert)
