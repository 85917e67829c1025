"""What the review report shows, chosen from a run folder's tables with bounded memory.

Every table is read batch by batch (`iter_batches`); what is kept is a fixed
number of rows per band, group, reason or copy group, so the report costs the
same memory and the page the same size whatever the run's size.

Sampling is seeded and independent of file and batch order: each row gets a
priority, the 64-bit SipHash (`pandas.util.hash_array`, keyed by the seed) of
its ids (`record_id_a|record_id_b` for a pair, `record_id` for a group member
or an error, `source_uri` for a whole-file error), and the k rows of lowest
priority in each band / group / reason are kept (bottom-k sampling: a uniform
random sample without replacement). The same run and seed give the same
sample, also after a rerun whose part files split differently.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms.parquet_open import open_parquet

DEFAULT_BANDS = (0.999, 0.98, 0.95)
BATCH_ROWS = 65536


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """How much of a run the report shows (every cap bounds the page's size).

    Args:
        bands: lower edges of the score bands, each band up to the next edge
            above (the first up to 1); the last band runs from the lowest
            threshold mined up to the lowest edge. Edges at or below that
            threshold are left out.
        pairs_per_band: pairs sampled per band.
        groups: largest groups shown as galleries.
        members_per_group: members sampled per gallery (its keeper always shown).
        byte_copy_groups: largest groups of byte copies listed.
        copies_per_group: copies listed per byte-copy group.
        examples_per_reason: error rows shown per reason.
        shards_shown: files that did not end cleanly, listed.
        bins: histogram bins between the lowest threshold and 1.
        seed: the sampling seed.
    """

    bands: tuple[float, ...] = DEFAULT_BANDS
    pairs_per_band: int = 8
    groups: int = 6
    members_per_group: int = 11
    byte_copy_groups: int = 8
    copies_per_group: int = 6
    examples_per_reason: int = 3
    shards_shown: int = 20
    bins: int = 60
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Band:
    low: float
    high: float | None  # None: up to 1 (and any score rounded above it)

    def label(self) -> str:
        return f">= {self.low:g}" if self.high is None else f"{self.low:g} - {self.high:g}"

    @property
    def slug(self) -> str:
        return "band-" + f"{self.low:g}".replace(".", "_")


def score_bands(edges: tuple[float, ...] | list[float], lowest: float) -> list[Band]:
    """The bands of `edges` (lower edges) above `lowest`, plus [lowest, lowest edge), best first."""
    tops = sorted({float(e) for e in edges if e > lowest}, reverse=True)
    bands, high = [], None
    for low in [*tops, lowest]:
        bands.append(Band(low, high))
        high = low
    return bands


def band_index(scores: np.ndarray, bands: list[Band]) -> np.ndarray:
    """The band of each score (bands best first); -1 below the lowest.

    Compared at the scores' own precision: a float32 score of 0.9 is below the
    float64 0.9, yet it is the pair tables' 0.9.
    """
    lows = np.array([b.low for b in bands], scores.dtype)
    # bands are descending: the first band whose low edge the score reaches
    reached = scores[:, None] >= lows[None, :]
    return np.where(reached.any(axis=1), reached.argmax(axis=1), -1)


def priorities(keys: pa.Array | np.ndarray | list, seed: int) -> np.ndarray:
    """Seeded 64-bit hash of each key (a string): the sampling order."""
    values = (keys.to_numpy(zero_copy_only=False) if isinstance(keys, (pa.Array, pa.ChunkedArray))
              else np.asarray(keys, dtype=object))
    return pd.util.hash_array(values.astype(object), hash_key=f"{seed:016d}"[-16:],
                              categorize=False)  # keys are mostly distinct: no factorize


def _files(path: str) -> list[str]:
    """`path` itself, or the Parquet part files of a folder or glob; [] when none exist."""
    if any(c in path for c in "*?["):
        pattern = path
    elif FileSystems.exists(path) and path.endswith(".parquet"):
        return [path]
    else:
        pattern = FileSystems.join(path, "*.parquet")
    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # noqa: BLE001 - a table this run does not have
        return []


def batches(path: str | list[str], columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of the table at `path` (file, folder or glob; or several), only
    `columns` (those it has)."""
    paths = [path] if isinstance(path, str) else list(path)
    for f in [f for p in paths for f in _files(p)]:
        parquet = open_parquet(f)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=present)


def bottom_k(kept: pd.DataFrame | None, new: pd.DataFrame, by: str | None, k: int
             ) -> pd.DataFrame:
    """The `k` rows of lowest `priority` (per value of `by`) of `kept` and `new` together."""
    frame = new if kept is None else pd.concat([kept, new], ignore_index=True)
    frame = frame.sort_values(["priority"], kind="stable")
    frame = frame.groupby(by, sort=False).head(k) if by else frame.head(k)
    return frame.reset_index(drop=True)


@dataclasses.dataclass
class PairScan:
    bands: list[Band]
    bin_edges: np.ndarray
    counts: np.ndarray  # pairs per histogram bin
    band_counts: list[int]
    samples: list[pd.DataFrame]  # per band: record_id_a, record_id_b, score (best first)


