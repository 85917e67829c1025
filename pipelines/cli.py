"""The `clipdedup` command line.

    clipdedup run   --config configs/local.yaml --input 'data/shards/*.tar' --output out/
    clipdedup embed --input data/ --output out/            # stage 1 alone
    clipdedup mine  --embeddings out/<run>/embeddings --output out/   # stage 2 alone
    clipdedup make-stand-in --size tiny --output models/clip-tiny
    clipdedup check-backend --model clip-ViT-B-32 --images data/ --backend onnx-int8
    clipdedup query --run out/<run> --image photo.jpg -k 10   # most similar images of a run
    clipdedup compare a.jpg b.jpg --run out/<run> --out diff.png   # a pair, pixel by pixel
    clipdedup report out/<run>                             # (re)write its report.html
    clipdedup calibrate --run out/<run> --out sheet/        # pairs to label, per score band
    clipdedup evaluate --run out/<run> --labels sheet/sheet.csv   # P/R against the labels
    clipdedup diff out/<run_a> out/<run_b>                 # what changed between two runs
    clipdedup clean --output out/                          # staging folders of failed runs
    clipdedup demo                                         # sample data, end to end

Flags this parser does not know (`--runner`, `--direct_num_workers`, Dataflow
flags) go unchanged to Beam's `PipelineOptions`, once Beam's own option parsers
have accepted them (`pipelines/beam_flags.py`): a flag neither knows is an
error. User and data errors end in one line, `clipdedup: error: ...`, exit 2.
With `--fail-on-alert`, a published run (or a diff) that breaches an alert
limit exits 3 (`pipelines.alerts`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback

from pipelines.config import MODES, Config, load_config
from tools import calibrate, check_backend, compare, evaluate, query
from tools import diff as nightly_diff
from tools.report import command as report_command
from transforms.long_lived import long_lived

log = logging.getLogger("clipdedup")

BEAM_COMMANDS = ("run", "embed", "mine", "demo", "report", "diff")  # the ones whose leftover flags go to Beam


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error instead of usage plus message (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"clipdedup: error: {message} (see `{self.prog} --help`)\n")


def _add_common(p: argparse.ArgumentParser, stage_flags: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("--config", help="YAML config, or a bundled one by name: local, dataflow")
    p.add_argument("--output", help="folder (or gs:// prefix) that receives <run_id>/")
    p.add_argument("--run-id", help="name of the run folder (default: UTC timestamp)")
    p.add_argument("--overwrite", action="store_true", help="replace a published run folder")
    p.add_argument("--duplicate-threshold", type=float)
    p.add_argument("--near-duplicate-threshold", type=float)
    p.add_argument("--mode", choices=MODES, help="mining mode")
    p.add_argument("--previous", dest="previous", metavar="RUN",
                   help="the previous published run: changes.parquet and summary.json `diff`")
    p.add_argument("--fail-on-alert", action="store_true",
                   help="exit 3 when the published run breaches an alert limit")
    if stage_flags:
        p.add_argument("--input", nargs="+", action="extend", dest="inputs", metavar="INPUT",
                       help="globs or directories of tar shards, Parquet or image files; "
                            "takes several (a shell-expanded glob) and is repeatable")
        p.add_argument("--model", help="sentence-transformers model: hub name or folder; or a "
                       "descriptor: phash, color-histogram, hog, resnet50, vgg16 (docs/quality.md)")
        p.add_argument("--device", help="cpu or cuda")
        p.add_argument("--batch-size", type=int, help="images per forward pass; 0 = per device")
        p.add_argument("--backend", help="torch | torch-int8 | onnx-int8 (docs/throughput.md)")
        p.add_argument("--num-threads", type=int, help="torch threads per worker")
        p.add_argument("--max-error-fraction", type=float,
                       help="fail the run if more records than this fraction fail")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="clipdedup",
        description="Find exact copies, duplicates and near-duplicates in image datasets. "
                    "Other flags are passed to Apache Beam (e.g. --runner, "
                    "--direct_num_workers, Dataflow flags); a flag Beam does not know "
                    "either is an error.")
    # also before the command (`clipdedup -q run ...`); its own dest, as a subcommand's
    # default would overwrite it
    parser.add_argument("-q", "--quiet", action="store_true", dest="quiet_all",
                        help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="embed and mine: shards in, tables out")
    _add_common(run_parser)
    run_parser.add_argument(
        "--incremental", action="store_true",
        help="build on the latest published run under --output: unchanged files are not "
             "read, known images not embedded, old pairs carried (README: Nightly runs)")
    _add_common(sub.add_parser("embed", help="stage 1: images -> Parquet embeddings"))
    mine = sub.add_parser("mine", help="stage 2: Parquet embeddings -> pair tables")
    _add_common(mine, stage_flags=False)
    mine.add_argument("--embeddings", required=True, action="extend", nargs="+",
                      help="embeddings table: Parquet file, folder of them, or glob; several "
                           "(repeat the flag, or list them) are mined together, ids unique "
                           "across them")
    mine.add_argument("--id-column", help="id column of the embeddings table (default record_id)")
    mine.add_argument("--embedding-column",
                      help="vector column of the embeddings table (default embedding)")
    mine.add_argument("--keeper-rule", help="keeper order, e.g. --keeper-rule=-area,-file_size,record_id")
    stand_in = sub.add_parser("make-stand-in",
                              help="write a random-weight CLIP in sentence-transformers format")
    stand_in.add_argument("--size", choices=("tiny", "base"), default="tiny")
    stand_in.add_argument("--output", required=True)
    check_backend.add_parser(sub)
    query.add_parser(sub)
    compare.add_parser(sub)
    report_command.add_parser(sub)
    evaluate.add_parser(sub)
    calibrate.add_parser(sub)
    nightly_diff.add_parser(sub)
    clean = sub.add_parser("clean", help="remove staging folders of failed or killed runs")
    clean.add_argument("--output", required=True, help="the folder (or gs:// prefix) of the runs")
    clean.add_argument("--run-id", help="only this run id (default: every run id)")
    clean.add_argument("--force", action="store_true",
                       help="also take over a lock held on another host (needs --run-id; only "
                            "when that run is known to be dead)")
    demo = sub.add_parser("demo", help="build sample data and run the whole job on it")
    demo.add_argument("--output", default="demo-output")
    demo.add_argument("--data", default="demo-output/data")
    return parser


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("apache_beam", "urllib3", "httpx", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_without_beams_user_error_tracebacks)


def _without_beams_user_error_tracebacks(record: logging.LogRecord) -> bool:
    """False for Beam's log of a data error that clipdedup itself raised inside a job
    (its own `ValueError` subclasses): the runner logs it with its traceback before
    re-raising it, and `exit_code` prints it as one line. Any other exception keeps
    its traceback in the log."""
    if not record.name.startswith("apache_beam") or not record.exc_info:
        return True
    exc = record.exc_info[1]
    ours = type(exc).__module__.split(".")[0] in ("transforms", "pipelines")
    return not (ours and isinstance(exc, _user_errors()))


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file named by `--config`, overridden by the stage flags given."""
    return load_config(args.config).replace(
        output=args.output, run_id=args.run_id, mode=args.mode,
        duplicate_threshold=args.duplicate_threshold,
        near_duplicate_threshold=args.near_duplicate_threshold,
        **(dict(id_column=args.id_column, embedding_column=args.embedding_column,
                keeper_rule=args.keeper_rule) if args.command == "mine" else dict(
            inputs=args.inputs, model=args.model, device=args.device,
            batch_size=args.batch_size, backend=args.backend, num_threads=args.num_threads,
            max_error_fraction=args.max_error_fraction)))


