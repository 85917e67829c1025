"""Runs the stages inside a run folder, checks the numbers, publishes.

`execute` is what `clipdedup run`, `embed` and `mine` call: it builds the Beam
graphs of `embed_pipeline` and/or `mine_pipeline`, runs them on the runner the
Beam flags name, checks conservation and the error budget, merges the small
tables into single Parquet files and publishes `<output>/<run_id>/` with
`summary.json`, then `_SUCCESS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import platform
import time

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import checks, embed_pipeline, mine_pipeline
from pipelines.config import Config
from pipelines.run_folder import RunFolder, read_table
from pipelines.stand_in import is_stand_in
from transforms import schemas
from transforms.embed import INFERENCE_NAMESPACE, KNOWN_DIMS, is_remote
from transforms.model_files import DEFAULT_IMAGE_SIZE, inspect_model

log = logging.getLogger("clipdedup")

VERSION = "0.1.0"
DEFAULT_RUNNER = "DirectRunner"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    dim: int
    is_stand_in: bool
    image_size: int = DEFAULT_IMAGE_SIZE  # side of the square pixels the model takes


def resolve_model(config: Config) -> ModelInfo:
    """Checks that the model can be loaded, before any pipeline starts, and
    learns its embedding width and input size from its config files (no
    weights are loaded when they say both).

    Raises:
        ModelNotFoundError: (a FileNotFoundError) it cannot be loaded; the
            message says why and how to pass a model.
    """
    name = config.model
    files = inspect_model(name)
    size = files.image_size or DEFAULT_IMAGE_SIZE
    dim = config.embedding_dim or files.dim or KNOWN_DIMS.get(name)
    if dim is None:  # no config says: ask the model
        import numpy as np

        from transforms.embed import SentenceTransformerImageHandler
        handler = SentenceTransformerImageHandler(name, "cpu")
        probe = handler.run_inference([np.zeros((size, size, 3), np.uint8)], handler.load_model())
        dim = len(probe[0].inference)
    local = not is_remote(name) and os.path.isdir(name)
    return ModelInfo(name, int(dim), local and is_stand_in(name), size)


def default_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the pass-through flags; never re-reads sys.argv."""
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


def _ids(table: pa.Table, column: str) -> pa.Array:
    return table.column(column).combine_chunks() if table.num_rows else pa.array([], pa.string())


def _embed(config: Config, model: ModelInfo, folder: RunFolder, options: PipelineOptions,
           summary: dict) -> str:
    summary.update(model=model.name, model_is_stand_in=model.is_stand_in,
                   embedding_dim=model.dim, image_size=model.image_size)
    if model.is_stand_in:
        log.warning("MODEL IS A STAND-IN: %s has random weights, not the real clip-ViT-B-32; "
                    "its duplicate tables are not meaningful for real data", model.name)
    started = time.monotonic()
    result = _run(embed_pipeline.build_pipeline(config, folder.staging, model.dim, options,
                                                image_size=model.image_size))
    summary["timings"]["embed_seconds"] = round(time.monotonic() - started, 3)
    summary["timings"]["inference_seconds"] = _inference_seconds(result)

    for table, schema in ((embed_pipeline.ERRORS, schemas.ERRORS_SCHEMA),
                          (embed_pipeline.SHARDS, schemas.SHARDS_SCHEMA),
                          (embed_pipeline.EXACT_DUPLICATES, schemas.EXACT_DUPLICATES_SCHEMA)):
        folder.merge_parts(table, schema)
    shards = read_table(folder.path("shards.parquet"))
    errors = read_table(folder.path("errors.parquet"))
    exact = read_table(folder.path("exact_duplicates.parquet"))
    embedded = read_table(folder.path(embed_pipeline.EMBEDDINGS), columns=["record_id"])
    counts = checks.check_conservation(shards, _ids(embedded, "record_id"),
                                       _ids(exact, "record_id_b"), errors)
    checks.check_error_budget(errors, counts["records_read"], counts["record_errors"],
                              config.max_error_fraction)
    summary["counts"].update(
        counts, files=shards.num_rows,
        shards_not_ended_cleanly=shards.num_rows - int(sum(shards.column("ended_cleanly")
                                                           .to_pylist())),
        errors_by_stage=checks.count_by(errors, "stage"),
        errors_by_reason=checks.count_by(errors, "reason"))
    return FileSystems.join(folder.staging, embed_pipeline.EMBEDDINGS, "*.parquet")


def _mine(config: Config, embeddings: str, folder: RunFolder, options: PipelineOptions,
          summary: dict, exact_duplicates: str | None = None) -> None:
    started = time.monotonic()
    _run(mine_pipeline.build_pipeline(config, embeddings, folder.staging, options))
    summary["timings"]["mine_seconds"] = round(time.monotonic() - started, 3)
    for table in (mine_pipeline.DUPLICATES, mine_pipeline.NEAR_DUPLICATES):
        folder.merge_parts(table, schemas.PAIRS_SCHEMA)
    stats = mine_pipeline.read_stats(folder.staging)
    FileSystems.delete([FileSystems.join(folder.staging, mine_pipeline.MINE_STATS + ".json")])
    summary["mining"] = stats
    summary["counts"].update(duplicates=stats["duplicates"],
                             near_duplicates=stats["near_duplicates"])
    started = time.monotonic()
    group_stats = _groups(config, embeddings, folder, exact_duplicates)
    summary["timings"]["groups_seconds"] = round(time.monotonic() - started, 3)
    summary["groups"] = group_stats
    summary["counts"].update(kept=group_stats["kept"], dropped=group_stats["dropped"])