def scan_pairs(tables: list[str], lowest: float, settings: ReportSettings) -> PairScan:
    """Histogram, per-band counts and the seeded sample of pairs per band."""
    bands = score_bands(settings.bands, lowest)
    edges = np.linspace(min(lowest, 1.0 - 1e-6), 1.0, settings.bins + 1)  # threshold 1: one sliver
    counts = np.zeros(settings.bins, np.int64)
    band_counts = np.zeros(len(bands), np.int64)
    cutoff = np.full(len(bands), np.iinfo(np.uint64).max, np.uint64)  # k-th priority + 1
    kept: pd.DataFrame | None = None
    for table in tables:
        for batch in batches(table, ["record_id_a", "record_id_b", "score"]):
            if not batch.num_rows:
                continue
            scores = batch.column("score").to_numpy(zero_copy_only=False)
            band = band_index(scores, bands)
            scores = scores.astype(np.float64)
            counts += np.histogram(np.clip(scores, lowest, 1.0), bins=edges)[0]
            band_counts += np.bincount(band[band >= 0], minlength=len(bands))
            a = pc.cast(batch.column("record_id_a"), pa.string())
            b = pc.cast(batch.column("record_id_b"), pa.string())
            priority = priorities(pc.binary_join_element_wise(a, b, "|"), settings.seed)
            # Only rows that can still enter their band's bottom k become a frame.
            take = (band >= 0) & (priority < cutoff[np.maximum(band, 0)])
            if not take.any():
                continue
            rows = np.flatnonzero(take)
            frame = pd.DataFrame({
                "record_id_a": a.take(rows).to_numpy(zero_copy_only=False),
                "record_id_b": b.take(rows).to_numpy(zero_copy_only=False),
                "score": scores[rows], "band": band[rows], "priority": priority[rows]})
            kept = bottom_k(kept, frame, "band", settings.pairs_per_band)
            full = kept.groupby("band")["priority"].agg(["size", "max"])
            full = full[full["size"] >= settings.pairs_per_band]
            cutoff[full.index.to_numpy()] = full["max"].to_numpy(np.uint64) + np.uint64(1)
    samples = []
    for i in range(len(bands)):
        rows = (kept[kept.band == i] if kept is not None
                else pd.DataFrame(columns=["record_id_a", "record_id_b", "score"]))
        samples.append(rows.sort_values(["score", "record_id_a", "record_id_b"],
                                        ascending=[False, True, True])
                       [["record_id_a", "record_id_b", "score"]].reset_index(drop=True))
    return PairScan(bands, edges, counts, [int(c) for c in band_counts], samples)


