"""Precision and recall of a pair signal on labelled pairs, for the quality bench.

The counting is `clipdedup evaluate`'s own (`tools.evaluate.confusion`), so
the bench and evaluate report the same figures for the same decisions; this
module adds distance-type scores (`higher_is_match=False`) and a reader for
the generated set's labels file (columns a, b, label; `evaluate` reads it
too, through its free-text `a` / `b` columns).

A labelled pair is `(a, b, label)` with label `duplicate`, `near_duplicate`
or `different`; the first two are matches. A signal predicts a match for a
pair when its score passes a threshold (`score >= t` for similarities,
`score <= t` for distances such as Hamming). `precision_recall` counts one
threshold, `sweep` every distinct one, `best_f1` picks from the sweep (an
oracle: it looks at the labels, so it says what a calibrated threshold
could reach, not what the default does).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence

import numpy as np

MATCH_LABELS = ("duplicate", "near_duplicate")
LABELS = (*MATCH_LABELS, "different")


def read_labels(path: str) -> list[tuple[str, str, str]]:
    """The `(a, b, label)` rows of a labels CSV (columns a, b, label).

    Raises:
        ValueError: a column is missing or a label is not one of `LABELS`.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"a", "b", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column(s) {sorted(missing)} (need a, b, label)")
        rows = [(r["a"], r["b"], r["label"].strip()) for r in reader]
    bad = sorted({label for _, _, label in rows if label not in LABELS})
    if bad:
        raise ValueError(f"{path}: unknown labels {bad}; use {', '.join(LABELS)}")
    return rows


def is_match(labels: Iterable[str]) -> np.ndarray:
    return np.asarray([label in MATCH_LABELS for label in labels], dtype=bool)


def counts(predicted: Sequence[bool], truth: Sequence[bool]) -> dict:
    """tp / fp / fn / tn and precision, recall, F1 (None where a ratio has no denominator)."""
    from tools.evaluate import confusion

    return confusion(np.asarray(predicted, bool), np.asarray(truth, bool))


def precision_recall(scores: Sequence[float], truth: Sequence[bool], threshold: float,
                     higher_is_match: bool = True) -> dict:
    """`counts` of the pairs the signal calls matches at `threshold`, with the threshold."""
    s = np.asarray(scores, dtype=np.float64)
    predicted = s >= threshold if higher_is_match else s <= threshold
    return dict(counts(predicted, truth), threshold=float(threshold))


def sweep(scores: Sequence[float], truth: Sequence[bool],
          higher_is_match: bool = True) -> list[dict]:
    """`precision_recall` at every distinct score, strictest threshold first."""
    distinct = np.unique(np.asarray(scores, dtype=np.float64))
    ordered = distinct[::-1] if higher_is_match else distinct
    return [precision_recall(scores, truth, t, higher_is_match) for t in ordered]


def best_f1(scores: Sequence[float], truth: Sequence[bool], higher_is_match: bool = True) -> dict:
    """The sweep point with the highest F1 (the strictest such threshold on ties)."""
    points = sweep(scores, truth, higher_is_match)
    return max(points, key=lambda r: r["f1"] or 0.0) if points else counts([], [])
