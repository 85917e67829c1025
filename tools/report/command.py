"""`clipdedup report RUN`: (re)writes `report.html` of a published run folder.

    clipdedup report out/<run_id> [--seed 0] [--bands 0.999,0.98,0.95] \
        [--pairs-per-band 8] [--evaluation EVAL_DIR] [Beam flags, e.g. --runner DataflowRunner ...]

The bands, pairs per band and seed default to the run's own config (its
`summary.json`); the thumbnails job runs on the runner the Beam flags name
(default the local FnApiRunner, `pipelines/local_runner.py`).
"""

from __future__ import annotations

import json


def _bands(text: str) -> tuple[float, ...]:
    try:
        bands = tuple(float(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise ValueError(f"--bands must be numbers separated by commas, got {text!r}") from None
    if not bands or any(not 0 < b <= 1 for b in bands):
        raise ValueError(f"--bands must be scores within (0, 1], got {text!r}")
    return bands


def settings_for(summary: dict, args) -> object:
    """The report settings: the flags given, else the run's config, else the defaults."""
    from tools.report.sample import ReportSettings

    config, default = summary.get("config", {}), ReportSettings()
    bands = (_bands(args.bands) if args.bands else
             tuple(config.get("report_bands", default.bands)))
    pairs = args.pairs_per_band if args.pairs_per_band is not None else int(
        config.get("report_pairs_per_band", default.pairs_per_band))
    seed = args.seed if args.seed is not None else int(config.get("report_seed", default.seed))
    if pairs < 0 or seed < 0:
        raise ValueError("--pairs-per-band and --seed must be >= 0")
    return ReportSettings(bands=bands, pairs_per_band=pairs, seed=seed)


def run(args, beam_args: list[str]) -> int:
    """The `report` subcommand; prints the report's path."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.jobs import _as_pattern, pipeline_options
    from tools.report.build import write_report

    folder = args.run.rstrip("/")
    if not FileSystems.exists(FileSystems.join(folder, "_SUCCESS")):
        raise FileNotFoundError(f"{folder}: not a published run folder (no _SUCCESS)")
    with FileSystems.open(FileSystems.join(folder, "summary.json")) as f:
        summary = json.loads(f.read())
    if "mine" not in summary.get("stages", []):
        raise ValueError(f"{folder}: this run did not mine pairs (stages "
                         f"{summary.get('stages')}); report the run that mined them")
    own = FileSystems.join(folder, "embeddings")
    embeddings = (own if "embed" in summary.get("stages", []) or
                  not summary.get("embeddings_source") else
                  _as_pattern(summary["embeddings_source"]))
    print(write_report(folder, summary, pipeline_options(beam_args), settings_for(summary, args),
                       embeddings, evaluation=args.evaluation))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write report.html of a published run folder")
    p.add_argument("run", help="a published run folder (<output>/<run_id>)")
    p.add_argument("--bands", help="lower edges of the score bands, e.g. 0.999,0.98,0.95 "
                                   "(default: the run's report_bands)")
    p.add_argument("--pairs-per-band", type=int, help="pairs sampled per band")
    p.add_argument("--seed", type=int, help="sampling seed (default: the run's report_seed)")
    p.add_argument("--evaluation", metavar="DIR",
                   help="a `clipdedup evaluate --out` folder: its figures and precision-recall "
                        "curve go into the report")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
