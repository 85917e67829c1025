"""Runs the two Beam jobs inside a run folder, checks their totals, publishes.

`execute` is what `clipdedup run`, `embed` and `mine` call. In order:

1. pre-flight (inputs, output, credentials) and the model's small files;
2. `_embed`: the embed job (`embed_pipeline`) on the runner the Beam flags
   name; then the part files of its small tables are stream-merged and the
   job's own totals (`_checks.json`) are checked: conservation, error budget,
   inputs unchanged;
3. `_mine`: the mine job (`mine_pipeline`): pairs, groups and the manifest,
   all on the engine; then its part files are stream-merged (keep.txt /
   drop.txt with them) and its stats JSON read;
4. with `--previous RUN`: `diff_pipeline.write_changes` (changes.parquet,
   summary.json `diff`); then the alert limits (`alerts`, summary.json `alerts`);
5. `_report`: `report.html` beside the tables (`tools/report/`; its thumbnails
   come from a small Beam job on the same runner); a report that fails is
   logged and noted in `summary.json`, and the run is published without it;
6. `RunFolder.publish`: `summary.json`, the folder moved into place, `_SUCCESS`.

An incremental night (`previous` / `incremental`) first finds the run it builds
on (`pipelines.previous_run`, its summary only), gives it to both jobs, and
says in `summary.json` `incremental` what was reused and what was done again.

The launcher never holds a per-record table: what it reads is footers,
schemas and a few small JSON files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import platform
import time

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import (
    __version__,
    beam_introspection,
    beam_option_views,
    checks,
    local_runner,
    mine_pipeline,
    previous_run,
)
from pipelines.config import Config
from pipelines.run_folder import RunFolder
from transforms import run_checks, schemas
from transforms.embed.model_files import (
    DEFAULT_IMAGE_SIZE,
    INFERENCE_NAMESPACE,
    KNOWN_DIMS,
    inspect_model,
    is_remote,
    is_stand_in,
)
from transforms.long_lived import long_lived

log = logging.getLogger("clipdedup")

DEFAULT_RUNNER = local_runner.NAME  # Beam's DirectRunner engine, without its Prism attempt


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    dim: int
    is_stand_in: bool
    image_size: int = DEFAULT_IMAGE_SIZE  # side of the square pixels the model takes
    kind: str = "sentence-transformers"  # or "descriptor" (transforms/embed/descriptors.py)


def resolve_model(config: Config) -> ModelInfo:
    """Checks that the model can be loaded, before any pipeline starts, and
    learns its embedding width and input size from its config files (no
    weights are loaded when they say both).

    Raises:
        ModelNotFoundError: (a FileNotFoundError) it cannot be loaded; the
            message says why and how to pass a model.
    """
    with long_lived():  # Beam's RunInference, torch
        from transforms.embed import descriptors

    name = config.model
    if descriptors.is_descriptor(name):  # reserved names: phash, color-histogram, hog, CNNs
        descriptors.check_available(name)
        return ModelInfo(name, descriptors.DIMS[name], False, DEFAULT_IMAGE_SIZE, "descriptor")
    files = inspect_model(name)
    size = files.image_size or DEFAULT_IMAGE_SIZE
    dim = config.embedding_dim or files.dim or KNOWN_DIMS.get(name)
    if dim is None:  # no config says: ask the model
        import numpy as np

        from transforms.embed.images import SentenceTransformerImageHandler
        handler = SentenceTransformerImageHandler(name, "cpu")
        probe = handler.run_inference([np.zeros((size, size, 3), np.uint8)], handler.load_model())
        dim = len(probe[0].inference)
    local = not is_remote(name) and os.path.isdir(name)
    return ModelInfo(name, int(dim), local and is_stand_in(name), size)


def default_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the pass-through flags; never re-reads sys.argv."""
    beam_introspection.install()
    beam_option_views.install()
    options = PipelineOptions(list(beam_args))
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    return options


def _run(pipeline):
    result = pipeline.run()
    result.wait_until_finish()
    return result


def _inference_seconds(result) -> float | None:
    """Seconds the model spent in forward passes, summed over workers (Beam's
    RunInference batch latencies); None where the runner reports no metrics."""
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(INFERENCE_NAMESPACE))
    except Exception:  # noqa: BLE001 - metrics are optional on some runners
        return None
    latencies = [d.committed or d.attempted for d in query["distributions"]
                 if d.key.metric.name.endswith("inference_batch_latency_micro_secs")]
    latencies = [d for d in latencies if d is not None]
    return round(sum(d.sum for d in latencies) / 1e6, 3) if latencies else None


