"""`clipdedup calibrate`: a seeded, stratified sample of a run's pairs to label.

    clipdedup calibrate --run out/<run_id> --out sheet/ [--per-band 40] [--seed 0] \
        [--bands 0.85 0.9 0.933 0.966 0.999 1] [--knn-queries 2000] [--knn-k 20]

Pairs are drawn per score band, so that the rare bands near the thresholds get
as many labels as the crowded ones: the bands are half-open `[lo, hi)` between
consecutive `--bands` edges (the last one also takes every score above its
lower edge); by default they span the run's thresholds, with one band of
width 0.05 below the near-duplicate threshold. A band's pairs come from the
run's `duplicates` and `near_duplicates` tables; pairs below the mining
threshold, which no table holds, come from an exact k-NN search of
`--knn-queries` records drawn at random (each one's `--knn-k` nearest
records): the "almost" pairs a lower threshold would add. Byte copies
(`exact_duplicates`) are never drawn: their answer is known.

Output in `--out`:
- `sheet.csv`: one row per pair (`tools/labels.py` SHEET_COLUMNS) in a
  shuffled order, with an empty `label` column; `evaluate --labels` reads
  it back as it is once labels are filled in. `weight` is how many of the
  run's pairs in its band each sampled pair stands for (for k-NN bands an
  estimate, scaled from the queried records to all), so evaluate can also
  give figures for the run as a whole.
- `sheet.html`: the same pairs with thumbnails read back from the run's inputs
  (self-contained), and buttons to label them in the browser and download the
  filled-in sheet as `labels.csv`.
- `calibration.json`: the bands, each band's population and sample size, the seed.

Same run, same flags, same seed: the same sheet.
"""

from __future__ import annotations

import html
import json
import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from tools import labels as L

if TYPE_CHECKING:
    from tools import run_records as R

log = logging.getLogger("clipdedup")

DEFAULT_PER_BAND = 40
DEFAULT_KNN_QUERIES = 2000
DEFAULT_KNN_K = 20
PAIR_TABLES = ("duplicates", "near_duplicates")


def default_bands(near: float, dup: float) -> list[float]:
    """Edges spanning the run's thresholds: one band below the near threshold, three
    between it and the duplicate one, one above that."""
    edges = [near - 0.05, near] + [round(near + i * (dup - near) / 3, 6) for i in (1, 2)] \
        + [dup, 1.0]
    return sorted({max(-1.0, min(1.0, e)) for e in edges})


def check_bands(edges: list[float]) -> list[float]:
    edges = sorted(set(edges))
    if len(edges) < 2 or edges[0] < -1 or edges[-1] > 1:
        raise ValueError(f"--bands needs at least two distinct edges in [-1, 1], got {edges}")
    return edges


def band_names(edges: list[float]) -> list[str]:
    return [f"[{lo:.4f}, {hi:.4f})" if i < len(edges) - 2 else f"[{lo:.4f}, {hi:.4f}]"
            for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]


def band_of(scores: np.ndarray, edges: list[float]) -> np.ndarray:
    """Band number of each score, -1 below the lowest edge; the last band is open above."""
    band = np.searchsorted(np.asarray(edges, np.float32), scores, side="right") - 1
    band[band >= len(edges) - 1] = len(edges) - 2
    return band


def _table_candidates(run: R.Run, edges: list[float]) -> list[tuple[str, str, np.ndarray]]:
    """(table, file path, band of each row) for every pair table file."""
    from transforms.parquet_open import open_parquet

    out = []
    if not run.mined:
        return out
    for table in PAIR_TABLES:
        for path in run.table_files(table):
            scores = open_parquet(path).read(columns=["score"]).column("score")
            out.append((table, path, band_of(scores.to_numpy(), edges)))
    return out


def _knn_candidates(vectors: R.Vectors, edges: list[float], below: float | None, queries: int,
                    k: int, rng: np.random.Generator) -> tuple[list[tuple], float]:
    """Pairs (id_a, id_b, score) among the k nearest records of `queries` random records,
    scored in a band and below `below` (the pair tables hold the rest), and the factor
    from the queried records to all of them."""
    n = len(vectors.index)
    if n < 2 or queries < 1:
        return [], 1.0
    rows = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    scores, hits = vectors.index.search(vectors.index.vectors[rows], k + 1)
    ids = vectors.index.ids
    found = {}
    for row, s_row, h_row in zip(rows, scores, hits):
        for s, h in zip(s_row, h_row):
            if h < 0 or h == row or s < edges[0] or (below is not None and s >= below):
                continue
            a, b = sorted((ids[row], ids[h]))
            found[(a, b)] = float(s)
    return [(a, b, s) for (a, b), s in sorted(found.items())], n / len(rows)


