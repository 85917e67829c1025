"""`clipdedup evaluate`: a run's decisions measured against pairs a person labelled.

    clipdedup evaluate --run out/<run_id> --labels pairs.csv \
        [--target-precision 0.95] [--out DIR] [-k 1 5 10]

The labels file (`tools/labels.py` documents its columns) names two images
per row and says `duplicate`, `near_duplicate` or `different`. Each image is
looked up in the run (`tools/run_records.py`); a pair naming an image the run
does not hold (never read, failed to decode, ambiguous name) is listed under
`unresolved` in the output and warned about, never dropped silently. Every
resolved pair is scored with the cosine of its two vectors from the run's
embeddings table (byte copies share their original's vector: score 1), so
pairs below the mining threshold, which no pair table holds, are scored too.
That works for any `--model` a run used: the score is whatever the miner
compared.

Measured, with `duplicate` and `near_duplicate` both counting as positives
for the near-duplicate threshold and only `duplicate` for the duplicate one:

- the run's pair tables (a pair is predicted when it is in `duplicates` or
  `near_duplicates`, or the two are byte copies) and its manifest (predicted
  when both records are in the same group of `groups`), at the run's own
  thresholds: precision, recall, F1 and the counts;
- the same against the score alone, over every threshold a labelled score
  gives (the precision-recall curve, `pr_curve.png`), and the lowest
  threshold whose precision meets `--target-precision` (the one with the
  most recall);
- retrieval: each labelled image with a positive partner is queried against
  the whole run (exact k-NN, `tools.query.RunIndex`); recall@k and
  precision@k (unlabelled hits count as not relevant, so with sparse labels
  it is a lower bound; `judged_precision` counts only labelled hits).

When the labels carry weights (calibrate's stratified sheet does), the same
figures are also given weighted: an estimate for the run's pairs as a whole,
not only for the labelled sample. Output: `evaluation.json` and
`pr_curve.png` in `--out` (default `evaluation-<run_id>`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING

import numpy as np

from tools import labels as L

if TYPE_CHECKING:
    from tools import run_records as R

log = logging.getLogger("clipdedup")

DEFAULT_TARGET_PRECISION = 0.95
DEFAULT_KS = (1, 5, 10)
POSITIVE = ("duplicate", "near_duplicate")


def confusion(predicted: np.ndarray, truth: np.ndarray, weights: np.ndarray | None = None
              ) -> dict:
    """Precision, recall, F1 and the counts of `predicted` against `truth` (bool arrays);
    with `weights`, each pair counts its weight. None where a ratio has no denominator."""
    w = np.ones(len(truth)) if weights is None else np.asarray(weights, float)
    tp, fp = float(w[predicted & truth].sum()), float(w[predicted & ~truth].sum())
    fn, tn = float(w[~predicted & truth].sum()), float(w[~predicted & ~truth].sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall else
          0.0 if precision is not None and recall is not None else None)
    counts = dict(tp=tp, fp=fp, fn=fn, tn=tn)
    if weights is None:
        counts = {k: int(v) for k, v in counts.items()}
    return dict(precision=precision, recall=recall, f1=f1, **counts)


def sweep(scores: np.ndarray, truth: np.ndarray, weights: np.ndarray | None = None,
          extra: tuple[float, ...] = ()) -> list[dict]:
    """`confusion` of `scores >= t` for each distinct labelled score t (and the `extra`
    thresholds, marked `labelled_score: false`), highest threshold first: the
    precision-recall curve."""
    labelled = {float(s) for s in scores}
    thresholds = sorted(labelled | {float(t) for t in extra}, reverse=True)
    return [dict(threshold=t, labelled_score=t in labelled,
                 **confusion(scores >= np.float32(t), truth, weights)) for t in thresholds]


def lowest_threshold_at(points: list[dict], target: float) -> dict | None:
    """The labelled score of lowest threshold whose precision is at least `target`
    (recall only falls as the threshold rises, so this is the one with the most
    recall), or None. `down_to` is the next lower labelled score: any threshold
    above it and up to `threshold` gives the same figures on these labels."""
    scored = [p for p in points if p["labelled_score"]]
    meeting = [p for p in scored if p["precision"] is not None and p["precision"] >= target]
    if not meeting:
        return None
    best = min(meeting, key=lambda p: p["threshold"])
    lower = [p["threshold"] for p in scored if p["threshold"] < best["threshold"]]
    return dict(best, down_to=max(lower) if lower else None)


def _resolve(run: R.Run, pairs: list[L.LabelledPair]):
    """(resolved pairs [(pair, record_a, record_b)], unresolved rows, repeated count).

    Raises:
        LabelFileError: one pair of records labelled two different ways.
    """
    from tools import run_records as R

    strings = set().union(*(p.a.strings() | p.b.strings() for p in pairs)) if pairs else set()
    resolver = R.Resolver(R.records_matching(run, strings))
    resolved, unresolved, seen, repeated = [], [], {}, 0
    for pair in pairs:
        found = {}
        for side, ref in (("a", pair.a), ("b", pair.b)):
            record, why = resolver.resolve(ref)
            if record is None:
                unresolved.append(dict(line=pair.line, pair=pair.name, side=side,
                                       reference=ref.describe(), reason=why))
            found[side] = record
        if found["a"] is None or found["b"] is None:
            continue
        if found["a"]["record_id"] == found["b"]["record_id"]:
            unresolved.append(dict(line=pair.line, pair=pair.name, side="a,b",
                                   reference=pair.a.describe(), reason="same_record"))
            continue
        key = tuple(sorted((found["a"]["record_id"], found["b"]["record_id"])))
        if key in seen:
            first = seen[key]
            if first.label != pair.label:
                raise L.LabelFileError(
                    f"labels line {first.line} and line {pair.line} label the same pair "
                    f"{key[0]} / {key[1]} differently ({first.label}, {pair.label})")
            repeated += 1
            continue
        seen[key] = pair
        resolved.append((pair, found["a"], found["b"]))
    return resolved, unresolved, repeated


def _retrieval(vectors: R.Vectors, reps_a: list[str], reps_b: list[str], truth: np.ndarray,
               ks: tuple[int, ...]) -> dict:
    """recall@k and precision@k of each labelled image's k nearest records in the run."""
    positives: dict[str, set[str]] = {}
    negatives: dict[str, set[str]] = {}
    for a, b, t in zip(reps_a, reps_b, truth):
        if a == b:
            continue  # byte copies share one vector: nothing to retrieve
        for q, other in ((a, b), (b, a)):
            (positives if t else negatives).setdefault(q, set()).add(other)
    queries = sorted(positives)
    out = dict(queries=len(queries), k={})
    if not queries:
        return out
    k_max = max(ks)
    rows = vectors.rows(queries)
    _, hits = vectors.index.search(vectors.index.vectors[rows], k_max + 1)
    ids = vectors.index.ids
    ranked = [[ids[h] for h in hit_row if h != row and h >= 0][:k_max]  # itself left out
              for hit_row, row in zip(hits, rows)]
    for k in ks:
        recall, precision, judged = [], [], []
        for q, found in zip(queries, ranked):
            top = found[:k]
            relevant = sum(h in positives[q] for h in top)
            wrong = sum(h in negatives.get(q, ()) for h in top)
            recall.append(relevant / len(positives[q]))
            precision.append(relevant / k)
            if relevant + wrong:
                judged.append(relevant / (relevant + wrong))
        out["k"][str(k)] = dict(recall=float(np.mean(recall)), precision=float(np.mean(precision)),
                                judged_precision=float(np.mean(judged)) if judged else None,
                                judged_queries=len(judged))
    return out