def _counters(result, names: tuple[str, ...]) -> dict[str, int]:
    """Totals of the clipdedup counters `names` (0 where a counter never counted)."""
    from transforms.metrics import NAMESPACE

    totals = dict.fromkeys(names, 0)
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except Exception:  # noqa: BLE001 - metrics are optional on some runners
        return totals
    for c in query["counters"]:
        if c.key.metric.name in totals:
            totals[c.key.metric.name] += c.committed or c.attempted or 0
    return totals


def _embed(config: Config, model: ModelInfo, folder: RunFolder, options: PipelineOptions,
           summary: dict, previous: previous_run.Previous | None = None) -> str:
    # Building the embed graph imports the model runtime (torch): a mine-only
    # launcher never pays for it.
    from pipelines import embed_pipeline

    summary.update(model=model.name, model_kind=model.kind, model_is_stand_in=model.is_stand_in,
                   embedding_dim=model.dim, image_size=model.image_size)
    if model.is_stand_in:
        log.warning("MODEL IS A STAND-IN: %s has random weights, not the real clip-ViT-B-32; "
                    "its duplicate tables are not meaningful for real data", model.name)
    night = summary.get("incremental")
    if previous is not None:
        reason = previous_run.reembed_reason(previous, summary)
        night.update(reembedded_in_full=reason is not None, reembed_reason=reason)
        if reason:
            log.warning("run %s: %s since %s: every file is read and embedded again",
                        folder.run_id, reason, previous.folder)
            previous = None
    started = time.monotonic()
    result = _run(embed_pipeline.build_pipeline(
        config, folder.staging, model.dim, options, image_size=model.image_size,
        descriptor=model.kind == "descriptor",
        previous=previous.folder if previous is not None else None))
    summary["timings"]["embed_seconds"] = round(time.monotonic() - started, 3)
    if night is not None:  # what this night did, as the job's counters saw it
        night.update(_counters(result, ("files_read", "files_carried", "files_gone",
                                        "embedded", "embeddings_reused")))
    summary["timings"]["inference_seconds"] = _inference_seconds(result)

    # The small tables are merged before any check, so a failed run's staging
    # folder holds them for inspection; merging streams row groups.
    for table, schema in ((embed_pipeline.ERRORS, schemas.ERRORS_SCHEMA),
                          (embed_pipeline.SHARDS, schemas.SHARDS_SCHEMA),
                          (embed_pipeline.EXACT_DUPLICATES, schemas.EXACT_DUPLICATES_SCHEMA),
                          (embed_pipeline.SKIPPED, schemas.SKIPPED_SCHEMA)):
        folder.merge_parts(table, schema)
    # Counted by the job itself (SummarizeRun): a few numbers, however many records.
    totals = run_checks.read_totals(folder.staging)
    checks.check_inputs_unchanged(totals)
    counts = checks.check_conservation(totals)
    checks.check_file_budget(totals, config.max_error_fraction)
    checks.check_error_budget(totals, config.max_error_fraction)
    FileSystems.delete([run_checks.checks_path(folder.staging)])  # summary.json has its counts
    if night is not None:  # tonight's work apart from what was carried over
        summary["counts"].update(files_read=night["files_read"],
                                 images_embedded=night["embedded"])
    summary["failed_files"] = totals["failed_files"][:checks.SHOWN_FILES]
    summary["counts"].update(
        counts, files=totals["files"], files_failed=totals["files_failed"],
        shards_not_ended_cleanly=totals["shards_not_ended_cleanly"],
        files_skipped=totals["files_skipped"], skipped_by_reason=totals["skipped_by_reason"],
        errors_by_stage=totals["errors_by_stage"], errors_by_reason=totals["errors_by_reason"])
    return FileSystems.join(folder.staging, embed_pipeline.EMBEDDINGS, "*.parquet")