def sample(run: R.Run, edges: list[float], per_band: int, seed: int,
           knn_queries: int = DEFAULT_KNN_QUERIES, knn_k: int = DEFAULT_KNN_K
           ) -> tuple[list[dict], list[dict]]:
    """(sampled pairs, one row per band) of a seeded stratified sample of the run's pairs."""
    from tools import run_records as R
    from transforms.parquet_open import open_parquet

    rng = np.random.default_rng(seed)
    tables = _table_candidates(run, edges)
    vectors = R.Vectors(run)
    below = run.mining_threshold if run.mined else None
    knn, scale = _knn_candidates(vectors, edges, below, knn_queries, knn_k, rng)
    knn_band = band_of(np.array([s for _, _, s in knn], np.float32), edges) if knn else \
        np.zeros(0, int)
    names = band_names(edges)
    chosen: dict[str, list[int]] = {}  # table file -> rows
    picked, bands = [], []
    for b, name in enumerate(names):
        table_rows = [(path, table, np.flatnonzero(band == b)) for table, path, band in tables]
        n_table = sum(len(r) for _, _, r in table_rows)
        knn_rows = np.flatnonzero(knn_band == b)
        population = n_table + len(knn_rows)
        m = min(per_band, population)
        estimate = n_table + len(knn_rows) * scale
        take = np.sort(rng.choice(population, size=m, replace=False)) if m else np.zeros(0, int)
        weight = estimate / m if m else None
        bands.append(dict(band=name, lo=edges[b], hi=edges[b + 1], from_tables=n_table,
                          from_knn=int(len(knn_rows)), population_estimate=estimate,
                          sampled=int(m), weight=weight))
        offset = 0
        for path, table, rows in table_rows:
            mine = take[(take >= offset) & (take < offset + len(rows))] - offset
            for r in rows[mine]:
                chosen.setdefault(path, []).append(int(r))
                picked.append(dict(path=path, row=int(r), band=name, weight=weight,
                                   found_by=table))
            offset += len(rows)
        for i in take[take >= n_table] - n_table:
            a, b_id, s = knn[knn_rows[i]]
            picked.append(dict(record_id_a=a, record_id_b=b_id, score=s, band=name,
                               weight=weight, found_by="knn"))
    for path, rows in chosen.items():
        t = open_parquet(path).read(columns=["record_id_a", "record_id_b", "score"]).take(rows)
        by_row = dict(zip(rows, t.to_pylist()))
        for p in picked:
            if p.get("path") == path:
                p.update(by_row[p.pop("row")])
                p.pop("path")
    return picked, bands


def _sheet_rows(run: R.Run, picked: list[dict], rng: np.random.Generator) -> list[dict]:
    from tools import run_records as R

    ids = {p["record_id_a"] for p in picked} | {p["record_id_b"] for p in picked}
    records = {r["record_id"]: r for r in
               R.records_matching(run, ids, ids_only=True).to_pylist()}
    rows = []
    # shuffled, so that a labeller does not meet the pairs sorted by score
    for n, i in enumerate(rng.permutation(len(picked)), start=1):
        p = picked[i]
        a, b = records.get(p["record_id_a"], {}), records.get(p["record_id_b"], {})
        rows.append(dict(pair=f"p{n:04d}", label="", score=f"{p['score']:.6f}", band=p["band"],
                         weight=f"{p['weight']:.6g}", found_by=p["found_by"],
                         record_id_a=p["record_id_a"], key_a=a.get("key") or "",
                         source_uri_a=a.get("source_uri") or "", record_id_b=p["record_id_b"],
                         key_b=b.get("key") or "", source_uri_b=b.get("source_uri") or ""))
    return rows


