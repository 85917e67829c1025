"""The few lines a finished run prints: where it was published and what it found.

`clipdedup run` / `embed` / `mine` and the demo print it; `summary.json` in the
run folder has every number.
"""

from __future__ import annotations

import sys


def print_summary(summary: dict, out=None) -> None:
    """The short human-readable end of a run (to `out`, default the current stdout)."""
    c = summary.get("counts", {})
    lines = [f"run {summary['run_id']} published to {summary['run_folder']}"]
    if summary.get("model_is_stand_in"):
        lines.append(f"  MODEL IS A STAND-IN (random weights): {summary['model']}")
    elif summary.get("model_kind") == "descriptor":
        lines.append(f"  model: {summary['model']} (a descriptor, not CLIP: "
                     f"{summary.get('embedding_dim')} values per image)")
    elif "model" in summary:
        lines.append(f"  model: {summary['model']}")
    if "records_read" in c:
        lines.append(f"  records read {c['records_read']} from {c['files']} files: embedded "
                     f"{c['embedded']}, byte copies {c['exact_copies_not_embedded']}, "
                     f"errors {c['record_errors']} {c.get('errors_by_reason') or ''}")
    if c.get("files_failed"):
        lines.append(f"  files that failed as a whole: {c['files_failed']}, e.g. " + "; ".join(
            f"{f['source_uri']} ({f['reason']}: {f['message'][:120]})"
            for f in summary.get("failed_files", [])[:3]))
    if c.get("files_skipped"):
        lines.append(f"  files not read: {c['files_skipped']} {c['skipped_by_reason']} "
                     "(listed in skipped.parquet)")
    if "duplicates" in c:
        lines.append(f"  pairs: duplicates {c['duplicates']} (score >= "
                     f"{summary['duplicate_threshold']}), near-duplicates "
                     f"{c['near_duplicates']} (>= {summary['near_duplicate_threshold']})")
    ph = summary.get("phash")
    if ph:
        lines.append(f"  phash pairs (Hamming <= {ph['max_distance']}): {ph['phash_pairs']}, of "
                     f"which the embedding agrees on {ph['both']}" if ph["phash_pairs"] is not None
                     else f"  phash pairs: none ({ph.get('note', 'no phash column')})")
    m = summary.get("mining", {})
    if m.get("mode"):
        recall = m.get("recall_sampled")
        scope = f" on {m['recall_scope']}" if m.get("recall_scope") else ""
        reused = ", previous centroids" if m.get("centroids_reused") else ""
        lines.append(f"  mining: mode {m['mode']}{reused}, sampled recall{scope} "
                     f"{'n/a' if recall is None else f'{recall:.4f}'}"
                     + (" (BELOW TARGET)" if m.get("recall_below_target") else ""))
    g = summary.get("groups")
    if g:
        lines.append(f"  manifest: kept {g['kept']}, dropped {g['dropped']} (exact_copy "
                     f"{g['dropped_exact_copy']}, duplicate {g['dropped_duplicate']}, "
                     f"near_duplicate {g['dropped_near_duplicate']}) in {g['groups']} groups")
    lines += _night_lines(summary.get("incremental"))
    d = summary.get("diff")
    if d:
        r = d["records"]
        lines.append(f"  since run {d['before_run']}: new {r['new']}, removed {r['removed']}, "
                     f"kept->dropped {r['kept_to_dropped']}, dropped->kept {r['dropped_to_kept']}"
                     f", keeper changed {r['keeper_changed']}; pairs new {d['pairs']['new']}, "
                     f"vanished {d['pairs']['vanished']} (changes.parquet)")
    if summary.get("alerts"):
        lines.append(f"  ALERTS: {', '.join(a['name'] for a in summary['alerts'])} "
                     "(one `clipdedup: alert:` line each on stderr)")
    t = summary["timings"]
    took = f"  took {t['total_seconds']:.1f} s"
    if t.get("inference_seconds") is not None:
        took += (f" (embed stage {t['embed_seconds']:.1f} s, of which the model "
                 f"{t['inference_seconds']:.1f} s, summed over workers)")
    lines.append(took)
    report = summary.get("report")
    if report:
        lines.append(f"  report: {summary['run_folder'].rstrip('/')}/{report['path']}"
                     if report.get("written") else f"  report NOT written ({report['error']}); "
                     f"`clipdedup report {summary['run_folder']}` writes it")
    print("\n".join(lines), file=out or sys.stdout)


def _night_lines(night: dict | None) -> list[str]:
    """What an incremental night reused and what it did again, and why."""
    if night is None:
        return []
    if not night.get("previous"):
        return ["  incremental: no published run to build on, a full run"]
    lines = [f"  incremental on {night['previous']}: files read {night.get('files_read', 0)}, "
             f"carried {night.get('files_carried', 0)}, gone {night.get('files_gone', 0)}; "
             f"images embedded {night.get('embedded', 0)}, vectors reused "
             f"{night.get('embeddings_reused', 0)}"]
    if "pairs_carried" in night:
        lines.append(f"  pairs carried {night['pairs_carried']}, new {night['pairs_new']} "
                     f"({night['embeddings_new_to_mining']} records mined against all)")
    for what in ("reembed", "remine"):
        if night.get(f"{what}_reason"):
            lines.append(f"  {what}: {night[f'{what}_reason']}")
    return lines