def _mine(config: Config, embeddings: str | list[str], folder: RunFolder,
          options: PipelineOptions, summary: dict,
          exact_duplicates: str | list[str] | None = None, previous: str | None = None,
          builds_on: previous_run.Previous | None = None) -> None:
    """Mines pairs and builds groups and the keep/drop manifest in one Beam job.

    With `keeper_policy: stable` and a previous run, its keep table is read on
    the engine: the records it kept stay keepers while within the threshold.

    The launcher reads only file schemas and small stats: ids, metadata and
    pairs stay on the engine (`transforms.manifest`).
    """
    patterns = [embeddings] if isinstance(embeddings, str) else list(embeddings)
    # The id and vector columns and the keeper rule are checked on the schemas before
    # any pipeline runs, so a table made elsewhere fails in one line, not after mining.
    rule, left_out, n_records = _inspect_embeddings(config, patterns)
    if left_out:
        log.warning("embeddings table has no column for keeper fields %s: keepers chosen by %r",
                    left_out, rule)
    sources = ([exact_duplicates] if isinstance(exact_duplicates, str)
               else list(exact_duplicates or []))
    sources = [s for s in sources if FileSystems.exists(s)]
    previous_keep = (FileSystems.join(previous, "keep.parquet")
                     if previous and config.keeper_policy == "stable" else None)
    if config.keeper_policy == "stable" and not previous:
        log.info("keeper_policy stable without --previous: keepers by the keeper rule alone")
    incremental = _mine_incrementally(config, folder, summary, builds_on, n_records)
    started = time.monotonic()
    _run(mine_pipeline.build_pipeline(config, patterns, folder.staging, options,
                                      keeper_rule=rule, exact_duplicates=sources,
                                      n_records=n_records, previous_keep=previous_keep,
                                      incremental=incremental))
    summary["timings"]["mine_seconds"] = round(time.monotonic() - started, 3)
    for table in (mine_pipeline.DUPLICATES, mine_pipeline.NEAR_DUPLICATES):
        folder.merge_parts(table, schemas.PAIRS_SCHEMA)
    mode = mining_mode(config, n_records)  # the partitions it used, for the next night
    if mode in ("approximate", "distributed"):
        folder.merge_parts(mine_pipeline.CENTROIDS, schemas.CENTROIDS_SCHEMA)
    if mode == "approximate":  # distributed assigns every record again from the centroids
        folder.merge_parts(mine_pipeline.PARTITIONS, schemas.PARTITIONS_SCHEMA)
    stats = mine_pipeline.read_stats(folder.staging)
    group_stats = mine_pipeline.read_stats(folder.staging, mine_pipeline.GROUP_STATS)
    FileSystems.delete([FileSystems.join(folder.staging, name + ".json")
                        for name in (mine_pipeline.MINE_STATS, mine_pipeline.GROUP_STATS)])
    if stats.get("incremental"):  # the tables' totals, from the merged files' footers
        from transforms.parquet_open import parquet_footer

        stats.update({table: parquet_footer(folder.path(f"{table}.parquet")).num_rows
                      for table in (mine_pipeline.DUPLICATES, mine_pipeline.NEAR_DUPLICATES)})
        stats["pairs_carried"] = stats["duplicates"] + stats["near_duplicates"] - stats["pairs_new"]
        summary["incremental"].update(pairs_carried=stats["pairs_carried"],
                                      pairs_new=stats["pairs_new"],
                                      embeddings_new_to_mining=stats["embeddings_new"])
        if stats.get("remined_in_full"):  # the engine found the centroids no longer fit
            summary["incremental"].update(remined_in_full=True,
                                          remine_reason=stats["remine_reason"])
    summary["mining"] = stats
    summary["counts"].update(duplicates=stats["duplicates"],
                             near_duplicates=stats["near_duplicates"])
    if config.phash_max_distance >= 0:
        folder.merge_parts(mine_pipeline.PHASH_PAIRS, schemas.PHASH_PAIRS_SCHEMA)
        summary["phash"] = mine_pipeline.read_stats(folder.staging, mine_pipeline.PHASH_STATS)
        FileSystems.delete([FileSystems.join(folder.staging, mine_pipeline.PHASH_STATS + ".json")])
        summary["counts"]["phash_pairs"] = summary["phash"]["phash_pairs"]
    problems = group_stats.pop("problems", None)
    if problems or problems is None:
        raise checks.RunCheckError("; ".join(problems or ["the mine job wrote no group stats"]))
    started = time.monotonic()
    folder.merge_parts(mine_pipeline.GROUPS, schemas.GROUPS_SCHEMA)
    folder.merge_parts(mine_pipeline.KEEP, schemas.KEEP_SCHEMA, text_column=mine_pipeline.LINE)
    folder.merge_parts(mine_pipeline.DROP, schemas.DROP_SCHEMA, text_column=mine_pipeline.LINE)
    summary["timings"]["groups_merge_seconds"] = round(time.monotonic() - started, 3)
    if group_stats["rows_without_source_uri"]:
        log.warning("%d manifest rows have no source_uri (the mined table has none): "
                    "their keep.txt/drop.txt lines are record ids",
                    group_stats["rows_without_source_uri"])
    source = (sources[0] if len(sources) == 1 else sources) if sources else None
    summary["groups"] = dict(group_stats, exact_duplicates_source=source,
                             keeper_fields_left_out=left_out, keeper_policy=config.keeper_policy,
                             previous_keepers_from=previous_keep)
    summary["counts"].update(kept=group_stats["kept"], dropped=group_stats["dropped"])