def _read_info(run: R.Run):
    """How the run read its inputs (for reading thumbnails back), defaults where a
    run (a `mine`-only one) does not say."""
    from pipelines.config import Config
    from tools.query import RunInfo
    from transforms.embed.model_files import DEFAULT_IMAGE_SIZE

    config, defaults = run.summary.get("config", {}), Config()
    return RunInfo(run.folder, run.model, int(run.summary.get("image_size", DEFAULT_IMAGE_SIZE)),
                   config.get("backend", defaults.backend),
                   int(config.get("max_image_pixels", defaults.max_image_pixels)),
                   int(config.get("max_file_bytes", defaults.max_file_bytes)),
                   config.get("image_column", defaults.image_column),
                   config.get("key_column", defaults.key_column), run.is_stand_in)


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.warn { background: #b00; color: #fff; padding: .5em; font-weight: bold; }
.pair { display: flex; gap: 12px; align-items: flex-start; border-top: 1px solid #ccc;
        padding: 8px 0; }
.meta { width: 220px; font-size: 13px; }
figure { margin: 0; width: 260px; }
figure img { max-width: 256px; max-height: 256px; display: block; border: 1px solid #ccc; }
figcaption { font-size: 12px; word-break: break-all; }
.missing { width: 256px; height: 96px; background: #eee; font-size: 12px; padding: 4px;
           overflow: hidden; }
#bar { position: sticky; top: 0; background: #fff; padding: 6px 0; border-bottom: 2px solid #36c; }
"""

_SCRIPT = """
const rows = JSON.parse(document.getElementById('sheet').textContent);
const columns = JSON.parse(document.getElementById('columns').textContent);
function count() {
  const n = document.querySelectorAll('input[type=radio]:checked').length;
  document.getElementById('done').textContent = n + ' of ' + rows.length + ' labelled';
}
function download() {
  const quote = v => /[",\\n\\r]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  const lines = [columns.join(',')];
  for (const row of rows) {
    const checked = document.querySelector('input[name="' + row.pair + '"]:checked');
    row.label = checked ? checked.value : '';
    lines.push(columns.map(c => quote(String(row[c] ?? ''))).join(','));
  }
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([lines.join('\\r\\n') + '\\r\\n'], {type: 'text/csv'}));
  a.download = 'labels.csv';
  a.click();
}
document.addEventListener('change', count);
"""


def html_page(run: R.Run, rows: list[dict]) -> str:
    """A self-contained page of every pair of the sheet, thumbnails inline."""
    from tools.query import _figure, read_back

    info = _read_info(run)
    hits = [dict(record_id=r[f"record_id_{s}"], source_uri=r[f"source_uri_{s}"])
            for r in rows for s in "ab" if r[f"source_uri_{s}"]]
    stored = read_back(info, hits)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>clipdedup calibrate "
             f"{esc(run.run_id)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Pairs to label from run {esc(run.folder)}</h1>",
             f"<p>model {esc(run.model)}; score = cosine similarity. For each pair choose "
             "<b>duplicate</b> (the same picture: re-encoded, resized, tiny edits), "
             "<b>near_duplicate</b> (the same picture edited: crop, colour, overlay, flip) or "
             "<b>different</b>, then download the sheet and run <code>clipdedup evaluate "
             f"--run {esc(run.folder)} --labels labels.csv</code>. The same labels can be "
             "typed into the label column of sheet.csv instead.</p>"]
    if run.is_stand_in:
        parts.append("<p class='warn'>MODEL IS A STAND-IN (random weights): these scores say "
                     "nothing about the real model</p>")
    parts.append("<div id='bar'><button onclick='download()'>download labels.csv</button> "
                 "<span id='done'></span></div>")
    for r in rows:
        radios = "".join(f"<label><input type='radio' name='{esc(r['pair'])}' value='{v}'>"
                         f"{v}</label><br>" for v in L.LABELS)
        parts.append(f"<div class='pair'><div class='meta'><b>{esc(r['pair'])}</b><br>score "
                     f"{esc(r['score'])}<br>band {esc(r['band'])}<br>found by "
                     f"{esc(r['found_by'])}<br>{radios}</div>")
        for s in "ab":
            data = stored.get(r[f"record_id_{s}"], "no source_uri in the embeddings table")
            caption = (f"{esc(r[f'key_{s}'])}<br>{esc(r[f'source_uri_{s}'])}<br>"
                       f"{esc(r[f'record_id_{s}'])}")
            parts.append(_figure(data, caption, info.max_pixels))
        parts.append("</div>")

    def script_json(value) -> str:  # a "</script>" inside a key must not end the script
        return json.dumps(value).replace("</", "<\\/")

    parts.append(f"<script type='application/json' id='sheet'>{script_json(rows)}</script>")
    parts.append(f"<script type='application/json' id='columns'>{script_json(L.SHEET_COLUMNS)}"
                 f"</script><script>{_SCRIPT}count();</script></body></html>")
    return "\n".join(parts)


def calibrate(run_folder: str, out: str, per_band: int = DEFAULT_PER_BAND, seed: int = 0,
              bands: list[float] | None = None, knn_queries: int = DEFAULT_KNN_QUERIES,
              knn_k: int = DEFAULT_KNN_K, page: bool = True) -> dict:
    """Writes sheet.csv, sheet.html and calibration.json into `out`; returns calibration.json."""
    from tools import run_records as R

    if per_band < 1:
        raise ValueError(f"--per-band must be at least 1, got {per_band}")
    if knn_queries < 0 or knn_k < 1:
        raise ValueError(f"--knn-queries must be >= 0 and --knn-k >= 1, got {knn_queries}, "
                         f"{knn_k}")
    run = R.open_run(run_folder)
    if run.is_stand_in:
        log.warning("MODEL IS A STAND-IN: %s has random weights; labels of its pairs measure "
                    "nothing about the real model", run.model)
    if bands is None:
        if run.near_duplicate_threshold is None:
            raise ValueError(f"{run.folder}: the run names no thresholds; give --bands")
        bands = default_bands(run.near_duplicate_threshold,
                              run.duplicate_threshold or run.near_duplicate_threshold)
    edges = check_bands(list(bands))
    picked, band_rows = sample(run, edges, per_band, seed, knn_queries, knn_k)
    rows = _sheet_rows(run, picked, np.random.default_rng([seed, 1]))
    os.makedirs(out, exist_ok=True)
    sheet = os.path.join(out, "sheet.csv")
    L.write_sheet(sheet, rows)
    result = dict(run=run.folder, run_id=run.run_id, model=run.model,
                  model_is_stand_in=run.is_stand_in, seed=seed, per_band=per_band,
                  edges=edges, bands=band_rows, knn=dict(queries=knn_queries, k=knn_k),
                  pairs=len(rows), sheet=sheet)
    if page:
        result["page"] = os.path.join(out, "sheet.html")
        with open(result["page"], "w", encoding="utf-8") as f:
            f.write(html_page(run, rows))
    with open(os.path.join(out, "calibration.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


def run(args) -> int:
    """The `calibrate` subcommand; returns the exit status."""
    result = calibrate(args.run, args.out, args.per_band, args.seed, args.bands,
                       args.knn_queries, args.knn_k, page=not args.no_html)
    for b in result["bands"]:
        print(f"  band {b['band']:<20} {b['sampled']:>4} of {b['population_estimate']:>10.0f} "
              f"pairs ({b['from_tables']} in the pair tables, {b['from_knn']} found by k-NN)")
    print(f"wrote {result['sheet']}" + (f" and {result['page']}" if "page" in result else "")
          + f": {result['pairs']} pairs to label; then clipdedup evaluate --run {result['run']} "
          f"--labels {result['sheet']}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="a stratified sample of a run's pairs to label")
    p.add_argument("--run", required=True, help="a published run folder (<output>/<run_id>)")
    p.add_argument("--out", required=True, help="folder for sheet.csv, sheet.html, "
                                                "calibration.json")
    p.add_argument("--per-band", type=int, default=DEFAULT_PER_BAND,
                   help=f"pairs drawn per score band (default {DEFAULT_PER_BAND})")
    p.add_argument("--seed", type=int, default=0, help="same seed, same sheet (default 0)")
    p.add_argument("--bands", type=float, nargs="+",
                   help="band edges, e.g. 0.85 0.9 0.95 0.999 1 (default: around the run's "
                        "thresholds)")
    p.add_argument("--knn-queries", type=int, default=DEFAULT_KNN_QUERIES,
                   help="records searched for pairs below the mining threshold "
                        f"(default {DEFAULT_KNN_QUERIES}; 0 = none)")
    p.add_argument("--knn-k", type=int, default=DEFAULT_KNN_K,
                   help=f"neighbours per searched record (default {DEFAULT_KNN_K})")
    p.add_argument("--no-html", action="store_true", help="write the sheet only")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
