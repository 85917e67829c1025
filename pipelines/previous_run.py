"""The previous run an incremental night builds on, and what of it can be reused.

`clipdedup run --incremental` builds on the latest published run under
`--output` (`latest_published`); `--previous RUN_FOLDER` names one. The
launcher reads only its `_SUCCESS` and `summary.json`, through Beam's
`FileSystems` (so it may be on `gs://`); its tables are read by the jobs, on
the engine, and nothing in it is ever written.

What may be reused is decided from the two summaries:
- files and vectors (`reembed_reason`): only with the same model, vector
  width, input size, device kind, backend and reading/decoding settings;
  else everything is read and embedded again;
- pairs (`remine_reason`): only when both runs mine in the same mode and
  tonight's near-duplicate threshold is not below the previous one's (the
  carried pairs would miss the band in between). An approximate night also
  needs the previous run's partitions, the same nprobe and nlist, and a
  table at most `MAX_GROWTH` times the one its centroids were trained on
  (`transforms.mine.incremental_approximate` makes the checks that need the
  vectors); a distributed night the same, with `partitions_per_vector` for
  nprobe, and it trains again the night after one whose recall fell below
  the target. Else all pairs are mined again.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from apache_beam.io.filesystems import FileSystems

from pipelines.run_names import SUCCESS

log = logging.getLogger("clipdedup")

SUMMARY = "summary.json"
# Centroids trained on N rows serve until the table is this many times larger.
MAX_GROWTH = 2.0
# Config keys that change which records a file gives, or the pixels a vector is made from.
_SHAPING_KEYS = ("image_column", "key_column", "max_file_bytes", "max_image_pixels", "backend")


@dataclasses.dataclass(frozen=True)
class Previous:
    folder: str
    summary: dict

    @property
    def run_id(self) -> str:
        return self.summary.get("run_id", "")


def _read_json(path: str) -> dict:
    with FileSystems.open(path) as f:
        data = json.loads(f.read().decode() or "{}")
    return data if isinstance(data, dict) else {}


def latest_published(output: str, exclude_run_id: str | None = None) -> str | None:
    """The published run folder under `output` published last (ties: the larger run id),
    or None; staging, trash and unpublished folders have no `_SUCCESS` and are skipped."""
    try:
        found = FileSystems.match([FileSystems.join(output, "*", SUCCESS)])[0].metadata_list
    except Exception:  # noqa: BLE001 - no output folder yet: no previous run
        return None
    best = None
    for m in found:
        folder = m.path[:-len(SUCCESS) - 1]
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(("_", ".")) or name == exclude_run_id:
            continue
        key = (str(_read_json(m.path).get("published_at", "")), name)
        if best is None or key > best[0]:
            best = (key, folder)
    return best[1] if best else None


def load(folder: str) -> Previous:
    """The published run at `folder`.

    Raises:
        ValueError: it is not a published run of both stages.
    """
    folder = folder.rstrip("/")
    if not FileSystems.exists(FileSystems.join(folder, SUCCESS)):
        raise ValueError(f"--previous {folder}: not a published run (no {SUCCESS})")
    summary = _read_json(FileSystems.join(folder, SUMMARY))
    if not {"embed", "mine"} <= set(summary.get("stages", [])):
        raise ValueError(f"--previous {folder}: a run of both stages (clipdedup run) is needed, "
                         f"this one ran {summary.get('stages')}")
    return Previous(folder, summary)


def fingerprint(summary: dict) -> dict:
    """What must match for the same bytes to give the same records and vectors."""
    config = summary.get("config", {})
    return {"model": summary.get("model"), "embedding_dim": summary.get("embedding_dim"),
            "image_size": summary.get("image_size"),
            "device": str(config.get("device", "cpu")).split(":")[0],
            **{k: config.get(k) for k in _SHAPING_KEYS}}


def reembed_reason(previous: Previous, summary: dict) -> str | None:
    """Why nothing of `previous` can be reused for tonight's `summary`, or None."""
    before, now = fingerprint(previous.summary), fingerprint(summary)
    differ = [f"{k} {before[k]!r} -> {now[k]!r}" for k in now if before.get(k) != now[k]]
    return ("model or preprocessing changed: " + ", ".join(differ)) if differ else None


def remine_reason(previous: Previous, mode: str, near_duplicate_threshold: float, *,
                  n_records: int = 0, nprobe: int = 0, nlist: int = 0,
                  partitions_per_vector: int = 0) -> str | None:
    """Why the previous pairs cannot be carried (tonight mines in resolved `mode`, over
    `n_records`, with the configured `nprobe`, `nlist` and `partitions_per_vector`),
    or None."""
    mining = previous.summary.get("mining", {})
    before = mining.get("mode")
    if before != mode:
        return (f"mining mode {before!r} -> {mode!r}: pairs are carried only between two "
                "runs of one mode")
    threshold = previous.summary.get("near_duplicate_threshold")
    if threshold is None or near_duplicate_threshold < threshold:
        return (f"near_duplicate_threshold lowered {threshold} -> {near_duplicate_threshold}: "
                "the previous pairs miss the band in between")
    if mode == "exact":
        return None
    tables = ["centroids.parquet"] + (["partitions.parquet"] if mode == "approximate" else [])
    return (_partitions_reason(mining, n_records, nprobe, nlist, partitions_per_vector)
            or _unreadable(previous.folder, tables))


def _unreadable(folder: str, tables: list[str]) -> str | None:
    """Why one of `tables` in the run folder cannot be read (footers only), or None."""
    from transforms.parquet_open import parquet_footer

    for table in tables:
        path = FileSystems.join(folder, table)
        if not FileSystems.exists(path):
            return f"the previous run has no {table}"
        try:
            parquet_footer(path)
        except (OSError, ValueError) as exc:
            return f"the previous run's {table} cannot be read: {exc}"
    return None


def _partitions_reason(mining: dict, n_records: int, nprobe: int, nlist: int,
                       partitions_per_vector: int = 0) -> str | None:
    """Why the previous approximate or distributed run's partitions cannot be reused,
    or None."""
    trained = mining.get("centroids_trained_n")
    if not trained:
        return "the previous run kept no partitions (it predates them)"
    if nlist and nlist != mining.get("nlist"):
        return f"nlist {mining.get('nlist')} -> {nlist}: the partitions change"
    if mining.get("mode") == "distributed":
        if partitions_per_vector != mining.get("partitions_per_vector"):
            return (f"partitions_per_vector {mining.get('partitions_per_vector')} -> "
                    f"{partitions_per_vector}: the partitions change")
        if mining.get("incremental") and mining.get("recall_below_target"):
            return ("the previous night's recall on its new records was below the target "
                    "with these centroids")
    elif max(1, min(nprobe, mining.get("nlist", 0))) != mining.get("nprobe"):
        return f"nprobe {mining.get('nprobe')} -> {nprobe}: the probes change"
    if n_records > MAX_GROWTH * trained:
        return (f"{n_records} records, more than {MAX_GROWTH:g} times the {trained} the "
                "centroids were trained on: trained again")
    return None