def _mine_incrementally(config: Config, folder: RunFolder, summary: dict,
                        previous: previous_run.Previous | None,
                        n_records: int) -> dict[str, str] | None:
    """The `incremental` argument of the mine job, or None (a full mine, logged)."""
    night = summary.get("incremental")
    if previous is None or night is None:
        return None
    if night.get("reembedded_in_full"):  # new vectors for every record: no pair carries
        night.update(remined_in_full=True, remine_reason=night["reembed_reason"])
        return None
    from transforms.embed import reuse

    mode = mining_mode(config, n_records)
    reason = previous_run.remine_reason(previous, mode, config.near_duplicate_threshold,
                                        n_records=n_records, nprobe=config.nprobe,
                                        nlist=config.nlist,
                                        partitions_per_vector=config.partitions_per_vector)
    night.update(remined_in_full=reason is not None, remine_reason=reason)
    if reason:
        log.warning("run %s: %s: every pair is mined again", folder.run_id, reason)
        return None
    ids = FileSystems.join(folder.staging, reuse.INCREMENTAL)
    mining = previous.summary.get("mining", {})
    return {"previous": previous.folder, "mode": mode,
            "new_ids": FileSystems.join(ids, reuse.NEW, "*.parquet"),
            "not_carried": FileSystems.join(ids, reuse.NOT_CARRIED, "*.parquet"),
            "nprobe": mining.get("nprobe"), "trained_n": mining.get("centroids_trained_n"),
            "trained_fit": mining.get("centroids_trained_fit"),
            "previous_recall_ok": not mining.get("recall_below_target", False)}


def mining_mode(config: Config, n_records: int) -> str:
    """The mode the mine job runs in: `auto` resolved at the table's size."""
    from transforms.mine import resolve_mode

    return ("distributed" if config.mode == "distributed"
            else resolve_mode(config.mode, n_records, config.approximate_min_n))


def _inspect_embeddings(config: Config, patterns: list[str]) -> tuple[str, list[str], int]:
    """The keeper rule resolved against the metadata columns any embeddings file has,
    the fields it leaves out, and the row count (footers only; each file is checked
    for an id and a vector column)."""
    from transforms.manifest.keeper_rule import resolve_keeper_rule
    from transforms.manifest.records import METADATA_TYPES
    from transforms.mine.transform import check_schema, match_files
    from transforms.parquet_open import parquet_footer

    columns, rows = {"record_id"}, 0
    for path in match_files(patterns):
        footer = parquet_footer(path)
        schema = footer.schema.to_arrow_schema()
        check_schema(path, schema, config.id_column, config.embedding_column)
        columns |= {c for c in METADATA_TYPES if c in schema.names and c != config.id_column}
        rows += footer.num_rows
    return (*resolve_keeper_rule(config.keeper_rule, columns, "the embeddings table"), rows)