def _groups(config: Config, embeddings: str, folder: RunFolder,
            exact_duplicates: str | None) -> dict:
    """Groups, keepers and the keep/drop manifest (needs ids, sizes and pairs, not vectors)."""
    import pyarrow.parquet as pq

    from transforms.mining.groups import build_groups
    from transforms.mining.stage import METADATA_COLUMNS, pairs_from_table

    files = sorted(m.path for m in FileSystems.match([embeddings])[0].metadata_list)
    parts = []
    for path in files:
        with FileSystems.open(path) as f:
            parts.append(pq.read_table(f, columns=METADATA_COLUMNS))
    records = pa.concat_tables(parts).sort_by("record_id")
    pair_table = pa.concat_tables([read_table(folder.path(f"{t}.parquet"))
                                   for t in (mine_pipeline.DUPLICATES,
                                             mine_pipeline.NEAR_DUPLICATES)])
    exact = (read_table(exact_duplicates)
             if exact_duplicates and FileSystems.exists(exact_duplicates) else None)
    res = build_groups(records, pairs_from_table(pair_table, records), exact,
                       duplicate_threshold=config.duplicate_threshold,
                       near_duplicate_threshold=config.near_duplicate_threshold,
                       drop_near_duplicates=config.drop_near_duplicates,
                       keeper_rule=config.keeper_rule)
    for name, table in (("groups", res.groups), ("keep", res.keep), ("drop", res.drop)):
        with FileSystems.create(folder.path(f"{name}.parquet")) as f:
            pq.write_table(table, f)
    bad = [k for k in res.keep_keys if "\n" in k or "\r" in k]
    if bad:
        raise ValueError(f"{len(bad)} keys contain a line break (e.g. {bad[0]!r}); "
                         "keep.txt cannot list them")
    with FileSystems.create(folder.path("keep.txt")) as f:
        f.write("".join(k + "\n" for k in res.keep_keys).encode("utf-8"))
    return dict(res.stats, exact_duplicates_source=exact_duplicates if exact is not None else None)


def execute(config: Config, beam_args: list[str], *, embed: bool = True, mine: bool = True,
            embeddings: str | None = None, overwrite: bool = False) -> dict:
    """Runs the chosen stages into a new run folder and publishes it.

    Args:
        config: domain settings.
        beam_args: flags for Beam's PipelineOptions (runner, Dataflow, ...).
        embed / mine: which stages to run.
        embeddings: an existing embeddings table (file, folder or glob) when
            only `mine` runs.
        overwrite: replace a published run folder of the same run_id.

    Returns:
        The summary written to `summary.json`, with `run_folder` added.
    """
    if not config.output:
        raise ValueError("no output given: pass --output (a folder or gs:// prefix)")
    if mine and not embed and not embeddings:
        raise ValueError("mine needs --embeddings (a Parquet file, folder or glob)")
    options = pipeline_options(beam_args)
    model = resolve_model(config) if embed else None  # before anything is created or read
    folder = RunFolder(config.output, config.run_id or default_run_id())
    folder.start(overwrite)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summary: dict = {
        "clipdedup_version": VERSION, "run_id": folder.run_id, "started_at": started_at,
        "runner": options.view_as(StandardOptions).runner, "python": platform.python_version(),
        "stages": [s for s, on in (("embed", embed), ("mine", mine)) if on],
        "duplicate_threshold": config.duplicate_threshold,
        "near_duplicate_threshold": config.near_duplicate_threshold,
        "config": config.to_dict(), "counts": {}, "timings": {},
    }
    started = time.monotonic()
    log.info("run %s: staging in %s", folder.run_id, folder.staging)
    exact_duplicates = None
    if embed:
        embeddings = _embed(config, model, folder, options, summary)
        exact_duplicates = folder.path("exact_duplicates.parquet")
    elif embeddings:
        summary["embeddings_source"] = embeddings
        exact_duplicates = _sibling_exact_duplicates(embeddings)
        embeddings = _as_pattern(embeddings)
    if mine:
        _mine(config, embeddings, folder, options, summary, exact_duplicates)
    summary["timings"]["total_seconds"] = round(time.monotonic() - started, 3)
    summary["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summary["run_folder"] = folder.publish(summary, overwrite)
    return summary


def _as_pattern(path: str) -> str:
    """A file, folder or glob of embeddings Parquet files -> a glob."""
    if any(c in path for c in "*?["):
        return path
    if path.endswith(".parquet") and not (not is_remote(path) and os.path.isdir(path)):
        return path
    return FileSystems.join(path.rstrip("/"), "*.parquet")


def _sibling_exact_duplicates(embeddings: str) -> str | None:
    """`<run>/exact_duplicates.parquet` when mining `<run>/embeddings` of a published run."""
    if any(c in embeddings for c in "*?[") or embeddings.endswith(".parquet"):
        return None
    parent = embeddings.rstrip("/").rsplit("/", 1)[0] if "/" in embeddings.rstrip("/") else "."
    candidate = FileSystems.join(parent, "exact_duplicates.parquet")
    return candidate if FileSystems.exists(candidate) else None