def _decisions(run: R.Run, ids_a: list[str], ids_b: list[str], reps_a: list[str],
               reps_b: list[str]) -> dict[str, np.ndarray]:
    """What the run's tables decided for each pair (bool arrays)."""
    from tools import run_records as R

    reps = set(reps_a) | set(reps_b)
    same = np.array([a == b for a, b in zip(reps_a, reps_b)], bool)
    canon = [tuple(sorted(p)) for p in zip(reps_a, reps_b)]
    dup = R.pairs_among(run, "duplicates", reps)
    near = R.pairs_among(run, "near_duplicates", reps)
    groups = R.groups_of(run, set(ids_a) | set(ids_b))
    in_dup = np.array([c in dup for c in canon], bool) | same
    in_any = in_dup | np.array([c in near for c in canon], bool)
    same_group = np.array([a in groups and groups.get(a) == groups.get(b)
                           for a, b in zip(ids_a, ids_b)], bool)
    return dict(duplicates_table=in_dup, pair_tables=in_any, manifest=same_group)


def _figures(run: R.Run, scores, truth_any, truth_dup, decisions, weights, target) -> dict:
    """Everything measured, for one weighting."""
    dup_t, near_t, group_t = (run.duplicate_threshold, run.near_duplicate_threshold,
                              run.group_threshold)
    near_extra = tuple(t for t in (near_t, group_t) if t is not None)
    curves = dict(near_duplicate=sweep(scores, truth_any, weights, near_extra),
                  duplicate=sweep(scores, truth_dup, weights, (dup_t,) if dup_t else ()))
    at_run = {}
    if decisions:
        # A manifest grouping at the duplicate threshold (drop_near_duplicates off) keeps
        # near-duplicates on purpose: then only labelled duplicates should be grouped.
        manifest_truth = truth_dup if (group_t is not None and dup_t is not None
                                       and group_t >= dup_t) else truth_any
        at_run = dict(pair_tables=confusion(decisions["pair_tables"], truth_any, weights),
                      duplicates_table=confusion(decisions["duplicates_table"], truth_dup,
                                                 weights),
                      manifest=confusion(decisions["manifest"], manifest_truth, weights))
    if near_t is not None:
        at_run["scores_at_near_duplicate_threshold"] = confusion(
            scores >= np.float32(near_t), truth_any, weights)
    if dup_t is not None:
        at_run["scores_at_duplicate_threshold"] = confusion(
            scores >= np.float32(dup_t), truth_dup, weights)
    return dict(at_run_thresholds=at_run, curves=curves,
                suggested=dict(near_duplicate_threshold=lowest_threshold_at(
                                   curves["near_duplicate"], target),
                               duplicate_threshold=lowest_threshold_at(curves["duplicate"],
                                                                       target)))