def execute(config: Config, beam_args: list[str], *, embed: bool = True, mine: bool = True,
            embeddings: str | list[str] | None = None, overwrite: bool = False,
            previous: str | None = None, incremental: bool = False) -> dict:
    """Runs the chosen stages into a new run folder and publishes it.

    Args:
        config: domain settings.
        beam_args: flags for Beam's PipelineOptions (runner, Dataflow, ...).
        embed / mine: which stages to run.
        embeddings: existing embeddings tables (each a file, folder or glob)
            when only `mine` runs.
        overwrite: replace a published run folder of the same run_id.
        previous: the previous published run folder (read only): what changed
            since it (and, with `keeper_policy: stable`, its keepers). With both
            stages, the run also builds on it (an incremental night).
        incremental: build on the latest published run under `config.output`
            (both stages only); it is also the `previous` of the diff.

    Returns:
        The summary written to `summary.json`, with `run_folder` added.
    """
    if not config.output:
        raise ValueError("no output given: pass --output (a folder or gs:// prefix)")
    if mine and not embed and not embeddings:
        raise ValueError("mine needs --embeddings (a Parquet file, folder or glob)")
    from pipelines import preflight  # inputs, output, credentials: before anything is made

    preflight.check(config, beam_args, embed=embed, embeddings=embeddings)
    if previous and mine:
        from pipelines.diff_pipeline import check_run

        check_run(previous)  # before hours of work, not after
    options = pipeline_options(beam_args)
    model = resolve_model(config) if embed else None  # before anything is created or read
    folder = RunFolder(config.output, config.run_id or default_run_id())
    given = previous
    builds_on = _previous(config, folder, previous, incremental, embed and mine)
    if builds_on:  # the diff and a stable keeper compare with the run a night builds on
        previous = builds_on.folder
        if not given:  # found by --incremental; a given --previous was checked above
            from pipelines.diff_pipeline import check_run

            check_run(previous)
    if previous and _same_folder(previous, folder.final):
        raise ValueError(f"--previous {previous} is the run folder this run would replace; "
                         "the previous run is read-only input: pass another --run-id")
    folder.start(overwrite)  # takes the run id's lock; fails fast if another run holds it
    try:
        return _run_stages(config, model, folder, options, embed=embed, mine=mine,
                           embeddings=embeddings, overwrite=overwrite, previous=previous,
                           builds_on=builds_on)
    except BaseException as exc:
        note = folder.abandon()  # an empty staging folder goes; else say where it is
        if note:
            exc.add_note(note)
        raise
    finally:
        folder.release()


def _previous(config: Config, folder: RunFolder, previous: str | None, incremental: bool,
              both_stages: bool) -> previous_run.Previous | bool | None:
    """The run an incremental night builds on; False: none published yet (a full run);
    None: not an incremental run."""
    if not both_stages:  # `mine --previous`: a diff, nothing to build on
        if incremental:
            raise ValueError("--incremental needs both stages (clipdedup run)")
        return None
    if not (previous or incremental):
        return None
    if previous is None:
        previous = previous_run.latest_published(config.output, folder.run_id)
        if previous is None:
            log.warning("run %s: no published run under %s yet: a full run",
                        folder.run_id, config.output)
            return False
    found = previous_run.load(previous)
    log.info("run %s: incremental on %s", folder.run_id, found.folder)
    return found