def _clean(args: argparse.Namespace) -> int:
    from pipelines.run_folder import clean
    from pipelines.run_names import validate_run_id

    if args.run_id is not None:
        validate_run_id(args.run_id)
    if args.force and args.run_id is None:
        raise ValueError("clean --force needs --run-id: it takes over locks it cannot check")
    for line in clean(args.output, args.run_id, args.force):
        print(line)
    return 0


def _own_flags(parser: argparse.ArgumentParser, command: str) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [o for a in sub.choices[command]._actions for o in a.option_strings]


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """clipdedup's arguments and the flags for Beam, each of which Beam's parsers know."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args:
        from pipelines import beam_flags  # loads Beam's options: only when there are some

        beam_flags.check(beam_args, _own_flags(parser, args.command),
                         beam=args.command in BEAM_COMMANDS)
    return args, beam_args


def run(argv: list[str] | None = None) -> int:
    with long_lived():  # Beam's modules, which the flag check loads
        args, beam_args = parse(argv)
    _setup_logging(args.quiet_all or getattr(args, "quiet", False))

    if args.command == "make-stand-in":
        from tools.stand_in import write_stand_in
        print(write_stand_in(args.output, args.size))
        return 0
    if args.command == "check-backend":
        return check_backend.run(args)
    if args.command == "query":
        return query.run(args)
    if args.command == "compare":
        return compare.run(args)
    if args.command == "report":
        return report_command.run(args, beam_args)
    if args.command == "evaluate":
        return evaluate.run(args)
    if args.command == "calibrate":
        return calibrate.run(args)
    if args.command == "clean":
        return _clean(args)
    if args.command == "diff":
        return nightly_diff.run(args, beam_args)
    if args.command == "demo":
        from tools.demo import run_demo
        return run_demo(args.output, args.data, beam_args)

    with long_lived():
        from pipelines import alerts
        from pipelines.jobs import execute
        from pipelines.summary_text import print_summary

    config = config_from_args(args)
    summary = execute(config, beam_args, embed=args.command in ("run", "embed"),
                      mine=args.command in ("run", "mine"),
                      embeddings=getattr(args, "embeddings", None), overwrite=args.overwrite,
                      previous=args.previous,
                      incremental=getattr(args, "incremental", False))
    print_summary(summary)
    log.debug("summary: %s", json.dumps(summary, default=str))
    alerts.report(summary.get("alerts", []))
    return alerts.exit_status(summary.get("alerts", []), args.fail_on_alert)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, flags, config or data: one line and exit 2.

    Anything else is a bug and keeps its traceback (exit 1). Imported here so
    that a command which never touches Beam does not load it to start.
    """
    import yaml
    from apache_beam.io.filesystem import BeamIOError

    from pipelines.checks import RunCheckError
    from pipelines.run_folder import ForeignFolderError, RunExistsError
    from pipelines.run_lock import LockHeldError

    return (ValueError, FileNotFoundError, PermissionError, yaml.YAMLError, BeamIOError,
            RunCheckError, RunExistsError, ForeignFolderError, LockHeldError)


def exit_code(argv: list[str] | None = None) -> int:
    """Runs the command; user and data errors become one stderr line and 2, bugs
    keep their traceback and give 1."""
    try:
        return run(argv)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            traceback.print_exc()
            return 1
        message = " ".join(str(exc).split()) or type(exc).__name__
        notes = "".join(f"; {n}" for n in getattr(exc, "__notes__", ()))
        print(f"clipdedup: error: {message}{notes}", file=sys.stderr)
        return 2


def main() -> None:
    from pipelines.process_exit import exit_process
    from transforms import long_lived

    long_lived.enable()  # this process is one command: its modules and model stay to the end
    exit_process(exit_code())  # not sys.exit: native teardown can abort a finished run


if __name__ == "__main__":
    main()
