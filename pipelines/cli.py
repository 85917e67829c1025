"""The `clipdedup` command line.

    clipdedup run   --config configs/local.yaml --input 'data/shards/*.tar' --output out/
    clipdedup embed --input data/ --output out/            # stage 1 alone
    clipdedup mine  --embeddings out/<run>/embeddings --output out/   # stage 2 alone
    clipdedup make-stand-in --size tiny --output models/clip-tiny
    clipdedup check-backend --model clip-ViT-B-32 --images data/ --backend onnx-int8
    clipdedup demo                                         # sample data, end to end

Flags this parser does not know (`--runner`, `--direct_num_workers`, Dataflow
flags) go unchanged to Beam's `PipelineOptions`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines import check_backend
from pipelines.config import MODES, Config, load_config

log = logging.getLogger("clipdedup")


def _add_common(p: argparse.ArgumentParser, stage_flags: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("--config", help="YAML config, or a bundled one by name: local, dataflow")
    p.add_argument("--output", help="folder (or gs:// prefix) that receives <run_id>/")
    p.add_argument("--run-id", help="name of the run folder (default: UTC timestamp)")
    p.add_argument("--overwrite", action="store_true", help="replace a published run folder")
    p.add_argument("--duplicate-threshold", type=float)
    p.add_argument("--near-duplicate-threshold", type=float)
    p.add_argument("--mode", choices=MODES, help="mining mode")
    if stage_flags:
        p.add_argument("--input", action="append", dest="inputs",
                       help="glob or directory of tar shards, Parquet or image files; repeatable")
        p.add_argument("--model", help="sentence-transformers model: hub name or folder")
        p.add_argument("--device", help="cpu or cuda")
        p.add_argument("--batch-size", type=int, help="images per forward pass; 0 = per device")
        p.add_argument("--backend", help="torch | torch-int8 | onnx-int8 (docs/throughput.md)")
        p.add_argument("--num-threads", type=int, help="torch threads per worker")
        p.add_argument("--max-error-fraction", type=float,
                       help="fail the run if more records than this fraction fail")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipdedup",
        description="Find exact copies, duplicates and near-duplicates in image datasets. "
                    "Unknown flags are passed to Apache Beam (e.g. --runner, "
                    "--direct_num_workers, Dataflow flags).")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_common(sub.add_parser("run", help="embed and mine: shards in, tables out"))
    _add_common(sub.add_parser("embed", help="stage 1: images -> Parquet embeddings"))
    mine = sub.add_parser("mine", help="stage 2: Parquet embeddings -> pair tables")
    _add_common(mine, stage_flags=False)
    mine.add_argument("--embeddings", required=True,
                      help="embeddings table: Parquet file, folder of them, or glob")
    stand_in = sub.add_parser("make-stand-in",
                              help="write a random-weight CLIP in sentence-transformers format")
    stand_in.add_argument("--size", choices=("tiny", "base"), default="tiny")
    stand_in.add_argument("--output", required=True)
    check_backend.add_parser(sub)
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


def print_summary(summary: dict, out=sys.stdout) -> None:
    """The short human-readable end of a run."""
    c = summary.get("counts", {})
    lines = [f"run {summary['run_id']} published to {summary['run_folder']}"]
    if summary.get("model_is_stand_in"):
        lines.append(f"  MODEL IS A STAND-IN (random weights): {summary['model']}")
    elif "model" in summary:
        lines.append(f"  model: {summary['model']}")
    if "records_read" in c:
        lines.append(f"  records read {c['records_read']} from {c['files']} files: embedded "
                     f"{c['embedded']}, byte copies {c['exact_copies_not_embedded']}, "
                     f"errors {c['record_errors']} {c.get('errors_by_reason') or ''}")
    if "duplicates" in c:
        lines.append(f"  pairs: duplicates {c['duplicates']} (score >= "
                     f"{summary['duplicate_threshold']}), near-duplicates "
                     f"{c['near_duplicates']} (>= {summary['near_duplicate_threshold']})")
    m = summary.get("mining", {})
    if m.get("mode"):
        recall = m.get("recall_sampled")
        lines.append(f"  mining: mode {m['mode']}, sampled recall "
                     f"{'n/a' if recall is None else f'{recall:.4f}'}"
                     + (" (BELOW TARGET)" if m.get("recall_below_target") else ""))
    g = summary.get("groups")
    if g:
        lines.append(f"  manifest: kept {g['kept']}, dropped {g['dropped']} (exact_copy "
                     f"{g['dropped_exact_copy']}, duplicate {g['dropped_duplicate']}, "
                     f"near_duplicate {g['dropped_near_duplicate']}) in {g['groups']} groups")
    t = summary["timings"]
    took = f"  took {t['total_seconds']:.1f} s"
    if t.get("inference_seconds") is not None:
        took += (f" (embed stage {t['embed_seconds']:.1f} s, of which the model "
                 f"{t['inference_seconds']:.1f} s, summed over workers)")
    lines.append(took)
    print("\n".join(lines), file=out)


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file named by `--config`, overridden by the stage flags given."""
    return load_config(args.config).replace(
        output=args.output, run_id=args.run_id, mode=args.mode,
        duplicate_threshold=args.duplicate_threshold,
        near_duplicate_threshold=args.near_duplicate_threshold,
        **({} if args.command == "mine" else dict(
            inputs=args.inputs, model=args.model, device=args.device,
            batch_size=args.batch_size, backend=args.backend, num_threads=args.num_threads,
            max_error_fraction=args.max_error_fraction)))


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    _setup_logging(getattr(args, "quiet", False))

    if args.command == "make-stand-in":
        from pipelines.stand_in import write_stand_in
        print(write_stand_in(args.output, args.size))
        return 0
    if args.command == "check-backend":
        return check_backend.run(args)
    if args.command == "demo":
        from pipelines.demo import run_demo
        return run_demo(args.output, args.data, beam_args)

    from pipelines.jobs import execute

    config = config_from_args(args)
    summary = execute(config, beam_args, embed=args.command in ("run", "embed"),
                      mine=args.command in ("run", "mine"),
                      embeddings=getattr(args, "embeddings", None), overwrite=args.overwrite)
    print_summary(summary)
    log.debug("summary: %s", json.dumps(summary, default=str))
    return 0


def main() -> None:
    from pipelines.process_exit import exit_process

    try:
        code = run()
    except KeyboardInterrupt:
        code = 130
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        logging.getLogger("clipdedup").error("%s", exc)
        print(f"clipdedup: error: {exc}", file=sys.stderr)
        code = 2
    exit_process(code)  # not sys.exit: native teardown can abort a finished run


if __name__ == "__main__":
    main()