def _run_stages(config: Config, model: ModelInfo | None, folder: RunFolder,
                options: PipelineOptions, *, embed: bool, mine: bool,
                embeddings: str | list[str] | None, overwrite: bool,
                previous: str | None = None,
                builds_on: previous_run.Previous | bool | None = None) -> dict:
    """The stages of `execute`, inside a started run folder whose lock is held."""
    from transforms.embed import reuse

    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summary: dict = {
        "clipdedup_version": __version__, "run_id": folder.run_id, "started_at": started_at,
        "runner": options.view_as(StandardOptions).runner, "python": platform.python_version(),
        "stages": [s for s, on in (("embed", embed), ("mine", mine)) if on],
        "duplicate_threshold": config.duplicate_threshold,
        "near_duplicate_threshold": config.near_duplicate_threshold,
        "config": config.to_dict(), "counts": {}, "timings": {},
    }
    if builds_on is not None:  # what a later step (or a diff of the nights) builds on
        summary["incremental"] = {
            "previous": builds_on.folder if builds_on else None,
            "previous_run_id": builds_on.run_id if builds_on else None,
            "reembedded_in_full": not builds_on, "remined_in_full": not builds_on,
            "reembed_reason": None if builds_on else "no previous run",
            "remine_reason": None if builds_on else "no previous run"}
    builds_on = builds_on or None
    started = time.monotonic()
    log.info("run %s: staging in %s", folder.run_id, folder.staging)
    exact_duplicates = None
    if embed:
        embeddings = _embed(config, model, folder, options, summary, builds_on)
        exact_duplicates = folder.path("exact_duplicates.parquet")
        config = config.replace(id_column="record_id", embedding_column="embedding")  # its own table
    elif embeddings:
        summary["embeddings_source"] = embeddings
        exact_duplicates = _sibling_exact_duplicates(embeddings)
        embeddings = _as_pattern(embeddings)
    if mine:
        _mine(config, embeddings, folder, options, summary, exact_duplicates,
              previous=previous, builds_on=builds_on)
        if builds_on is not None:  # the id tables the embed job handed to the mine job
            folder.delete_tree(FileSystems.join(folder.staging, reuse.INCREMENTAL))
        if previous:
            from pipelines.diff_pipeline import write_changes

            diff_started = time.monotonic()
            summary["diff"] = write_changes(previous, folder.staging, summary, options,
                                            config.diff_in_process_max_rows)
            summary["timings"]["diff_seconds"] = round(time.monotonic() - diff_started, 3)
    from pipelines.alerts import evaluate

    summary["alerts"] = evaluate(config, summary)  # about the data: the run still publishes
    summary["timings"]["total_seconds"] = round(time.monotonic() - started, 3)
    if mine and config.report:
        _report(config, folder, options, summary, embeddings)
    summary["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summary["run_folder"] = folder.publish(summary, overwrite)
    if summary.get("report", {}).get("written"):
        log.info("run %s: report %s", folder.run_id,
                 FileSystems.join(summary["run_folder"], summary["report"]["path"]))
    return summary


def _report(config: Config, folder: RunFolder, options: PipelineOptions, summary: dict,
            embeddings: str | list[str]) -> None:
    """Writes `report.html` into the staging folder, once every table is there.

    The report only looks at the run: when it fails (an input gone, a bug, the
    thumbnails job failing) the run's tables are still checked and complete,
    so the run is published without it, with a loud line and the reason in
    `summary.json` (`report.written: false`); `clipdedup report RUN` writes it
    later. An interrupt (KeyboardInterrupt) still stops the run.
    """
    from tools.report.build import REPORT, ReportSettings, write_report

    started = time.monotonic()
    settings = ReportSettings(bands=config.report_bands,
                              pairs_per_band=config.report_pairs_per_band,
                              seed=config.report_seed)
    try:
        write_report(folder.staging, summary, options, settings, embeddings)
    except Exception as exc:  # noqa: BLE001 - the report must never cost the run its tables
        log.error("run %s: %s NOT WRITTEN (%s: %s); the tables are published without it; "
                  "`clipdedup report <run folder>` writes it later", folder.run_id, REPORT,
                  type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        summary["report"] = {"written": False, "error": f"{type(exc).__name__}: {exc}"}
    else:
        summary["report"] = {"written": True, "path": REPORT}
    summary["timings"]["report_seconds"] = round(time.monotonic() - started, 3)


def _same_folder(a: str, b: str) -> bool:
    if is_remote(a) or is_remote(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def _as_pattern(path: str | list[str]) -> str | list[str]:
    """A file, folder or glob of embeddings Parquet files -> a glob (each, for a list).

    A published run folder stands for its `embeddings/` (its other tables are
    not embeddings).
    """
    if not isinstance(path, str):
        return [_as_pattern(p) for p in path]
    if any(c in path for c in "*?["):
        return path
    run = path.rstrip("/")
    if (FileSystems.exists(FileSystems.join(run, "_SUCCESS"))
            and FileSystems.exists(FileSystems.join(run, "embeddings"))):
        return FileSystems.join(run, "embeddings", "*.parquet")
    if path.endswith(".parquet") and not (not is_remote(path) and os.path.isdir(path)):
        return path
    return FileSystems.join(path.rstrip("/"), "*.parquet")


def _sibling_exact_duplicates(embeddings: str | list[str]) -> list[str]:
    """`<run>/exact_duplicates.parquet` of each `<run>/embeddings` folder the input's files are in.

    Whether the embeddings are given as the folder, a glob or files inside it:
    the byte copies of a run are listed only there, and mining without them
    would leave the copies out of the manifest.
    """
    found = []
    for pattern in _as_pattern([embeddings] if isinstance(embeddings, str) else embeddings):
        try:
            files = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:  # noqa: BLE001 - mining reports a pattern that matches nothing
            continue
        for folder in sorted({FileSystems.split(f)[0] for f in files}):
            parent = FileSystems.split(folder.rstrip("/"))[0]
            candidate = FileSystems.join(parent, "exact_duplicates.parquet")
            if candidate not in found and FileSystems.exists(candidate):
                found.append(candidate)
    return found