def evaluate(run_folder: str, labels_path: str, target_precision: float = DEFAULT_TARGET_PRECISION,
             ks: tuple[int, ...] = DEFAULT_KS) -> dict:
    """The evaluation of the run at `run_folder` against the labels at `labels_path`
    (what `evaluation.json` holds, without its `outputs`)."""
    from tools import run_records as R

    if not 0 < target_precision <= 1:
        raise ValueError(f"--target-precision must be in (0, 1], got {target_precision}")
    if not ks or min(ks) < 1:
        raise ValueError(f"-k values must be at least 1, got {list(ks)}")
    ks = tuple(sorted(set(ks)))
    pairs, unlabelled = L.read_labels(labels_path)
    if not pairs:
        raise L.LabelFileError(f"{labels_path}: no labelled pairs ({unlabelled} rows have an "
                               "empty label)")
    run = R.open_run(run_folder)
    resolved, unresolved, repeated = _resolve(run, pairs)
    result = dict(run=run.folder, run_id=run.run_id, model=run.model,
                  model_is_stand_in=run.is_stand_in, labels=labels_path,
                  thresholds=dict(duplicate=run.duplicate_threshold,
                                  near_duplicate=run.near_duplicate_threshold,
                                  group=run.group_threshold, mining=run.mining_threshold),
                  target_precision=target_precision)
    by_label = {label: sum(p.label == label for p, _, _ in resolved) for label in L.LABELS}
    unresolved_pairs = len({u["line"] for u in unresolved})
    result["label_counts"] = dict(rows_labelled=len(pairs), rows_unlabelled=unlabelled,
                                  repeated=repeated, unresolved_pairs=unresolved_pairs,
                                  evaluated=len(resolved), by_label=by_label)
    result["unresolved"] = unresolved
    if unresolved:
        log.warning("%d labelled pairs are not evaluated: they name images this run does not "
                    "hold, or names that fit several records or one record twice (%s); see "
                    "'unresolved' in evaluation.json", unresolved_pairs,
                    "; ".join(f"line {u['line']} {u['side']}: {u['reason']}"
                              for u in unresolved[:3]) + ("; ..." if len(unresolved) > 3 else ""))
    if not resolved:
        raise ValueError(f"{labels_path}: none of the {len(pairs)} labelled pairs is in run "
                         f"{run.folder} ({unresolved[0]['reference']}: {unresolved[0]['reason']})")
    ids_a = [a["record_id"] for _, a, _ in resolved]
    ids_b = [b["record_id"] for _, _, b in resolved]
    reps_a = [a["rep"] for _, a, _ in resolved]
    reps_b = [b["rep"] for _, _, b in resolved]
    vectors = R.Vectors(run)
    scores = vectors.scores(reps_a, reps_b)
    scores[np.array([a == b for a, b in zip(reps_a, reps_b)])] = 1.0  # byte copies
    labels = np.array([p.label for p, _, _ in resolved])
    truth_any, truth_dup = np.isin(labels, POSITIVE), labels == "duplicate"
    weights = np.array([p.weight for p, _, _ in resolved])
    decisions = _decisions(run, ids_a, ids_b, reps_a, reps_b) if run.mined else {}
    result.update(_figures(run, scores, truth_any, truth_dup, decisions, None, target_precision))
    result["weighted"] = (_figures(run, scores, truth_any, truth_dup, decisions, weights,
                                   target_precision) if np.any(weights != 1.0) else None)
    if run.mined and run.mining_threshold is not None:
        # pairs the score puts above the mining threshold that no pair table holds:
        # what approximate mining lost among the labelled pairs
        above = scores >= np.float32(run.mining_threshold)
        result["missed_by_mining"] = int((above & ~decisions["pair_tables"]).sum())
    result["retrieval"] = _retrieval(vectors, reps_a, reps_b, truth_any, ks)
    result["pairs"] = [
        dict(line=p.line, pair=p.name, label=p.label, score=float(s), record_id_a=a["record_id"],
             record_id_b=b["record_id"], key_a=a["key"], key_b=b["key"], weight=p.weight,
             **{name: bool(d[i]) for name, d in decisions.items()})
        for i, ((p, a, b), s) in enumerate(zip(resolved, scores))]
    return result


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def text_report(result: dict) -> str:
    """The console summary of an evaluation."""
    c = result["label_counts"]
    lines = [f"evaluation of run {result['run']} (model {result['model']}"
             + (", A STAND-IN WITH RANDOM WEIGHTS: its scores mean nothing" if
                result["model_is_stand_in"] else "") + ")",
             f"  labels: {c['evaluated']} pairs evaluated ({c['by_label']['duplicate']} duplicate, "
             f"{c['by_label']['near_duplicate']} near_duplicate, {c['by_label']['different']} "
             f"different), {c['unresolved_pairs']} not in the run, {c['rows_unlabelled']} "
             f"unlabelled, {c['repeated']} repeated",
             f"  {'at the run thresholds':<38} {'precision':>9} {'recall':>7} {'f1':>7} "
             f"{'tp':>5} {'fp':>5} {'fn':>5}"]
    for name, m in result["at_run_thresholds"].items():
        lines.append(f"  {name:<38} {_fmt(m['precision']):>9} {_fmt(m['recall']):>7} "
                     f"{_fmt(m['f1']):>7} {m['tp']:>5} {m['fp']:>5} {m['fn']:>5}")
    for name, s in result["suggested"].items():
        lines.append(f"  lowest {name} at precision >= {result['target_precision']}: " + (
            "none meets it" if s is None else
            f"{s['threshold']:.6f} (precision {_fmt(s['precision'])}, recall {_fmt(s['recall'])}"
            + ("" if s["down_to"] is None else f"; the same above {s['down_to']:.6f}") + "; "
            f"the run used {result['thresholds'][name.removesuffix('_threshold')]})"))
    r = result["retrieval"]
    lines.append(f"  retrieval over {r['queries']} labelled images: " + ", ".join(
        f"recall@{k} {_fmt(m['recall'])} precision@{k} {_fmt(m['precision'])}"
        for k, m in r["k"].items()))
    return "\n".join(lines)


