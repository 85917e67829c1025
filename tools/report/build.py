"""Collects what `report.html` shows from a run folder and writes the page
(the stages are listed in `tools/report/__init__.py`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid

from apache_beam.io.filesystems import FileSystems

from tools.report import page as P
from tools.report.sample import (
    ReportSettings,
    byte_copy_groups,
    largest_groups,
    lookup,
    scan_errors,
    scan_pairs,
    unclean_shards,
)

log = logging.getLogger("clipdedup")

REPORT = "report.html"
SCRATCH_PREFIX = "_report-"  # readers skip names starting with `_`


def _join(folder: str, name: str) -> str:
    return FileSystems.join(folder, name)


def _remove_tree(path: str) -> None:
    if FileSystems.get_scheme(path) in (None, "file"):
        shutil.rmtree(path, ignore_errors=True)
        return
    files = [m.path for m in FileSystems.match([path.rstrip("/") + "/**"])[0].metadata_list]
    if files:
        FileSystems.delete(files)


def _ssim(a: dict | None, b: dict | None) -> float | None:
    """SSIM of two records' greyscale copies (`tools.compare`'s alignment), or None."""
    import io

    from PIL import Image

    from tools import compare

    if not (a and b and a.get("grey") and b.get("grey")):
        return None
    ga, gb = (Image.open(io.BytesIO(t["grey"])).convert("RGB") for t in (a, b))
    aligned = compare.align(ga, gb, max_side=max(ga.size + gb.size))
    try:
        return compare.ssim_map(*aligned)[0]
    except ValueError:  # smaller than SSIM's 7x7 window
        return None


def _exact_duplicates(folder: str, summary: dict) -> str | list[str]:
    """The run's own byte-copy table, else (a `mine` of another run's embeddings)
    the table(s) its manifest took the copies from."""
    own = _join(folder, "exact_duplicates.parquet")
    source = summary.get("groups", {}).get("exact_duplicates_source")
    return own if FileSystems.exists(own) or not source else source


def collect(folder: str, summary: dict, settings: ReportSettings,
            embeddings: str | list[str] | None,
            options=None) -> dict:
    """Everything the page shows, read from the tables in `folder`."""
    lowest = float(summary.get("near_duplicate_threshold", 0.9))
    pairs = scan_pairs([_join(folder, "duplicates.parquet"),
                        _join(folder, "near_duplicates.parquet")], lowest, settings)
    top, members = largest_groups(_join(folder, "groups.parquet"), settings)
    errors = scan_errors(_join(folder, "errors.parquet"), settings)
    n_copy_groups, copy_groups = byte_copy_groups(_exact_duplicates(folder, summary), settings)
    n_unclean, unclean = unclean_shards(_join(folder, "shards.parquet"), settings.shards_shown)

    pair_ids = {r for s in pairs.samples for r in (*s.record_id_a, *s.record_id_b)}
    where = {r["record_id"]: r for r in _records(members)}
    config = summary.get("config", {})
    id_column = "record_id" if "embed" in summary.get("stages", []) else config.get(
        "id_column", "record_id")
    if embeddings:
        found = lookup(embeddings, id_column, pair_ids - where.keys(), ["source_uri", "key"])
        where.update({k: dict(v, record_id=k) for k, v in found.items()})
    where.update(lookup(_join(folder, "groups.parquet"), "record_id", pair_ids - where.keys(),
                        ["source_uri", "key"]))
    fates = lookup(_join(folder, "drop.parquet"), "record_id", pair_ids | where.keys(),
                   ["reason", "keeper_id"])

    wanted = [{"record_id": r, "source_uri": row["source_uri"]} for r, row in where.items()
              if row.get("source_uri")]
    wanted += [{"record_id": g["record_id"], "source_uri": g["source_uri"]}
               for g in copy_groups if g.get("source_uri")]
    scratch = _join(folder, f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:8]}")
    from tools.report.thumbnails import read_thumbnails

    try:
        thumbs = read_thumbnails(
            wanted, scratch, options, image_column=config.get("image_column", "image"),
            key_column=config.get("key_column"),
            max_file_bytes=int(config.get("max_file_bytes", 256 << 20)),
            max_pixels=config.get("max_image_pixels"))
    finally:
        _remove_tree(scratch)
    for sample in pairs.samples:
        sample["ssim"] = [_ssim(thumbs.get(a), thumbs.get(b))
                          for a, b in zip(sample.record_id_a, sample.record_id_b)]
    return dict(summary=summary, settings=settings, pairs=pairs, top=top, members=members,
                errors=errors, n_copy_groups=n_copy_groups, copy_groups=copy_groups,
                n_unclean=n_unclean, unclean=unclean, where=where, fates=fates, thumbs=thumbs)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return P.esc(str(value))


def _counts_section(s: dict) -> str:
    c = s.get("counts", {})
    cards = [("read", c.get("records_read")), ("embedded", c.get("embedded")),
             ("byte copies", c.get("exact_copies_not_embedded")),
             ("errors", c.get("record_errors")), ("kept", c.get("kept")),
             ("dropped", c.get("dropped")), ("duplicate pairs", c.get("duplicates")),
             ("near-duplicate pairs", c.get("near_duplicates")), ("files", c.get("files")),
             ("files failed", c.get("files_failed")),
             ("not ended cleanly", c.get("shards_not_ended_cleanly"))]
    out = ['<section id="counts"><h2>At a glance</h2><div class="cards">']
    out += [f'<div class="card">{P.esc(label)}<b>{_fmt(v)}</b></div>' for label, v in cards]
    out.append("</div>")
    model = s.get("model", "(not embedded by this run)")
    out.append(f"<p>model <b>{P.esc(str(model))}</b>"
               + (" &mdash; <b>A STAND-IN WITH RANDOM WEIGHTS</b>" if s.get("model_is_stand_in")
                  else "")
               + f"; duplicates: score &ge; {_fmt(s.get('duplicate_threshold'))}, "
               f"near-duplicates: score &ge; {_fmt(s.get('near_duplicate_threshold'))}; "
               f"mining mode {_fmt(s.get('mining', {}).get('mode'))}; runner "
               f"{_fmt(s.get('runner'))}; started {_fmt(s.get('started_at'))}</p>")
    timings = s.get("timings", {})
    if timings:
        out.append(P.table(["timing", "seconds"],
                           [[P.esc(k), _fmt(v)] for k, v in timings.items()], {1}))
    out.append("</section>")
    return "".join(out)


def _caption(record_id: str, where: dict, thumbs: dict) -> list[str]:
    row = where.get(record_id, {})
    lines = [f"<code>{P.esc(record_id)}</code>"]
    if row.get("key") is not None:
        lines.append(f"key {P.esc(str(row['key']))}")
    if row.get("source_uri"):
        lines.append(P.esc(row["source_uri"]))
    t = thumbs.get(record_id) or {}
    if t.get("width"):
        lines.append(f"{t['width']}x{t['height']}")
    return lines


def _fate(record_id: str, fates: dict) -> tuple[str, str]:
    """(css class, tag line) saying whether the record is kept."""
    f = fates.get(record_id)
    if f is None:
        return "kept", '<span class="tag">KEPT</span>'
    return "dropped", (f'<span class="tag">DROPPED</span> ({P.esc(f["reason"])}, keeper '
                       f'<code>{P.esc(f["keeper_id"])}</code>)')


def _band_sections(d: dict) -> str:
    pairs, st = d["pairs"], d["settings"]
    out = ['<section id="bands"><h2>Pairs by score band</h2>'
           f'<p class="note">In each band a random sample of at most {st.pairs_per_band} pairs '
           f'(seed {st.seed}; the same run and seed give the same sample), best score first. '
           "SSIM is computed on greyscale copies of at most 256 pixels a side "
           "(<code>clipdedup compare</code> gives it at full size). A green frame: kept; red: "
           "dropped.</p>"]
    for band, count, sample in zip(pairs.bands, pairs.band_counts, pairs.samples):
        out.append(f'<section class="band" id="{band.slug}"><h3>score {P.esc(band.label())}: '
                   f"{count:,} pairs, {len(sample)} shown</h3><div class='pairs'>")
        for row in _records(sample):
            ssim = "-" if row["ssim"] is None else f"{row['ssim']:.4f}"
            out.append(f"<div class='pair'><div class='score'>score <b>{row['score']:.5f}</b>"
                       f" &middot; SSIM <b>{ssim}</b></div><div class='two'>")
            for rid in (row["record_id_a"], row["record_id_b"]):
                css, tag = _fate(rid, d["fates"])
                out.append(P.figure(d["thumbs"].get(rid), [tag] + _caption(rid, d["where"],
                                                                           d["thumbs"]), css))
            out.append("</div></div>")
        if not len(sample):
            out.append("<p class='note'>no pairs in this band</p>")
        out.append("</div></section>")
    out.append("</section>")
    return "".join(out)


def _groups_section(d: dict) -> str:
    s = d["summary"].get("groups", {})
    out = ['<section id="groups"><h2>Largest groups</h2>'
           f"<p class='note'>{_fmt(s.get('groups'))} groups; the {len(d['top'])} largest, each "
           f"with its keeper first and a random sample of at most "
           f"{d['settings'].members_per_group} other members (seed {d['settings'].seed}), by "
           f"score to the keeper. Keeper rule: <code>{_fmt(s.get('keeper_rule'))}</code>.</p>"]
    members = d["members"]
    for group_id, size in d["top"]:
        rows = _records(members[members.group_id == group_id])
        out.append(f"<h3>group {group_id}: {size:,} members, {len(rows)} shown</h3>"
                   "<div class='gallery'>")
        for r in rows:
            if r["kind"] == "keeper":
                css, tag = "keeper", '<span class="tag">KEEPER</span>'
            else:
                css, tag = "dropped", (f'<span class="tag">dropped: {P.esc(r["kind"])}</span> '
                                       f"score {r['score_to_keeper']:.5f}")
            out.append(P.figure(d["thumbs"].get(r["record_id"]),
                                [tag] + _caption(r["record_id"], d["where"], d["thumbs"]), css))
        out.append("</div>")
    if not d["top"]:
        out.append("<p class='note'>no groups: nothing was dropped as a duplicate</p>")
    out.append("</section>")
    return "".join(out)


def _errors_section(d: dict) -> str:
    e = d["errors"]
    out = ['<section id="errors"><h2>Errors</h2>']
    if not e.by_reason:
        out.append("<p class='note'>no errors</p></section>")
        return "".join(out)
    out.append(P.table(["reason", "records or files"],
                       [[P.esc(k), f"{v:,}"] for k, v in e.by_reason.items()], {1}))
    out.append(f"<p class='note'>by stage: {P.esc(', '.join(f'{k} {v}' for k, v in e.by_stage.items()))}"
               f"; up to {d['settings'].examples_per_reason} random examples per reason:</p>")
    out.append(P.table(["reason", "stage", "source_uri", "key", "message"], [
        [P.esc(str(r["reason"])), P.esc(str(r["stage"])), P.esc(str(r["source_uri"])),
         _fmt(r["key"]), P.esc(str(r["message"]))] for r in _records(e.examples)]))
    out.append("</section>")
    return "".join(out)


def _copies_section(d: dict) -> str:
    out = ['<section id="byte-copies"><h2>Byte copies</h2>'
           f"<p class='note'>{d['n_copy_groups']:,} sets of identical files (same sha256; the "
           f"copies are not embedded); the {len(d['copy_groups'])} largest:</p><div "
           "class='gallery'>"]
    for g in d["copy_groups"]:
        lines = [f"<b>{g['copies'] + 1} identical files</b>",
                 f"<code>{P.esc(str(g.get('sha256', ''))[:16])}&hellip;</code>",
                 f"original {P.esc(str(g.get('source_uri')))} key {_fmt(g.get('key'))}"]
        lines += [f"copy {P.esc(str(r['source_uri_b']))} key {_fmt(r['key_b'])}"
                  for r in g["rows"]]
        if g["copies"] > len(g["rows"]):
            lines.append(f"&hellip; and {g['copies'] - len(g['rows']):,} more")
        out.append(P.figure(d["thumbs"].get(g["record_id"]), lines))
    out.append("</div></section>")
    return "".join(out)


def _shards_section(d: dict) -> str:
    out = ['<section id="shards"><h2>Files that did not end cleanly</h2>']
    if not d["n_unclean"]:
        out.append("<p class='note'>every input file was read to its end</p></section>")
        return "".join(out)
    whole = d["errors"].file_errors
    why = {}
    for r in _records(whole):
        why.setdefault(r["source_uri"], f"{r['reason']}: {r['message']}")
    out.append(f"<p class='note'>{d['n_unclean']:,} files; the first {len(d['unclean'])} by "
               "uri:</p>")
    out.append(P.table(["source_uri", "kind", "records read", "images", "errors", "why"], [
        [P.esc(r["source_uri"]), P.esc(r["input_kind"]), f"{r['records_read']:,}",
         f"{r['images_found']:,}", f"{r['errors']:,}", P.esc(why.get(r["source_uri"], "-"))]
        for r in d["unclean"]], {2, 3, 4}))
    out.append("</section>")
    return "".join(out)


def read_evaluation(folder: str) -> dict:
    """`evaluation.json` and `pr_curve.png` of `clipdedup evaluate --out folder`."""
    with FileSystems.open(_join(folder, "evaluation.json")) as f:
        evaluation = json.loads(f.read())
    with FileSystems.open(_join(folder, "pr_curve.png")) as f:
        evaluation["pr_curve_png"] = f.read()
    return evaluation


def _evaluation_section(e: dict) -> str:
    out = ['<section id="evaluation"><h2>Against labelled pairs</h2>',
           f"<p class='note'>{e['label_counts']['evaluated']:,} labelled pairs from "
           f"{P.esc(str(e['labels']))} (`clipdedup evaluate`); "
           f"{e['label_counts']['unresolved_pairs']:,} name images this run does not hold."
           "</p>"]
    if e.get("model_is_stand_in"):
        out.append("<p class='standin'>STAND-IN MODEL: these figures mean nothing</p>")
    rows = [[P.esc(name.replace("_", " ")), _fmt(m.get("precision")), _fmt(m.get("recall")),
             _fmt(m.get("f1"))] for name, m in e["at_run_thresholds"].items()]
    out.append(P.table(["at the run's thresholds", "precision", "recall", "F1"], rows,
                       {1, 2, 3}))
    for name, s in (e.get("suggested") or {}).items():
        if s:
            out.append(f"<p>lowest {P.esc(name.replace('_', ' '))} meeting precision "
                       f"{e['target_precision']:g}: {_fmt(s.get('threshold'))}</p>")
    out.append(f'<img class="curve" alt="precision-recall curve" '
               f'src="{P.data_uri(e["pr_curve_png"], "image/png")}">')
    out.append("</section>")
    return "".join(out)


def render(d: dict) -> str:
    """The page of what `collect` returned."""
    s, pairs = d["summary"], d["pairs"]
    sections = [f"<h1>clipdedup run {P.esc(str(s.get('run_id')))}</h1>"]
    if s.get("model_is_stand_in"):
        sections.append("<p class='standin' id='stand-in'>MODEL IS A STAND-IN WITH RANDOM "
                        f"WEIGHTS ({P.esc(str(s.get('model')))}): byte copies are real, the "
                        "similarity scores, pairs and groups below are NOT meaningful</p>")
    sections.append(_counts_section(s))
    dup, near = s.get("duplicate_threshold"), s.get("near_duplicate_threshold")
    lines = [(b.low, f"{b.low:g}", "#888") for b in pairs.bands
             if b.low not in (dup, near)]
    lines += [(dup, f"duplicate {dup:g}", "#c33"), (near, f"near-duplicate {near:g}", "#d80")]
    sections.append('<section id="histogram"><h2>Pair scores</h2>'
                    + P.histogram_svg(pairs.bin_edges, pairs.counts, lines)
                    + f"<p class='note'>{int(pairs.counts.sum()):,} pairs with score &ge; "
                    f"{near:g} (pairs below the near-duplicate threshold are not mined); "
                    "dashed: band edges.</p></section>")
    sections += [_band_sections(d), _groups_section(d), _errors_section(d), _copies_section(d),
                 _shards_section(d)]
    if d.get("evaluation"):
        sections.append(_evaluation_section(d["evaluation"]))
    st = d["settings"]
    sections.append(f"<footer class='note'><p>Sampling: seed {st.seed}; bands "
                    f"{P.esc(', '.join(b.label() for b in pairs.bands))}. Every table of the "
                    "run is beside this page (docs: README, \"The review report\").</p></footer>")
    return P.page(f"clipdedup run {s.get('run_id')}", sections)


def write_report(folder: str, summary: dict, options=None,
                 settings: ReportSettings | None = None,
                 embeddings: str | list[str] | None = None,
                 evaluation: str | None = None) -> str:
    """Writes `<folder>/report.html` for the run whose tables are in `folder`.

    Args:
        folder: the run's (staging or published) folder.
        summary: its summary (counts, thresholds, model, config).
        options: Beam options of the thumbnails job (the run's own).
        settings: bands, caps and seed.
        embeddings: the embeddings table (file, folder or glob) that locates
            the pairs' records; default `<folder>/embeddings`.
        evaluation: a `clipdedup evaluate --out` folder whose figures and
            precision-recall curve the page shows.

    Returns:
        The report's path.
    """
    started = time.monotonic()
    settings = settings or ReportSettings()
    embeddings = embeddings or _join(folder, "embeddings")
    data = collect(folder, summary, settings, embeddings, options)
    if evaluation:
        data["evaluation"] = read_evaluation(evaluation)
    text = render(data)
    target, tmp = _join(folder, REPORT), _join(folder, REPORT + ".tmp")
    with FileSystems.create(tmp) as f:
        f.write(text.encode("utf-8"))
    if FileSystems.exists(target):
        FileSystems.delete([target])
    FileSystems.rename([tmp], [target])
    shown = len(data["thumbs"])
    missing = sum(1 for t in data["thumbs"].values() if not t.get("thumbnail"))
    log.debug("report %s: %d thumbnails (%d without a picture), %.0f KB, %.1f s", target, shown,
             missing, len(text) / 1024, time.monotonic() - started)
    return target if "://" in target else os.path.abspath(target)


def _records(frame) -> list[dict]:
    """The rows of a pandas frame as dicts, None where a value is missing (pandas gives
    NaN for a null string, which is truthy and not a string)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