def count_values(arrays) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, how often each occurs) over a stream of integer arrays,
    held as two numpy arrays (16 bytes per distinct value, not a Python dict)."""
    values, counts = np.array([], np.int64), np.array([], np.int64)
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def merge():
        nonlocal values, counts
        all_values = np.concatenate([values, *(v for v, _ in pending)])
        all_counts = np.concatenate([counts, *(n for _, n in pending)])
        values, inverse = np.unique(all_values, return_inverse=True)
        counts = np.bincount(inverse, weights=all_counts, minlength=len(values)).astype(np.int64)
        pending.clear()

    for array in arrays:
        pending.append(np.unique(np.asarray(array, np.int64), return_counts=True))
        # merged once the batches' distinct values outgrow the merged ones: amortised
        # linear time, at most about twice the memory of the result
        if sum(len(v) for v, _ in pending) > max(len(values), 1 << 20):
            merge()
    merge()
    return values, counts


def _largest(counted: tuple[np.ndarray, np.ndarray], k: int) -> list[tuple[int, int]]:
    """[(value, count)] of the `k` largest counts, ties by value."""
    values, counts = counted
    order = np.lexsort((values, -counts))[:k]
    return [(int(values[i]), int(counts[i])) for i in order]


_GROUP_COLUMNS = ["record_id", "source_uri", "key", "group_id", "keeper_id",
                  "score_to_keeper", "kind"]


def largest_groups(groups_table: str, settings: ReportSettings
                   ) -> tuple[list[tuple[int, int]], pd.DataFrame]:
    """([(group_id, size)] of the largest groups, their sampled members).

    Members: each shown group's keeper first, then up to `members_per_group`
    others (seeded sample) by score to the keeper, best first.
    """
    top = _largest(count_values(
        b.column("group_id").to_numpy(zero_copy_only=False)
        for b in batches(groups_table, ["group_id"])), settings.groups)
    wanted = pa.array([g for g, _ in top], pa.int64())
    kept: pd.DataFrame | None = None
    for batch in batches(groups_table, _GROUP_COLUMNS):
        rows = pa.Table.from_batches([batch])
        rows = rows.filter(pc.is_in(rows.column("group_id"), wanted))
        if not rows.num_rows:
            continue
        frame = rows.to_pandas()
        frame["priority"] = priorities(frame["record_id"].astype(str), settings.seed).astype(
            np.float64)
        frame.loc[frame["kind"] == "keeper", "priority"] = -1.0  # always shown, first
        kept = bottom_k(kept, frame, "group_id", settings.members_per_group + 1)
    if kept is None:
        return top, pd.DataFrame(columns=_GROUP_COLUMNS)
    kept["is_keeper"] = kept["kind"] == "keeper"
    order = {g: i for i, (g, _) in enumerate(top)}
    kept["rank"] = kept["group_id"].map(order)
    kept = kept.sort_values(["rank", "is_keeper", "score_to_keeper", "record_id"],
                            ascending=[True, False, False, True])
    return top, kept.drop(columns=["priority", "rank"]).reset_index(drop=True)


@dataclasses.dataclass
class ErrorScan:
    by_reason: dict[str, int]
    by_stage: dict[str, int]
    examples: pd.DataFrame  # up to examples_per_reason rows per reason
    file_errors: pd.DataFrame  # whole-file errors (record_id null), bounded


def scan_errors(errors_table: str, settings: ReportSettings, file_cap: int = 200) -> ErrorScan:
    reasons: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    examples = files = None
    columns = ["record_id", "source_uri", "key", "stage", "reason", "message"]
    for batch in batches(errors_table, columns):
        if not batch.num_rows:
            continue
        frame = pa.Table.from_batches([batch]).to_pandas()
        reasons.update(frame["reason"].value_counts().to_dict())
        stages.update(frame["stage"].value_counts().to_dict())
        ident = frame["record_id"].fillna(frame["source_uri"]).astype(str)
        frame["priority"] = priorities(ident, settings.seed)
        examples = bottom_k(examples, frame, "reason", settings.examples_per_reason)
        whole = frame[frame["record_id"].isna()]
        if len(whole):
            files = bottom_k(files, whole, None, file_cap)
    empty = pd.DataFrame(columns=columns)
    examples = (empty if examples is None
                else examples.sort_values(["reason", "source_uri", "key"], na_position="first"))
    return ErrorScan(dict(reasons.most_common()), dict(stages.most_common()),
                     examples.reset_index(drop=True), empty if files is None else files)


def byte_copy_groups(exact_table: str | list[str], settings: ReportSettings
                     ) -> tuple[int, list[dict]]:
    """(number of byte-copy groups, the largest: original, size and some copies)."""
    # Counted by a 64-bit hash of the original's id: 16 bytes per group in memory.
    values, counts = count_values(
        priorities(pc.cast(b.column("record_id_a"), pa.string()), 0).view(np.int64)
        for b in batches(exact_table, ["record_id_a"]))
    top_hashes = dict(_largest((values, counts), settings.byte_copy_groups))
    found: dict[str, dict] = {}
    columns = ["record_id_a", "record_id_b", "sha256", "source_uri_a", "key_a",
               "source_uri_b", "key_b"]
    for batch in batches(exact_table, columns):
        hashes = priorities(pc.cast(batch.column("record_id_a"), pa.string()), 0).view(np.int64)
        rows = pa.Table.from_batches([batch]).filter(
            pa.array(np.isin(hashes, list(top_hashes))))
        for row, h in zip(rows.to_pylist(), hashes[np.isin(hashes, list(top_hashes))]):
            a = str(row["record_id_a"])
            group = found.setdefault(a, {"record_id": a, "copies": top_hashes[int(h)],
                                         "rows": [], "sha256": row["sha256"],
                                         "source_uri": row["source_uri_a"], "key": row["key_a"]})
            group["rows"] = sorted(group["rows"] + [row], key=lambda r: str(r["record_id_b"])
                                   )[:settings.copies_per_group]
    shown = sorted(found.values(), key=lambda g: (-g["copies"], g["record_id"]))
    return len(values), shown


def unclean_shards(shards_table: str, cap: int) -> tuple[int, list[dict]]:
    """(files that did not end cleanly, the first `cap` of them by uri)."""
    total, shown = 0, []
    for batch in batches(shards_table, ["source_uri", "input_kind", "records_read",
                                        "images_found", "errors", "ended_cleanly"]):
        rows = pa.Table.from_batches([batch])
        rows = rows.filter(pc.invert(rows.column("ended_cleanly")))
        total += rows.num_rows
        shown = sorted(shown + rows.to_pylist(), key=lambda r: r["source_uri"])[:cap]
    return total, shown


def lookup(table: str | list[str], id_column: str, ids: set[str], columns: list[str]) -> dict[str, dict]:
    """Rows of `table` whose `id_column` is in `ids` (as strings), only `columns`."""
    if not ids:
        return {}
    wanted = pa.array(sorted(ids), pa.string())
    found = {}
    for batch in batches(table, [id_column, *columns]):
        if id_column not in batch.schema.names:
            return found
        rows = pa.Table.from_batches([batch])
        key = pc.cast(rows.column(id_column), pa.string())
        rows = rows.filter(pc.is_in(key, wanted))
        for row in rows.to_pylist():
            found[str(row[id_column])] = row
    return found