def write_outputs(result: dict, out: str) -> dict:
    """`evaluation.json` and `pr_curve.png` in folder `out`; returns their paths."""
    from tools.pr_plot import draw_pr_curves

    os.makedirs(out, exist_ok=True)
    png, path = os.path.join(out, "pr_curve.png"), os.path.join(out, "evaluation.json")

    def curve(points):
        return [(p["recall"], p["precision"]) for p in points if p["precision"] is not None
                and p["recall"] is not None]

    marks = []
    at = result["at_run_thresholds"]
    for name, key in (("pair tables", "pair_tables"), ("manifest", "manifest")):
        if key in at and at[key]["precision"] is not None and at[key]["recall"] is not None:
            marks.append((name, at[key]["recall"], at[key]["precision"]))
    title = f"run {result['run_id']}: {os.path.basename(str(result['model']))}" + (
        " (STAND-IN, random weights)" if result["model_is_stand_in"] else "")
    draw_pr_curves(png, [("near_duplicate threshold (duplicate + near_duplicate)",
                          curve(result["curves"]["near_duplicate"])),
                         ("duplicate threshold (duplicate only)",
                          curve(result["curves"]["duplicate"]))], marks, title)
    result["outputs"] = dict(evaluation=path, pr_curve=png)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result["outputs"]


def run(args) -> int:
    """The `evaluate` subcommand; returns the exit status."""
    result = evaluate(args.run, args.labels, args.target_precision, tuple(args.k))
    outputs = write_outputs(result, args.out or f"evaluation-{result['run_id']}")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(text_report(result))
        print(f"wrote {outputs['evaluation']} and {outputs['pr_curve']}")
    if result["model_is_stand_in"]:
        print("MODEL IS A STAND-IN (random weights): these figures say nothing about the real "
              "model", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="precision/recall of a run against labelled pairs")
    p.add_argument("--run", required=True, help="a published run folder (<output>/<run_id>)")
    p.add_argument("--labels", required=True,
                   help="CSV of labelled pairs (columns: docs/quality.md), e.g. a filled-in "
                        "calibrate sheet")
    p.add_argument("--target-precision", type=float, default=DEFAULT_TARGET_PRECISION,
                   help="find the lowest thresholds meeting this precision (default "
                        f"{DEFAULT_TARGET_PRECISION})")
    p.add_argument("--out", help="folder for evaluation.json and pr_curve.png "
                                 "(default evaluation-<run_id>)")
    p.add_argument("-k", type=int, nargs="+", default=list(DEFAULT_KS),
                   help="retrieval cut-offs for recall@k / precision@k (default 1 5 10)")
    p.add_argument("--json", action="store_true", help="print evaluation.json instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
